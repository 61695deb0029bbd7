"""The GPT trainable's config: one flat dataclass a trial's dict becomes, plus torch-free arithmetic on it.

Nothing here imports torch (except ``check``'s GPU branch, lazily), so the search can validate configs,
count parameters and FLOPs, and turn a FLOP budget into steps without it. ``tunelab inspect`` prints
``summary(cfg)``.

Budget arithmetic (DESIGN.md, "FLOPs and budgets"):

    tokens_per_step = batch_size × seq_len × grad_accum
    steps           = floor(flop_budget / (flops_per_token × tokens_per_step))   (or max_steps)
    warm-up steps   = warmup_steps, or floor(steps × warmup_frac)

Or by epochs, like the recurrent LM (``epochs`` set, ``flop_budget: null``): an epoch is one pass over
the leading ``train_fraction`` of the training split, cut into ``batch_size`` contiguous streams
(``rnn.data.batchify``) read in windows of ``seq_len`` tokens, so

    steps per epoch = floor((floor(N × train_fraction) // batch_size − 1) / (seq_len × grad_accum))
    steps           = epochs × steps per epoch

which needs N, the training split's tokens: ``epoch_steps`` takes it (the trial has its data; ``summary``
uses Penn Treebank's 929,589, the corpus the epoch-based GPT is meant for).

Evaluations happen every ``eval_interval`` optimizer steps (default 100), or, when ``eval_every_flops``
is set, at the first step whose cumulative FLOPs reach each multiple of it; by epochs, at the end of
every epoch (and every ``eval_interval`` steps too, when it is set); the last step is always evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from tunelab.trainables._config import Fraction, PosFloat, PosInt, Unit, config_dataclass, first_violation, window
from tunelab.trainables.flops import gpt_flops_per_token, gpt_mlp_width

CONSTRAINTS = ("model_mb", "params", "memory_mb", "gpu_memory")
MB = 2**20
EVAL_INTERVAL = 100  # optimizer steps between evaluations when a run is counted in steps
PTB_TRAIN_TOKENS = 929_589  # Penn Treebank's training split with <eos> (rnn.data): what summary sizes epochs on


# GPT-2 small's shape (Radford et al. 2019): ``ModelConfig(**GPT2_SMALL)`` has 124,439,808 parameters.
GPT2_SMALL = dict(vocab_size=50257, n_positions=1024, n_layer=12, n_head=12, n_embd=768)

# The blocks' default width: ``n_embd``'s default, and ``base_width``'s, so that µP's default base is
# the default model.
WIDTH = 256


@config_dataclass
class BlockConfig:
    """The shape of a stack of transformer blocks, all ``Block`` in model.py needs.

    ``ModelConfig`` (the GPT) and ``trainables.vit.config.ViTConfig`` extend it, so the two families
    share one set of block fields and defaults.

    Attributes:
        n_layer, n_head, n_embd: depth, heads per layer, width d (heads divide d).
        mlp_ratio: MLP hidden width over d.
        dropout: on embeddings, attention weights and residual branches.
        bias: biases in Linear and LayerNorm layers.
        mlp_bias: biases in the MLP's two Linear layers; None follows ``bias``. Seed 002's decoder
            keeps them out (a "bias free MLP") while its attention has biases.
        norm: "pre" (GPT-2: LayerNorm before each sub-layer) or "post" (GPT-1 / Vaswani et al.: after
            each residual sum).
        parametrization: how initialisation, learning rates and multipliers change with the width.
            "sp", the standard one: the same init and learning rate at every width. "mup", the
            maximal-update parametrization of Tensor Programs V (Yang et al. 2022), Adam rules:
            the hidden matrices' init std and learning rate shrink with the width, the readout's
            input and the attention logits get width multipliers (``width_mult`` and the
            properties after it; model.py applies them), so that hyperparameters tuned at one width
            carry over to others. Adam and AdamW only (the SGD rules differ).
        base_width: the width at which "mup" equals "sp" exactly; the rules scale with
            n_embd / base_width. n_head is taken to stay fixed across widths (the head width grows).
    """

    n_layer: PosInt = 4
    n_head: PosInt = 4
    n_embd: PosInt = WIDTH
    mlp_ratio: PosFloat = 4.0
    dropout: Unit = 0.0
    bias: bool = True
    mlp_bias: bool | None = None
    norm: Literal["pre", "post"] = "pre"
    parametrization: Literal["sp", "mup"] = "sp"
    base_width: PosInt = WIDTH

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        optimizer = getattr(self, "optimizer", None)  # a trial's config (GPT, ViT) extends this one with it
        if self.parametrization == "mup" and optimizer not in (None, "adam", "adamw"):
            raise ValueError(f"parametrization=mup implements Tensor Programs V's Adam rules; optimizer={optimizer} "
                             "would need its SGD rules: use adam or adamw")

    # --- µP's width rules (Tensor Programs V, Table 3, Adam): each is 1 under "sp" and at base_width ---
    @property
    def width_mult(self) -> float:
        """m = n_embd / base_width under "mup"; 1 under "sp"."""
        return self.n_embd / self.base_width if self.parametrization == "mup" else 1.0

    @property
    def hidden_lr_mult(self) -> float:
        """The hidden matrices' learning-rate factor: 1/m (Adam LR ∝ 1/fan_in)."""
        return self.base_width / self.n_embd if self.parametrization == "mup" else 1.0

    @property
    def hidden_init_mult(self) -> float:
        """The hidden matrices' init-std factor: 1/√m (init variance ∝ 1/fan_in)."""
        return math.sqrt(self.hidden_lr_mult)

    @property
    def readout_mult(self) -> float:
        """The readout's multiplier: 1/m (``mup``'s MuReadout: output weights with a 1/fan_in
        multiplier and a constant init, which lets the readout share the embedding matrix)."""
        return self.hidden_lr_mult

    @property
    def attn_scale(self) -> float:
        """The attention logits' factor: 1/√d_head under "sp" (Vaswani et al. 2017); under "mup"
        √d_head,base / d_head = (1/√d_head)·√(1/m), with d_head,base = base_width / n_head: 1/d_head
        as width grows (Tensor Programs V, section on attention logit scaling and Appendix J.2.1),
        equal to SP's at base_width."""
        return 1.0 / math.sqrt(self.n_embd // self.n_head) * math.sqrt(self.hidden_lr_mult)

    @property
    def mlp_width(self) -> int:
        return gpt_mlp_width(self.n_embd, self.mlp_ratio)

    @property
    def mlp_biased(self) -> bool:
        """Whether the MLP's Linear layers have biases (``mlp_bias``, else ``bias``)."""
        return self.bias if self.mlp_bias is None else self.mlp_bias


@config_dataclass
class ModelConfig(BlockConfig):
    """The GPT's shape, all ``GPT`` in model.py needs; ``GPTConfig`` extends it with training fields.

    Attributes:
        the fields of ``BlockConfig``; with ``norm: pre`` the GPT adds a final LayerNorm, with
            ``post`` it has none (its last block already ends on one).
        vocab_size: token ids are in [0, vocab_size) (must cover the token folder's vocabulary).
        n_positions: learned positions, the longest context the model takes.
        tie_embeddings: the LM head shares the token embedding matrix.
    """

    vocab_size: PosInt = 50257
    n_positions: PosInt = 128
    tie_embeddings: bool = True


@config_dataclass
class GPTConfig(ModelConfig):
    """Everything one GPT trial needs; the search's flat config maps onto these fields.

    Model: the fields of ``ModelConfig``, inherited with their defaults.

    Batch and budget:
        batch_size: sequences per micro-batch.
        seq_len: tokens per sequence; None means n_positions (seed 003's choice).
        grad_accum: micro-batches per optimizer step.
        flop_budget: training FLOPs for the whole trial; fixes the number of steps.
        max_steps: the number of steps directly.
        epochs: passes over the training data in order (the recurrent LM's epochs): each epoch reads
            the ``batch_size`` streams of the training split in consecutive windows of seq_len tokens.
            Exactly one of flop_budget, max_steps and epochs is set (the default is a budget; set
            ``flop_budget: null`` to give steps or epochs instead).
        train_fraction: train on this leading fraction of the training split (quick searches, tests),
            as the recurrent LM does.

    Optimizer and schedule:
        optimizer: adamw (decoupled decay; fused kernels), adam (L2 decay), sgd, momentum (SGD with
            ``momentum``). Weight decay applies to 2-D weights only.
        max_lr, min_lr: cosine schedule from max_lr (after warm-up) down to min_lr at the last step.
            Under ``parametrization: mup`` these are the rates of the embeddings, biases, norms and
            readout; the blocks' matrices train at ``hidden_lr_mult`` (base_width / n_embd) times them.
        lr_ratio: when set, the peak is lr_ratio × min_lr and max_lr is ignored (seed 003 searches
            min_lr with max_lr = 10 · min_lr).
        warmup_frac: warm-up steps as a fraction of all steps (seed 003: 1/10), unless
        warmup_steps: is set.
        weight_decay, beta1, beta2, momentum: optimizer coefficients.
        clip: global gradient-norm clip; None or 0 disables it.

    Evaluation:
        eval_interval: optimizer steps between evaluations; None: 100 when the run is counted in
            steps or FLOPs, none besides the epochs' ends when it is counted in epochs.
        eval_every_flops: when set, evaluate instead whenever cumulative training FLOPs cross the next
            multiple of it, so trials of different shapes report at (nearly) equal compute, the rungs
            ASHA compares on with ``time_attr: flops``.
        eval_iters: validation batches per evaluation, always the same windows (a fixed slice).
            By epochs a validation (and the final test) evaluation reads the whole split instead, in
            the training's windows, as the recurrent LM does, so that the two families' perplexities
            mean the same.

    Runtime:
        compile: torch.compile the model (worth it on CUDA; on CPU it needs a C++ compiler).
        device: auto (CUDA when the trial has a GPU), cpu or cuda.
        seed: seeds Python, NumPy, torch and the training-window generator.
        label: a name for the configuration (a reference report's experiment ID, ``configs:`` in a
            search file); recorded with the trial, unused in training.
        diverge_loss: a training or validation loss above this (or NaN/inf) ends the trial as
            diverged; None means 2 · ln(vocab_size), twice the loss of a uniform guess.
    """

    batch_size: PosInt = 32
    seq_len: PosInt | None = None
    grad_accum: PosInt = 1
    flop_budget: PosFloat | None = 1e15
    max_steps: PosInt | None = None
    epochs: PosInt | None = None
    train_fraction: Fraction = 1.0

    optimizer: Literal["adamw", "adam", "sgd", "momentum"] = "adamw"
    max_lr: PosFloat = 1e-3
    min_lr: Annotated[float, Field(ge=0)] = 1e-4
    lr_ratio: Annotated[float, Field(ge=1)] | None = None
    warmup_frac: Unit = 0.1
    warmup_steps: Annotated[int, Field(ge=0)] | None = None
    weight_decay: Annotated[float, Field(ge=0)] = 0.1
    beta1: Unit = 0.9
    beta2: Unit = 0.95
    momentum: Unit = 0.9
    clip: Annotated[float, Field(ge=0)] | None = 1.0

    eval_interval: PosInt | None = None
    eval_every_flops: PosFloat | None = None
    eval_iters: PosInt = 20

    compile: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    diverge_loss: PosFloat | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        # Fail before computing (STYLE.md 3): every cross-field rule, with the fields named.
        super().__post_init__()
        if self.seq_len is not None and self.seq_len > self.n_positions:
            raise ValueError(f"seq_len={self.seq_len} exceeds n_positions={self.n_positions}")
        lengths = [n for n in ("flop_budget", "max_steps", "epochs") if getattr(self, n) is not None]
        if len(lengths) != 1:
            raise ValueError(f"set exactly one of flop_budget, max_steps and epochs (the others to null); "
                             f"got {', '.join(lengths) or 'none'}")
        if self.min_lr > self.peak_lr:
            raise ValueError(f"min_lr={self.min_lr} exceeds the peak learning rate {self.peak_lr}")
        if self.epochs is not None:
            if self.eval_every_flops is not None:
                raise ValueError("eval_every_flops goes with a FLOP budget or max_steps, not with epochs")
            return  # the steps depend on the data: the trial checks them (``epoch_steps``)
        steps = self.steps
        if steps < 1:
            raise ValueError(
                f"flop_budget={self.flop_budget:.3g} buys no optimizer step: one step costs "
                f"{self.flops_per_step:.3g} FLOPs ({self.flops_per_token} per token × {self.tokens_per_step} tokens)"
            )
        if self.warmup_steps is not None and self.warmup_steps > steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} exceeds the {steps} training steps")
        if self.eval_every_flops is not None:
            if self.eval_every_flops > steps * self.flops_per_step:
                raise ValueError(
                    f"eval_every_flops={self.eval_every_flops:.3g} exceeds the trial's "
                    f"{steps * self.flops_per_step:.3g} training FLOPs: no evaluation before the end"
                )
        elif self.eval_interval is not None and self.eval_interval > steps:
            raise ValueError(f"eval_interval={self.eval_interval} exceeds the {steps} training steps")

    # --- derived quantities (properties, so the dict a trial got stays the dict it was given) ----
    @property
    def context(self) -> int:
        """Tokens per training sequence: seq_len, or n_positions when seq_len is None."""
        return self.seq_len if self.seq_len is not None else self.n_positions

    @property
    def peak_lr(self) -> float:
        """The learning rate at the end of warm-up: lr_ratio × min_lr when lr_ratio is set, else max_lr."""
        return self.lr_ratio * self.min_lr if self.lr_ratio is not None else self.max_lr

    @property
    def flops_per_token(self) -> int:
        return gpt_flops_per_token(self, self.context)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.context * self.grad_accum

    @property
    def flops_per_step(self) -> int:
        return self.flops_per_token * self.tokens_per_step

    @property
    def steps(self) -> int:
        """Optimizer steps of the whole trial (``steps_from_budget``); by epochs, on Penn Treebank."""
        return steps_from_budget(self, PTB_TRAIN_TOKENS)

    @property
    def warmup(self) -> int:
        """Warm-up steps of ``steps`` (``warmup_of``)."""
        return self.warmup_of(self.steps)

    def warmup_of(self, steps: int) -> int:
        """Warm-up steps of a run of ``steps``: warmup_steps, or floor(steps × warmup_frac)."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return math.floor(steps * self.warmup_frac)

    @property
    def loss_ceiling(self) -> float:
        return self.diverge_loss if self.diverge_loss is not None else 2.0 * math.log(self.vocab_size)


def steps_from_budget(cfg: GPTConfig, train_tokens: int | None = None) -> int:
    """Optimizer steps a config trains for.

    steps = floor(flop_budget / (flops_per_token × batch_size × seq_len × grad_accum)) (DESIGN.md),
    or max_steps when no budget is given, or epochs × ``epoch_steps``.

    Args:
        cfg: the trial's config.
        train_tokens: the training split's tokens (needed by epochs only).
    """
    if cfg.max_steps is not None:
        return cfg.max_steps
    if cfg.epochs is not None:
        if train_tokens is None:
            raise ValueError("a run counted in epochs needs the training split's size for its steps")
        return cfg.epochs * epoch_steps(cfg, train_tokens)
    # The product is an exact integer; dividing the float budget by it and flooring is exact enough
    # (budgets are far below 2**53 × flops_per_step).
    return math.floor(cfg.flop_budget / cfg.flops_per_step)


def epoch_steps(cfg: GPTConfig, train_tokens: int) -> int:
    """Optimizer steps per epoch: the windows of ``context`` tokens (plus the next one, the last
    window's target) in each of the ``batch_size`` streams of the leading ``train_fraction`` of the
    training split, ``grad_accum`` windows a step; the streams' tails shorter than that are left out.

    Args:
        cfg: the trial's config.
        train_tokens: the training split's tokens.
    """
    rows = int(train_tokens * cfg.train_fraction) // cfg.batch_size
    return max(rows - 1, 0) // (cfg.context * cfg.grad_accum)


def eval_steps(cfg: GPTConfig, train_tokens: int | None = None) -> list[int]:
    """The optimizer steps (1-based, increasing) after which the trial evaluates and reports.

    Every ``eval_interval`` steps, or at the first step whose cumulative FLOPs reach each multiple of
    ``eval_every_flops``; by epochs, at each epoch's end (and every ``eval_interval`` steps when it is
    set); the last step is always included.

    Args:
        cfg: the trial's config.
        train_tokens: the training split's tokens (needed by epochs only).
    """
    steps = steps_from_budget(cfg, train_tokens)
    if cfg.epochs is not None:
        per_epoch = steps // cfg.epochs
        points = {k * per_epoch for k in range(1, cfg.epochs + 1)}
        if cfg.eval_interval is not None:
            points |= set(range(cfg.eval_interval, steps + 1, cfg.eval_interval))
    elif cfg.eval_every_flops is None:
        interval = cfg.eval_interval or EVAL_INTERVAL
        points = set(range(interval, steps + 1, interval))
    else:
        per_step = cfg.flops_per_step
        total_multiples = math.floor(steps * per_step / cfg.eval_every_flops)
        points = {math.ceil(k * cfg.eval_every_flops / per_step) for k in range(1, total_multiples + 1)}
    points.add(steps)
    return sorted(p for p in points if 1 <= p <= steps)


def param_count(cfg: GPTConfig | ModelConfig, non_embedding: bool = False) -> int:
    """Parameters of ``GPT(cfg)``, in closed form (tied weights counted once).

    Per block (d = n_embd, m = MLP width, b = 1 with bias else 0, b' the same for the MLP's biases):
    attention 4d² + 4bd (the 3d×d QKV and d×d output projections: 4d(d+1) with bias, 4d² without, as
    in seed 002), MLP 2dm + b'(m + d), two LayerNorms 2(d + bd). Plus token (V·d) and position (n_positions·d) embeddings, a final
    LayerNorm with pre-norm, and an untied LM head (V·d). ``GPT2_SMALL``: 124,439,808.

    Args:
        cfg: the config or its model part.
        non_embedding: leave out the token and position embeddings (Kaplan et al. 2020's N).
    """
    d, v = cfg.n_embd, cfg.vocab_size
    total = cfg.n_layer * block_param_count(cfg) + (layer_norm_param_count(cfg) if cfg.norm == "pre" else 0)
    if not cfg.tie_embeddings:
        total += v * d  # the LM head (no bias)
    if not non_embedding:
        total += v * d + cfg.n_positions * d
    return total


def block_param_count(cfg: BlockConfig) -> int:
    """Parameters of one ``Block`` (d = n_embd, m = MLP width, b = 1 with bias else 0, b' the same for
    the MLP): attention 4d² + 4bd, MLP 2dm + b'(m + d), two LayerNorms 2(d + bd). The GPT and the ViT
    stack these.

    Args:
        cfg: the block shape.
    """
    d, b, b_mlp, m = cfg.n_embd, int(cfg.bias), int(cfg.mlp_biased), cfg.mlp_width
    return (4 * d * d + 4 * b * d) + (2 * d * m + b_mlp * (m + d)) + 2 * layer_norm_param_count(cfg)


def layer_norm_param_count(cfg: BlockConfig) -> int:
    """Parameters of one LayerNorm of width d: its gain, and its bias when ``cfg.bias``."""
    return cfg.n_embd * (1 + int(cfg.bias))


def params_nonembed(cfg: GPTConfig | ModelConfig) -> int:
    """Parameters without token and position embeddings (an untied LM head is counted)."""
    return param_count(cfg, non_embedding=True)


def model_mb(cfg: GPTConfig | ModelConfig) -> float:
    """fp32 parameter bytes / 2**20 (seed 003's "model size", which it keeps within [50, 98] MB)."""
    return param_count(cfg) * 4 / MB


def memory_estimate_mb(cfg: GPTConfig) -> float:
    """A conservative estimate of one trial's peak accelerator memory in MB (bf16 autocast on CUDA).

    Weights, gradients and optimizer state: 4 + 4 + (8 Adam, 4 momentum, 0 SGD) bytes per parameter.
    Activations of one micro-batch (b sequences of s tokens): per layer s·b·d·34 bytes, Korthikanti et
    al. 2022 ("Reducing Activation Recomputation"), eq. 1 for 16-bit activations with dropout, without
    its 5·a·s²·b term because the fused attention kernels do not store the score matrix; plus the
    logits, 10·b·s·V bytes (bf16 logits, fp32 log-softmax and its gradient).

    Args:
        cfg: the trial's config.
    """
    state_bytes = {"adamw": 16, "adam": 16, "momentum": 12, "sgd": 8}[cfg.optimizer]
    tokens = cfg.batch_size * cfg.context
    activations = cfg.n_layer * tokens * cfg.n_embd * 34 + 10 * tokens * cfg.vocab_size
    return (param_count(cfg) * state_bytes + activations) / MB


def summary(cfg: GPTConfig) -> dict[str, Any]:
    """What ``tunelab inspect`` prints for a config: sizes, cost and schedule.

    Args:
        cfg: the trial's config.
    """
    steps = cfg.steps
    return {
        **({"epochs": cfg.epochs, "steps_per_epoch": epoch_steps(cfg, PTB_TRAIN_TOKENS)} if cfg.epochs else {}),
        "params": param_count(cfg),
        "params_nonembed": params_nonembed(cfg),
        "model_mb": round(model_mb(cfg), 2),
        "flops_per_token": cfg.flops_per_token,
        "tokens_per_step": cfg.tokens_per_step,
        "steps": steps,
        "warmup_steps": cfg.warmup,
        "tokens": steps * cfg.tokens_per_step,
        "flops": steps * cfg.flops_per_step,
        "evaluations": len(eval_steps(cfg, PTB_TRAIN_TOKENS)),
        # The peak learning rate when it is derived (lr_ratio × min_lr: max_lr is then unused); else
        # it is max_lr, which the config shows already.
        **({"peak_lr": cfg.peak_lr} if cfg.lr_ratio is not None else {}),
        "memory_estimate_mb": round(memory_estimate_mb(cfg), 1),
        **parametrization_summary(cfg, cfg.peak_lr),
    }


def parametrization_summary(cfg: BlockConfig, lr: float) -> dict[str, float]:
    """What ``parametrization: mup`` sets, for ``tunelab inspect``: the width multiplier m, the hidden
    matrices' peak learning rate and init-std factor, the readout's multiplier and the attention
    scale (``BlockConfig``'s rules); nothing under "sp", whose values the config shows already.

    Args:
        cfg: the config (GPT or ViT).
        lr: its peak learning rate.
    """
    if cfg.parametrization == "sp":
        return {}
    return {"width_mult": cfg.width_mult, "hidden_lr": lr * cfg.hidden_lr_mult,
            "hidden_init_mult": cfg.hidden_init_mult, "readout_mult": cfg.readout_mult,
            "attn_scale": cfg.attn_scale}


def check(cfg: GPTConfig, constraints: Mapping[str, Any]) -> str | None:
    """Why a parsed config cannot run under a search's constraints, or None when it can.

    Constraints (a search file's ``constraints:``):
        model_mb: [lo, hi] on fp32 parameter MB (seed 003 rejects models < 50 or > 98 MB).
        params: [lo, hi] on the parameter count.
        memory_mb: hi, the most accelerator MB ``memory_estimate_mb`` may reach.
        gpu_memory: f in (0, 1], the share of the local GPU's total memory a trial may fill (set it to
            the trial's ``resources.gpu``, times some headroom). Checked only where this process sees a
            CUDA device; total rather than free memory, so that trials already running on the same GPU
            do not make the answer depend on timing.

    Args:
        cfg: a parsed config.
        constraints: name -> bound.
    """
    return first_violation("gpt", constraints, {
        "model_mb": lambda bound: window("model_mb", model_mb(cfg), bound, "{:.1f}"),
        "params": lambda bound: window("params", param_count(cfg), bound, "{:,}"),
        "memory_mb": lambda bound: _memory_mb(cfg, float(bound)),
        "gpu_memory": lambda bound: _gpu_memory(cfg, float(bound)),
    })


def _memory_mb(cfg: GPTConfig, bound: float) -> str | None:
    est = memory_estimate_mb(cfg)
    return f"memory estimate {est:.0f} MB exceeds memory_mb={bound:g}" if est > bound else None


def _gpu_memory(cfg: GPTConfig, fraction: float) -> str | None:
    if cfg.device == "cpu":
        return None
    import torch  # only here: the rest of this module stays torch-free

    if not torch.cuda.is_available():
        return None
    total = torch.cuda.get_device_properties(0).total_memory / MB
    est = memory_estimate_mb(cfg)
    if est > fraction * total:
        return f"memory estimate {est:.0f} MB exceeds {fraction:g} × {total:.0f} MB of the GPU"
    return None
