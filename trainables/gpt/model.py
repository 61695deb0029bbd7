"""A decoder-only GPT language model, in one file after nanoGPT's model.py.

References:
1) OpenAI's GPT-2 (Radford et al. 2019) and its TensorFlow code, whose parameter names the modules
   below keep (wte, wpe, h, c_attn, c_proj, c_fc, ln_f), so GPT-2 small has 124,439,808 parameters.
2) Karpathy's nanoGPT model.py, for the layout, the init and the weight tying.
3) Vaswani et al. 2017 / GPT-1 (Radford et al. 2018) for the post-norm variant.

The shape comes from ``ModelConfig`` (config.py), which a trial's ``GPTConfig`` extends.
"""

from __future__ import annotations

import math

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
            # Analysis path: materialise softmax(QKᵀ/√d_head) (causally masked), Vaswani et al. eq. 1.
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            if self.causal:
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                att = att.masked_fill(~mask, float("-inf"))
            att = F.softmax(att, dim=-1)
            y = self.attn_dropout(att) @ v
        else:
            # Fused kernels (flash / memory-efficient on CUDA); the same maths without the T×T matrix.
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=self.causal
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
        # GPT-2's scaled init of the projections into the residual stream: std 0.02/√(2·n_layer),
        # since each layer adds two residual branches (Radford et al. 2019, section 2.3).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

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
