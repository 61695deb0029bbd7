"""A decoder-only GPT language model, in one file after nanoGPT's model.py.

References:
1) OpenAI's GPT-2 (Radford et al. 2019) and its TensorFlow code, whose parameter names the modules
   below keep (wte, wpe, h, c_attn, c_proj, c_fc, ln_f), so GPT-2 small has 124,439,808 parameters.
2) Karpathy's nanoGPT model.py, for the layout, the init and the weight tying.
3) Vaswani et al. 2017 / GPT-1 (Radford et al. 2018) for the post-norm variant.
4) Tensor Programs V (Yang et al. 2022, "Tuning Large Neural Networks via Zero-Shot Hyperparameter
   Transfer"), Table 3's Adam column, for ``parametrization: mup``, in the form of Microsoft's ``mup``
   package (github.com/microsoft/mup: MuReadout, MuAdam), whose constant-init readout with a 1/width
   multiplier can share the embedding matrix. Per parameter, with m = n_embd / base_width:
       the blocks' matrices (c_attn, c_proj, c_fc: both dimensions grow with the width, "hidden"):
           init std × 1/√m (variance ∝ 1/fan_in), Adam learning rate × 1/m (∝ 1/fan_in);
       embeddings, positions, biases, LayerNorms, the readout (one dimension grows, "vector-like"):
           init and learning rate unchanged;
       the readout's input × 1/m (its effective weights then have init variance ∝ 1/fan_in² and
           Adam learning rate ∝ 1/fan_in, Table 3's output weights);
       attention logits × √d_head,base / d_head instead of 1/√d_head (``BlockConfig.attn_scale``).
   At base_width every factor is 1 and the model computes what "sp" computes, bit for bit.

The shape comes from ``ModelConfig`` (config.py), which a trial's ``GPTConfig`` extends.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

from tunelab.trainables.gpt.config import BlockConfig, ModelConfig


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: one fused QKV projection and one output projection.

    Parameters: 4d(d+1) with bias, 4d² without (seed 002, problem 2).

    Args:
        cfg: the block shape.
        causal: mask attention to later positions (the GPT); False lets every position attend to
            every other (the ViT's encoder blocks).
    """

    def __init__(self, cfg: BlockConfig, causal: bool = True) -> None:
        super().__init__()
        self.n_head, self.n_embd, self.dropout, self.causal = cfg.n_head, cfg.n_embd, cfg.dropout, causal
        self.scale = cfg.attn_scale  # 1/√d_head, or µP's √d_head,base / d_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v for all heads
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.attn_dropout = nn.Dropout(cfg.dropout)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """(B, T, d) -> ((B, T, d), attention weights (B, H, T, T) or None)."""
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        # (B, T, d) -> (B, H, T, d/H)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        att = None
        if return_attention:
            # Analysis path: materialise softmax(QKᵀ·scale) (causally masked), Vaswani et al. eq. 1.
            att = (q @ k.transpose(-2, -1)) * self.scale
            if self.causal:
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                att = att.masked_fill(~mask, float("-inf"))
            att = F.softmax(att, dim=-1)
            y = self.attn_dropout(att) @ v
        else:
            # Fused kernels (flash / memory-efficient on CUDA); the same maths without the T×T matrix.
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=self.causal, scale=self.scale
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y)), att


class MLP(nn.Module):
    """Position-wise feed-forward: d -> mlp_width -> d with GELU.

    The exact GELU (x·Φ(x), Hendrycks & Gimpel 2016), as nanoGPT and the ViT use, rather than GPT-2's
    tanh approximation: the two differ by less than 5e-4, and on the CPU the approximation's forward
    and backward cost 2.5 times as much (2.9 against 1.2 ms for a 2,048 x 512 activation on 2 threads,
    5% of a small GPT's step).
    """

    def __init__(self, cfg: BlockConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.mlp_width, bias=cfg.mlp_biased)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(cfg.mlp_width, cfg.n_embd, bias=cfg.mlp_biased)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """One transformer layer: attention then MLP, each inside a residual connection.

    Pre-norm (GPT-2): x + f(LN(x)). Post-norm (Vaswani et al. 2017, GPT-1): LN(x + f(x)).

    Args:
        cfg: the block shape.
        causal: causal attention (the GPT's default); False for an encoder (the ViT).
    """

    def __init__(self, cfg: BlockConfig, causal: bool = True) -> None:
        super().__init__()
        self.pre = cfg.norm == "pre"
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg, causal)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        if self.pre:
            a, att = self.attn(self.ln_1(x), return_attention)
            x = x + a
            x = x + self.mlp(self.ln_2(x))
        else:
            a, att = self.attn(x, return_attention)
            x = self.ln_1(x + a)
            x = self.ln_2(x + self.mlp(x))
        return x, att


