"""Torch-free FLOP counts for every trainable family: training FLOPs (forward + backward) per token.

Each function counts the matrix multiplies of one model family and nothing else (elementwise work such
as norms, activations, softmax and the loss is left out), so that it agrees with
``torch.utils.flop_counter.FlopCounterMode`` on the real model. The search reports ``flops =
flops_per_token × tokens`` and ASHA compares trials on it.
"""

from __future__ import annotations

from typing import Any


# --- LSTM / GRU language model ------------------------------------------------------------------


def rnn_flops_per_token(cfg: Any, vocab_size: int = 10_000) -> int:
    """Training FLOPs (forward + backward) per token of ``trainables.rnn.model.RNNModel``.

    Forward, per token (2 FLOPs per multiply-add; e = embedding width, h = hidden width, L layers,
    G = 4 gate blocks for an LSTM, 3 for a GRU, V = vocabulary): layer 1 multiplies its input and its
    previous hidden state by the stacked gate weights, 2·G·h·(e + h); layers 2..L, 2·G·h·(h + h);
    the decoder 2·h·V. Backward is 2 × forward (gradients with respect to inputs and to weights),
    so training = 3 × forward, less one term: each bptt window starts from a detached hidden state
    (zeros at an epoch's start, the previous window's state after that), so no layer computes the
    gradient with respect to it, 2·G·h·h FLOPs per layer per window, i.e. 2·G·h·h·L / bptt per token.
    With that term this is exactly what FlopCounterMode counts on the decomposed recurrence
    (tests/trainables/test_flops_rnn.py). FlopCounterMode does not see the fused kernels nn.LSTM
    runs by default (oneDNN's ``mkldnn_rnn_layer`` on CPU, cuDNN's ``_cudnn_rnn`` on CUDA) and then
    counts the decoder only; with oneDNN disabled nn.LSTM runs ATen's per-step cell, the same
    arithmetic as mm/addmm calls it does count (nn.GRU takes that path on CPU anyway). The embedding
    lookup is a gather and its backward a scatter-add, not matmuls; biases, gate nonlinearities,
    dropout, softmax and the loss are elementwise and left out. Tied weights change nothing: the
    decoder still multiplies by the (shared) matrix.

    Zaremba small (LSTM 2×200, V = 10,000, bptt 20): 3 × 5,280,000 - 32,000 = 15,808,000.

    Args:
        cfg: an ``RNNConfig`` (or anything with ``cell``, ``hidden_size``, ``num_layers``, ``bptt``
            and ``emb_size``, None meaning hidden_size).
        vocab_size: V, 10,000 for Penn Treebank.
    """
    h, n_layers = cfg.hidden_size, cfg.num_layers
    e = cfg.emb_size if cfg.emb_size is not None else h
    g = 4 if cfg.cell == "lstm" else 3
    forward = 2 * g * h * (e + h) + (n_layers - 1) * 2 * g * h * (2 * h) + 2 * h * vocab_size
    skipped = 2 * g * h * h * n_layers / cfg.bptt  # no gradient into the detached initial state
    return round(3 * forward - skipped)


# --- GPT ----------------------------------------------------------------------------------------


def gpt_mlp_width(n_embd: int, mlp_ratio: float) -> int:
    """Hidden width of a GPT block's MLP (``mlp_ratio × n_embd``, rounded to an integer).

    Args:
        n_embd: model width d.
        mlp_ratio: hidden width over model width (4 in GPT-2).
    """
    return int(round(mlp_ratio * n_embd))


def gpt_flops_per_token(cfg: Any, seq_len: int | None = None) -> int:
    """Training FLOPs (forward + backward) per token of the decoder-only GPT in ``trainables.gpt``.

    Per layer and token the forward pass multiplies (2 FLOPs per multiply-add):
    QKV projection 2·d·3d, output projection 2·d·d, MLP 2·d·m + 2·m·d (m = MLP width), attention
    scores Q·Kᵀ 2·s·d and mixing A·V 2·s·d; after the last layer the LM head adds 2·d·V.
    This is the accounting of Hoffmann et al. 2022 (Chinchilla), Appendix F, without its elementwise
    terms, and Kaplan et al. 2020, Table 1, with the full s×s score matrix (the causal mask saves no
    multiplies in PyTorch's attention) and the LM head included. Backward = 2 × forward (gradients with
    respect to inputs and to weights), so training = 3 × forward. Embedding lookups are gathers, not
    multiplies; biases, norms, GELU, softmax and the loss are elementwise and excluded.

    Args:
        cfg: a ``GPTConfig`` (or anything with ``n_layer``, ``n_embd``, ``mlp_ratio``, ``vocab_size``,
            ``n_positions`` and optionally ``seq_len``).
        seq_len: attention context s; default ``cfg.seq_len``, or ``cfg.n_positions`` when that is None.
    """
    d, n_layer, vocab = cfg.n_embd, cfg.n_layer, cfg.vocab_size
    s = seq_len if seq_len is not None else (getattr(cfg, "seq_len", None) or cfg.n_positions)
    m = gpt_mlp_width(d, cfg.mlp_ratio)
    dense = 3 * d * d + d * d + 2 * d * m  # multiply-adds of the four weight matrices of a block
    attention = 2 * s * d  # Q·Kᵀ and A·V: s·d multiply-adds each, per token
    forward = 2 * (n_layer * (dense + attention) + d * vocab)
    return 3 * forward


# --- Vision Transformer ---------------------------------------------------------------------------


def vit_flops_per_image(cfg: Any) -> int:
    """Training FLOPs (forward + backward) per image of ``trainables.vit.model.ViT``.

    A ViT "token" for the counters is an image: ``tokens`` counts training images, so ``flops =
    vit_flops_per_image × tokens``. Forward, per image (2 FLOPs per multiply-add; P patches of p×p×C
    pixels, n = P + 1 tokens with the class token, d = n_embd, m = MLP width, K classes, L layers):
    the patch projection 2·P·C·p²·d; per layer, the GPT block's four weight matrices on every token,
    2·n·(3d² + d² + 2dm), and attention scores Q·Kᵀ and mixing A·V, 2·n²·d each (no mask: every token
    attends to all n); the head on the class token only, 2·d·K. Backward is 2 × forward (gradients
    with respect to inputs and to weights) except for the patch projection, whose input (the image)
    needs no gradient, so only its weight gradient is computed: training = 3 × forward − 2·P·C·p²·d.
    Norms, GELU, softmax, dropout, the position sum and the loss are elementwise and left out, as for
    the GPT; this is what FlopCounterMode counts (tests/trainables/test_flops_vit.py).

    Seed 001's 2-layer CIFAR-10 model (P = 64, n = 65, d = 256, m = 512): 438,064,128 per image.

    Args:
        cfg: a ``ViTConfig`` (or anything with ``image_size``, ``patch_size``, ``channels``,
            ``n_embd``, ``mlp_ratio``, ``n_layer`` and ``num_classes``).
    """
    d, p, n_layer = cfg.n_embd, cfg.patch_size, cfg.n_layer
    patches = (cfg.image_size // p) ** 2
    n = patches + 1
    m = gpt_mlp_width(d, cfg.mlp_ratio)
    patch = patches * cfg.channels * p * p * d  # multiply-adds of the patch projection
    dense = n * (3 * d * d + d * d + 2 * d * m)
    attention = 2 * n * n * d
    head = d * cfg.num_classes
    forward = 2 * (patch + n_layer * (dense + attention) + head)
    return 3 * forward - 2 * patch
