"""The arithmetic trainable's config (seed report 002): one flat dataclass, plus torch-free sizes and costs.

A trial learns modular arithmetic, "BOS a ∘ b = r EOS" (and "BOS a ∘ b ∘ c = r EOS"), r = a ∘ b mod p,
with a GPT or an LSTM/GRU, and the report studies when it generalises (grokking). Defaults are the
report's: p = 31, +, binary equations only, half of them for training, (L, d) = (2, 128), 4 heads,
AdamW at lr 1e-3 with weight decay 1 and β2 = 0.98, batches of 512, T = 10⁴ + 1 optimizer steps.

Nothing here imports torch: the search validates configs, counts parameters and FLOPs without it.
The models are the GPT and RNN families' own modules, built from the configs ``model_config`` and
``rnn_config`` derive from this one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from tunelab.trainables._config import NonNeg, PosFloat, PosInt, Unit, config_dataclass, first_violation, window
from tunelab.trainables.flops import gpt_flops_per_token, rnn_flops_per_token
from tunelab.trainables.gpt import config as gpt_config
from tunelab.trainables.rnn import config as rnn_config_module

OPS = ("+", "-", "*", "/")
CONSTRAINTS = ("params",)
# The file a GPT trial leaves with its last checkpoint (``trainables._report.ARTIFACTS``): the
# attention weights on two training equations, which the driver logs on the trial's MLflow run.
ATTENTION_ARTIFACT = "attention.json"

# Evaluations every 50 steps: 201 for the default T = 10⁴ + 1, so t_f is known to 0.5% of T (the
# training accuracy of seed 002's table saturates within the first 100-300 steps), while evaluating
# both splits (961 equations at p = 31, forward only) costs under 2% of the training time.
EVAL_EVERY = 50


@config_dataclass
class ArithConfig:
    """Everything one arithmetic trial needs; the search's flat config maps onto these fields.

    Task:
        p: the modulus; the numbers are 0 … p-1. Prime when ``op`` is "/" (every b ≠ 0 has an inverse).
        op: "+", "-", "*" or "/" (a · b⁻¹ mod p, b ≠ 0).
        orders: the equation orders in the data: 2 (a ∘ b = r), 3 (a ∘ b ∘ c = r, left to right), or
            both (shorter equations are padded at the end; the padding is never a target).
        r_train: the fraction of each order's equations in the training split; the rest validate.

    Model:
        model: "gpt" (the GPT family's decoder, pre-norm, attention with biases, bias-free MLP as in
            seed 002's count, tied embeddings), "lstm" or "gru" (the RNN family's model, hidden size d).
        num_layers, d_model: depth L and width d (GPT embedding width, LSTM/GRU hidden and embedding size).
        num_heads: attention heads (GPT only; they divide d_model).
        mlp_ratio: the GPT MLP's hidden width over d (seed 002's "multiplier").
        dropout: GPT dropout, or the RNN's on its non-recurrent connections; 0 in seed 002.

    Training:
        batch_size: equations per optimizer step (at most the training split: one step is then a
            full pass); batches walk through a fresh permutation of the training split every epoch.
        steps: optimizer steps T.
        eval_every: steps between evaluations (and reports); the last step is always evaluated.
        optimizer, lr, weight_decay, beta1, beta2, momentum: a constant learning rate; weight decay
            on every parameter, as in seed 002 (and Power et al. 2022).
        clip: global gradient-norm clip; 0 disables it.
        diverge_loss: a training or validation loss above this (or NaN/inf) ends the trial as diverged.
            High on purpose: while a model memorises the training split its validation loss climbs
            far above ln V (the first phase of grokking), which is no divergence.

    Runtime:
        seed: the train/validation split, the batch order and the initial weights.
        device: auto (CUDA when the trial has a GPU, with bf16 autocast), cpu or cuda.
    """

    model: Literal["gpt", "lstm", "gru"] = "gpt"
    p: Annotated[int, Field(ge=2)] = 31
    op: Literal["+", "-", "*", "/"] = "+"
    orders: list[Literal[2, 3]] = Field(default_factory=lambda: [2])
    r_train: Annotated[float, Field(gt=0, lt=1)] = 0.5

    num_layers: PosInt = 2
    d_model: PosInt = 128
    num_heads: PosInt = 4
    mlp_ratio: PosFloat = 4.0
    dropout: Unit = 0.0

    batch_size: PosInt = 512
    steps: PosInt = 10_001
    eval_every: PosInt = EVAL_EVERY
    optimizer: Literal["adamw", "adam", "sgd", "momentum"] = "adamw"
    lr: PosFloat = 1e-3
    weight_decay: NonNeg = 1.0
    beta1: Unit = 0.9
    beta2: Unit = 0.98
    momentum: Unit = 0.9
    clip: NonNeg = 0.0
    diverge_loss: PosFloat = 100.0

    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        # Fail before computing (STYLE.md 3).
        if not self.orders or len(set(self.orders)) != len(self.orders):
            raise ValueError(f"orders must list 2 and/or 3 once each, got {self.orders}")
        self.orders = sorted(self.orders)
        if self.op == "/" and not is_prime(self.p):
            raise ValueError(f"op '/' needs a prime p (every b ≠ 0 invertible), got p={self.p}")
        if self.model == "gpt" and self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        if self.eval_every > self.steps:
            raise ValueError(f"eval_every={self.eval_every} exceeds the {self.steps} training steps")
        for order in self.orders:
            n_train, n_val = split_sizes(self, order)
            if n_train < 1 or n_val < 1:
                raise ValueError(f"r_train={self.r_train} leaves {n_train} training and {n_val} validation "
                                 f"equations of order {order} (of {count(self.p, self.op, order)})")

    # --- the task's shape ------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """p numbers, 4 operators, "=", BOS, EOS, and PAD when two orders mix (``data.Vocabulary``)."""
        return self.p + len(OPS) + 3 + (1 if len(self.orders) > 1 else 0)

    @property
    def seq_len(self) -> int:
        """Input positions: the longest equation, "BOS a ∘ b (∘ c) = r EOS", less its last token
        (inputs are the sequence without its last token, targets without its first)."""
        return sequence_length(max(self.orders)) - 1

    @property
    def flops_per_token(self) -> int:
        return flops_per_token(self)


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % k for k in range(2, math.isqrt(n) + 1))


def sequence_length(order: int) -> int:
    """Tokens of one equation of ``order`` operands: BOS, operands and operators, "=", r, EOS."""
    return 2 * order + 3


def count(p: int, op: str, order: int) -> int:
    """Equations of ``order`` operands: every tuple once, divisors non-zero for "/"."""
    if op == "/":
        return p * (p - 1) ** (order - 1)
    return p**order


def split_sizes(cfg: ArithConfig, order: int) -> tuple[int, int]:
    """(training, validation) equations of one order: floor(r_train · n) to training, the rest to
    validation (the floor of 0.5 · 961 is 480, as ``int(r_train * len(dataset))`` gives in seed 002's code;
    the 1e-9 keeps 0.29 · 100 at 29 despite binary floating point)."""
    n = count(cfg.p, cfg.op, order)
    n_train = math.floor(cfg.r_train * n + 1e-9)
    return n_train, n - n_train


def model_config(cfg: ArithConfig) -> gpt_config.ModelConfig:
    """The GPT family's ``ModelConfig`` of an arithmetic trial: seed 002's decoder (attention with
    biases, LayerNorms with biases, a bias-free MLP), pre-norm, tied token embeddings, positions for
    the longest equation."""
    return gpt_config.ModelConfig(
        vocab_size=cfg.vocab_size, n_positions=cfg.seq_len, n_layer=cfg.num_layers, n_head=cfg.num_heads,
        n_embd=cfg.d_model, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout, bias=True, mlp_bias=False,
        tie_embeddings=True, norm="pre",
    )


def rnn_config(cfg: ArithConfig) -> rnn_config_module.RNNConfig:
    """The RNN family's ``RNNConfig`` of an arithmetic trial: embedding and hidden size d, L layers.

    ``bptt`` is the equation's input length: every equation starts from a zero state, so, as for a
    bptt window, no gradient flows into the initial state (the FLOP count's correction term). The
    other fields keep their defaults (uniform ±0.1 initialisation, untied decoder).
    """
    return rnn_config_module.RNNConfig(
        cell=cfg.model, hidden_size=cfg.d_model, num_layers=cfg.num_layers, dropout=cfg.dropout,
        bptt=cfg.seq_len,
    )


def param_count(cfg: ArithConfig, non_embedding: bool = False) -> int:
    """Parameters of the trial's model, in closed form.

    GPT: ``gpt.config.param_count``; L blocks of seed 002's P_block = (4 + 2·mult)·d² + 8d, a final
    LayerNorm (2d) and, unless ``non_embedding``, token (V·d) and position (S·d) embeddings; the LM head
    is the token embedding. LSTM/GRU: ``rnn.config.param_count``: the embedding (V·d), the recurrent
    stack (seed 002's LSTM count 4(d_x + L + (2L-1)d_h)d_h, plus the second bias vector per gate PyTorch
    keeps, 4·L·d_h) and the decoder (d·V + V).

    Args:
        cfg: a parsed config.
        non_embedding: leave out the token and position embeddings (seed 002's parameter count).
    """
    if cfg.model == "gpt":
        return gpt_config.param_count(model_config(cfg), non_embedding=non_embedding)
    return rnn_config_module.param_count(rnn_config(cfg), cfg.vocab_size, non_embedding=non_embedding)


def params_nonembed(cfg: ArithConfig) -> int:
    """Seed 002's P: parameters without the vocabulary and position embeddings."""
    return param_count(cfg, non_embedding=True)


def flops_per_token(cfg: ArithConfig) -> int:
    """Training FLOPs (forward + backward) per input token (``trainables.flops``), the loss's masking
    aside: every position runs forward and backward, only the result positions carry a loss."""
    if cfg.model == "gpt":
        return gpt_flops_per_token(model_config(cfg), cfg.seq_len)
    return rnn_flops_per_token(rnn_config(cfg), cfg.vocab_size)


def eval_steps(cfg: ArithConfig) -> list[int]:
    """The optimizer steps after which the trial evaluates and reports: every ``eval_every``, and the last."""
    return sorted({*range(cfg.eval_every, cfg.steps + 1, cfg.eval_every), cfg.steps})


def summary(cfg: ArithConfig) -> dict[str, Any]:
    """What ``tunelab inspect`` prints for a config: the task, sizes and cost.

    Args:
        cfg: a parsed config.
    """
    splits = {f"order_{o}": dict(zip(("train", "val"), split_sizes(cfg, o))) for o in cfg.orders}
    n_train = sum(s["train"] for s in splits.values())
    per_step = min(cfg.batch_size, n_train)
    return {
        "params": param_count(cfg),
        "params_nonembed": params_nonembed(cfg),
        "vocab_size": cfg.vocab_size,
        "seq_len": cfg.seq_len,
        "equations": splits,
        "sequences_per_step": per_step,
        "steps": cfg.steps,
        "evaluations": len(eval_steps(cfg)),
        "flops": cfg.flops_per_token * cfg.seq_len * per_step * cfg.steps,
        "compute": params_nonembed(cfg) * per_step * cfg.steps,
    }


def check(cfg: ArithConfig, constraints: Mapping[str, Any]) -> str | None:
    """Why a parsed config cannot run under a search's constraints, or None when it can.

    Constraints (a search file's ``constraints:``):
        params: [lo, hi] on the parameter count.

    Args:
        cfg: a parsed config.
        constraints: name -> bound.
    """
    return first_violation("arith", constraints, {
        "params": lambda bound: window("params", param_count(cfg), bound, "{:,}"),
    })