def hidden_weights(blocks: Iterable[Block]) -> list[nn.Parameter]:
    """The blocks' matrices, both of whose dimensions grow with the width: µP's hidden weights."""
    return [p for block in blocks for p in (block.attn.c_attn.weight, block.attn.c_proj.weight,
                                            block.mlp.c_fc.weight, block.mlp.c_proj.weight)]


@torch.no_grad()
def init_blocks(blocks: Iterable[Block], cfg: BlockConfig) -> None:
    """Finish the blocks' init, in place, after every Linear's N(0, 0.02) (``GPT._init_weights``).

    GPT-2's scaled init of the projections into the residual stream: std 0.02/√(2·n_layer), since each
    layer adds two residual branches (Radford et al. 2019, section 2.3). Then µP's hidden weights:
    std × 1/√m (``hidden_init_mult``; Tensor Programs V, Table 3: variance ∝ 1/fan_in), applied by
    scaling the draws, so that the random stream, and at base_width every weight, is SP's.

    Args:
        blocks: the model's blocks, in order.
        cfg: their shape and parametrization.
    """
    blocks = list(blocks)
    for block in blocks:
        for p in (block.attn.c_proj.weight, block.mlp.c_proj.weight):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
    if cfg.parametrization == "mup":
        for p in hidden_weights(blocks):
            p.mul_(cfg.hidden_init_mult)


def width_groups(groups: list[dict[str, Any]], hidden: Iterable[nn.Parameter],
                 cfg: BlockConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups with µP's learning-rate rule: under "mup" each group's hidden
    weights move to a group of their own with ``lr_mult`` = 1/m (Adam learning rate ∝ 1/fan_in,
    Tensor Programs V, Table 3) and weight decay × m, so that AdamW's decay per step, lr × weight_decay,
    stays the same at every width (as mup's MuAdam scales both). Under "sp" the groups are returned as
    they are. ``_skeleton.set_lr`` multiplies each group's rate by its ``lr_mult``.

    Args:
        groups: parameter groups, each with its weight_decay (``_skeleton.decay_groups``).
        hidden: the hidden weights (``hidden_weights``).
        cfg: the model's parametrization.
    """
    if cfg.parametrization == "sp":
        return groups
    hidden_ids = {id(p) for p in hidden}
    out = []
    for group in groups:
        inner = [p for p in group["params"] if id(p) in hidden_ids]
        rest = [p for p in group["params"] if id(p) not in hidden_ids]
        if inner:
            out.append({**group, "params": inner, "lr_mult": cfg.hidden_lr_mult,
                        "weight_decay": group["weight_decay"] * cfg.width_mult})
        if rest:
            out.append({**group, "params": rest})
    return out


class GPT(nn.Module):
    """Decoder-only transformer language model.

    Args:
        cfg: a ``ModelConfig``, or a trial's ``GPTConfig`` (which extends it).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            wpe=nn.Embedding(cfg.n_positions, cfg.n_embd),
            drop=nn.Dropout(cfg.dropout),
            h=nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer)),
        ))
        if cfg.norm == "pre":  # post-norm already ends on a LayerNorm
            self.transformer["ln_f"] = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            # Weight tying (Press & Wolf 2017), as GPT-2 and nanoGPT do: one V×d matrix embeds and predicts.
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        init_blocks(self.transformer.h, cfg)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (tied weights once); non_embedding leaves out the token and position tables.

        Args:
            non_embedding: exclude wte and wpe (with untied weights the LM head still counts).
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel() + self.transformer.wpe.weight.numel()
        return n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, return_attention: bool = False):
        """Logits for every position, and the mean cross-entropy when targets are given.

        Args:
            idx: token ids, (B, T) with T <= n_positions.
            targets: next-token ids, (B, T); None skips the loss.
            return_attention: also return the attention weights of every layer and head,
                (B, n_layer, n_head, T, T), computed explicitly (slower; for analysis).

        Returns:
            (logits (B, T, V), loss or None), plus the attention weights when asked for.
        """
        B, T = idx.size()
        if T > self.cfg.n_positions:
            raise ValueError(f"sequence of length {T} exceeds n_positions={self.cfg.n_positions}")
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        attentions = []
        for block in self.transformer.h:
            x, att = block(x, return_attention)
            attentions.append(att)
        if "ln_f" in self.transformer:
            x = self.transformer.ln_f(x)
        if self.cfg.parametrization == "mup":
            # µP's readout multiplier, on the head's input as mup's MuReadout puts it: the same logits
            # as multiplying them, on d instead of V numbers per token.
            x = x * self.cfg.readout_mult
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        if return_attention:
            return logits, loss, torch.stack(attentions, dim=1)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample max_new_tokens continuations of idx (B, T), cropping the context to n_positions.

        Args:
            idx: prompt token ids (B, T).
            max_new_tokens: tokens to append.
            temperature: divides the logits; lower is greedier.
            top_k: sample among the k most likely tokens only.
            generator: torch RNG for reproducible samples.
        """
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.cfg.n_positions:])
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("inf")
            nxt = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)
            idx = torch.cat((idx, nxt), dim=1)
        return idx
