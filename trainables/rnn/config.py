"""The recurrent LM trainable's config: one flat dataclass a trial's dict becomes, plus torch-free sizes.

Nothing here imports torch, so the search can validate configs, count parameters and check
constraints without it. Defaults are Zaremba et al. (2014)'s "small" model (seed report 004): a
2-layer, 200-wide LSTM, unrolled 20 steps over batches of 20, SGD at lr 1 with the gradient clipped to
norm 5, halved every epoch after the fourth, 13 epochs, weights uniform in ±0.1, no dropout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from tunelab.trainables._config import SIZE_CONSTRAINTS, Fraction, NonNeg, PosFloat, PosInt, Unit, config_dataclass, size_violation

CONSTRAINTS = SIZE_CONSTRAINTS
PTB_VOCAB = 10_000  # 9,999 train words + <eos>
MB = 2**20


@config_dataclass
class RNNConfig:
    """Everything one LSTM/GRU language-model trial needs; the search's flat config maps onto these fields.

    Model:
        cell: "lstm" or "gru" (PyTorch's fused nn.LSTM / nn.GRU).
        emb_size: word-embedding width; None means hidden_size.
        hidden_size, num_layers: width and depth of the recurrent stack.
        dropout: on the embeddings, between recurrent layers and before the decoder (Zaremba's
            non-recurrent connections); 0 disables it.
        tie_weights: the decoder shares the embedding matrix (needs emb_size == hidden_size).
        init_scale: every parameter starts uniform in [-init_scale, init_scale].

    Batches:
        batch_size: parallel token streams in training; bptt: steps each backward pass unrolls.
        eval_batch_size: streams when evaluating validation and test.
        train_fraction: train on this leading fraction of the train split (quick searches, tests).
        eval_fraction: evaluate on this leading fraction of valid and test (1: the whole splits).

    Optimisation:
        epochs: passes over the (fraction of the) train split.
        optimizer: sgd, momentum (SGD with ``momentum``), adam (L2 ``weight_decay``), adamw (decoupled).
        lr: the initial learning rate. The gradient is that of the loss summed over the bptt steps and
            averaged over the batch, Zaremba's convention, so lr 1 and clip 5 are the paper's numbers.
        momentum, weight_decay: optimizer coefficients.
        lr_schedule: per-epoch learning rate (see ``trainables.rnn.schedule``): constant; step
            (lr / lr_decay ** max(0, epoch - decay_start), epochs 1-based); plateau (divide by
            lr_decay after an epoch whose val_ppl did not improve); cosine (half a cosine from lr
            towards 0 over ``epochs``).
        lr_decay: the divisor of step and plateau (>= 1; 1 keeps lr constant).
        decay_start: the last epoch the step schedule trains at the full lr (Zaremba small: 4).
        clip: global gradient-norm clip; 0 disables it.
        diverge_loss: a train or validation loss above this (nats/token), or NaN/inf, ends the trial
            as diverged (a uniform guess over 10k words is 9.2).

    Runtime:
        seed: seeds Python, NumPy and torch (initial weights, dropout).
        device: auto (CUDA when the trial has a GPU, with bf16 autocast), cpu or cuda.
        label: a name for the configuration (a reference report's experiment ID, ``configs:`` in a
            search file); recorded with the trial, unused in training.
    """

    cell: Literal["lstm", "gru"] = "lstm"
    emb_size: PosInt | None = None
    hidden_size: PosInt = 200
    num_layers: PosInt = 2
    dropout: Unit = 0.0
    tie_weights: bool = False
    init_scale: PosFloat = 0.1

    batch_size: PosInt = 20
    bptt: PosInt = 20
    eval_batch_size: PosInt = 10
    train_fraction: Fraction = 1.0
    eval_fraction: Fraction = 1.0

    epochs: PosInt = 13
    optimizer: Literal["sgd", "momentum", "adam", "adamw"] = "sgd"
    lr: PosFloat = 1.0
    momentum: Unit = 0.9
    weight_decay: NonNeg = 0.0
    lr_schedule: Literal["constant", "step", "plateau", "cosine"] = "step"
    lr_decay: Annotated[float, Field(ge=1)] = 2.0
    decay_start: Annotated[int, Field(ge=0)] = 4
    clip: NonNeg = 5.0
    diverge_loss: PosFloat = 15.0

    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    label: str | None = None

    def __post_init__(self) -> None:
        # Fail before computing (STYLE.md 3); single-field bounds are in the annotations above.
        if self.tie_weights and self.emb != self.hidden_size:
            raise ValueError(
                f"tie_weights needs emb_size == hidden_size, got emb_size={self.emb_size} and "
                f"hidden_size={self.hidden_size}"
            )

    @property
    def emb(self) -> int:
        """The embedding width: emb_size, or hidden_size when emb_size is None."""
        return self.emb_size if self.emb_size is not None else self.hidden_size

    @property
    def gates(self) -> int:
        """Weight blocks per recurrent layer: 4 for an LSTM (i, f, g, o), 3 for a GRU (r, z, n)."""
        return 4 if self.cell == "lstm" else 3


def param_count(cfg: RNNConfig, vocab_size: int = PTB_VOCAB, non_embedding: bool = False) -> int:
    """Parameters of ``RNNModel(cfg, vocab_size)``, in closed form (tied weights counted once).

    Embedding V·e; recurrent layer l with input width i (e for the first, h after):
    G·(i·h + h·h + 2h), G = 4 (LSTM) or 3 (GRU), because PyTorch keeps two bias vectors per gate
    (b_ih and b_hh); decoder h·V weights (unless tied) + V biases. Zaremba small (untied LSTM
    2×200, V = 10,000): 2,000,000 + 2 × 321,600 + 2,010,000 = 4,653,200.

    Args:
        cfg: a parsed config.
        vocab_size: V, 10,000 for Penn Treebank.
        non_embedding: leave out the embedding matrix (with tied weights that removes the decoder's
            weights too, as they are the same tensor).
    """
    e, h, g, v = cfg.emb, cfg.hidden_size, cfg.gates, vocab_size
    recurrent = g * (e * h + h * h + 2 * h) + (cfg.num_layers - 1) * g * (2 * h * h + 2 * h)
    decoder = v + (0 if cfg.tie_weights else h * v)
    embedding = 0 if non_embedding else v * e
    return embedding + recurrent + decoder


def params_nonembed(cfg: RNNConfig, vocab_size: int = PTB_VOCAB) -> int:
    """Parameters without the embedding matrix (an untied decoder is counted)."""
    return param_count(cfg, vocab_size, non_embedding=True)


def model_mb(cfg: RNNConfig, vocab_size: int = PTB_VOCAB) -> float:
    """fp32 parameter bytes / 2**20 (Zaremba small: 17.75)."""
    return param_count(cfg, vocab_size) * 4 / MB


def summary(cfg: RNNConfig, vocab_size: int = PTB_VOCAB) -> dict[str, Any]:
    """What ``tunelab inspect`` prints for a config: sizes (FLOPs are added by the registry).

    Args:
        cfg: a parsed config.
        vocab_size: V, 10,000 for Penn Treebank.
    """
    return {
        "params": param_count(cfg, vocab_size),
        "params_nonembed": params_nonembed(cfg, vocab_size),
        "model_mb": round(model_mb(cfg, vocab_size), 2),
        "epochs": cfg.epochs,
    }


def check(cfg: RNNConfig, constraints: Mapping[str, Any]) -> str | None:
    """Why a parsed config cannot run under a search's constraints, or None when it can.

    Args:
        cfg: a parsed config.
        constraints: name -> bound; ``model_mb`` and ``params`` (see ``_config.size_violation``), of
            the model with Penn Treebank's vocabulary.
    """
    return size_violation("rnn", constraints, model_mb(cfg), param_count(cfg))

