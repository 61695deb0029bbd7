"""One trial's life, shared by every trainable family that trains a torch model.

    setup → resume → (train an interval → evaluate → report, with a checkpoint)* → end

A family subclasses ``Recipe`` and fills in what differs: its data on the device and its model
(``build``), the intervals between reports (``intervals``), one interval of training (``train_interval``), its
evaluation (``evaluate``), the metrics it derives from them (``observe``), what its last report adds
(``final``) and its own checkpoint state. ``run`` owns the rest, once for every family:

- device choice and seeding (Python, NumPy, torch; CUDA too);
- bf16 autocast on CUDA, fp32 on CPU (``Recipe.autocast``);
- the optimizer factory (``make_optimizer``), weight-decay groups (``decay_groups``) and gradient
  clipping (``clip_grad_norm``);
- progress counters and the wall clock, which add up across resumes (``Progress``);
- the checkpoint: model, optimizer, counters, RNG states and the family's state, and exact resume
  from it;
- divergence: a training or validation loss above the family's ceiling, or not finite, ends the
  trial with one last report carrying ``diverged: 1`` and no checkpoint;
- out of memory, while the model is built as well as while it trains: one last report carrying
  ``oom: 1``, the evaluation metrics at their worst, and the counters reached;
- ``mem_peak_mb``, the steady-state peak: from the end of the first epoch on (``reset_mem_peak``),
  the CUDA allocator's peak, on CPU the process's peak resident set; until then the peak so far.

Reports go through the function handed to ``run`` (``trainables._report.report``, or a test's).
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import dataclasses
import functools
import math
import random
import resource
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunelab.trainables import metrics as M
from tunelab.trainables._errors import ConfigError
from tunelab.trainables.rnn.data import batchify

MB = 2**20
Report = Callable[..., None]
_PROC_STATUS, _PROC_CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


# --- what every trial shares ----------------------------------------------------------------------

def pick_device(requested: str) -> torch.device:
    """The trial's device: CUDA when it has one (``auto``) or asks for it, else the CPU.

    Raises:
        ConfigError: ``cuda`` asked for where no CUDA device is visible.
    """
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but this trial sees no CUDA device")
    return torch.device("cuda" if requested != "cpu" and torch.cuda.is_available() else "cpu")


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX)
_TRIM_THRESHOLD = 1 << 30


@functools.cache
def retain_freed_memory() -> bool:
    """Let each training step reuse the pages the last one freed, instead of asking the kernel again.

    glibc's malloc gives large freed blocks back to the kernel: blocks above a threshold (adaptive,
    128 kB up to 32 MB) are mmapped and unmapped one by one, and a free heap top larger than twice
    that threshold is trimmed. A step's activations and gradients (a Zaremba-small LSTM's logits
    alone are 16 MB) are then mapped afresh every step: about 10,000 page faults and a fifth of the
    step's CPU time on this project's machine (``bench/peers.py``). Fixing the mmap threshold at its
    32 MB ceiling and the trim threshold at 1 GiB keeps those pages in the process, which holds its
    peak heap until it ends (what a trial's peak ``mem_peak_mb`` already counts). Once per process;
    a no-op where the C library is not glibc.

    Returns:
        Whether the thresholds were set.
    """
    libc = ctypes.CDLL(None)  # the symbols this process already has (find_library would run ldconfig)
    if not hasattr(libc, "gnu_get_libc_version"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too


def decay_groups(model: torch.nn.Module, weight_decay: float, matrices_only: bool) -> list[dict[str, Any]]:
    """Parameter groups for the optimizer.

    Args:
        model: the model (tied weights appear once).
        weight_decay: the coefficient.
        matrices_only: decay only tensors of 2 or more dimensions (matmul weights, embeddings),
            not biases and norm gains, as nanoGPT and GPT-2 do; otherwise decay every parameter.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not matrices_only:
        return [{"params": params, "weight_decay": weight_decay}]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def make_optimizer(name: str, groups: list[dict[str, Any]], *, lr: float, device: torch.device,
                   momentum: float = 0.0, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """The optimizer a config names; weight decay comes with the groups (``decay_groups``).

    Every one runs torch's fused kernel (CPU and CUDA): one pass over each parameter instead of a
    handful of elementwise ops per tensor, which on 2 CPU threads made AdamW about a fifth of a small
    GPT's step (``bench/peers.py``). Fused and unfused AdamW agree to float rounding.

    Args:
        name: adamw (decoupled decay, Loshchilov & Hutter), adam (decay as an L2 term added to the
            gradient), sgd, momentum (SGD with ``momentum``).
        groups: parameter groups, each with its weight_decay, and an ``lr_mult`` where its learning
            rate is a multiple of the others' (``set_lr``).
        lr: the initial learning rate (families set it per step or per epoch).
        device: the parameters' device.
        momentum: for ``momentum`` only.
        betas: Adam's coefficients.
    """
    fused = device.type in ("cpu", "cuda")
    if name == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)
    elif name == "adam":
        optimizer = torch.optim.Adam(groups, lr=lr, betas=betas, fused=fused)
    else:
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum if name == "momentum" else 0.0, fused=fused)
    set_lr(optimizer, lr)
    return optimizer


def clip_grad_norm(model: torch.nn.Module, max_norm: float) -> None:
    """Scale the gradients so that their global L2 norm is at most ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_`` does, with the same result bit for bit.

    On CUDA this is torch's function, which multiplies every gradient by min(1, max_norm / norm)
    without reading the norm back (no device sync). On the CPU the norm is already at hand, so the
    multiplication, a full pass over the gradients (4% of a Zaremba-small LSTM step), runs only when
    the norm is above the bound; below it the factor would be exactly 1.

    Args:
        model: its parameters' gradients are clipped.
        max_norm: the bound.
    """
    params = [p for p in model.parameters() if p.grad is not None]
    if not params or params[0].device.type != "cpu":
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        return
    norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    factor = max_norm / (norm + 1e-6)  # torch's, in the same float32 arithmetic, before its cap at 1
    if not factor.item() >= 1.0:  # NaN and inf norms scale too, as torch's do
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)


def hits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Which predictions are right: True where the target's logit is the largest of its row.

    ``logits.argmax(-1) == targets`` with the row's maximum (``amax``, a vectorised reduction)
    instead of its index: on the CPU argmax over a 10,000-word row is ten times slower and was 5% of
    a Zaremba-small LSTM step (``bench/peers.py``). The answers differ only where the maximum is
    tied, which counts as a hit here; argmax would take the lowest index.

    Args:
        logits: (..., V).
        targets: (...) class ids.
    """
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) >= logits.amax(-1)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate to ``lr`` times the group's ``lr_mult`` (1 where it has none;
    µP's hidden weights have one, ``gpt.model.width_groups``)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


def finite(loss: float) -> float:
    """NaN and inf losses as inf, so min-mode comparisons rank them last."""
    return loss if math.isfinite(loss) else math.inf


def ppl(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf  # NaN and overflow -> inf


def token_streams(ids: np.ndarray, fraction: float, batch_size: int, field: str, device: torch.device) -> torch.Tensor:
    """A leading fraction of a split's ids as ``batch_size`` contiguous streams (``rnn.data.batchify``),
    [T, B] int64 on the device, for the language models that read a split in order (the recurrent
    LM, the GPT by epochs).

    Args:
        ids: the split's token ids.
        fraction: the leading share of them to keep.
        batch_size: the number of streams B.
        field: the config field ``fraction`` came from, for the error.
        device: where the streams go.

    Raises:
        ConfigError: fewer than two rows (one input/target pair per stream).
    """
    part = ids[: int(len(ids) * fraction)]
    if len(part) // batch_size < 2:
        raise ConfigError(f"{field}={fraction} leaves {len(part)} tokens, too few for {batch_size} streams")
    return torch.from_numpy(batchify(part, batch_size).astype(np.int64)).to(device)


def param_norm(model: torch.nn.Module) -> float:
    """L2 norm of all parameters (tied weights once)."""
    with torch.no_grad():
        return torch.linalg.vector_norm(torch.stack([p.float().norm() for p in model.parameters()])).item()


def mem_peak_mb(device: torch.device) -> float:
    """Peak memory since the last ``reset_mem_peak``: on CUDA the caching allocator's peak of allocated
    memory; on CPU the process's peak resident set (Linux's VmHWM, which ``reset_mem_peak`` resets;
    ``getrusage``'s lifetime peak where there is no /proc)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MB
    try:
        status = _PROC_STATUS.read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kib) / 1024


def reset_mem_peak(device: torch.device) -> None:
    """Start ``mem_peak_mb``'s peak afresh from now: the CUDA allocator's peak statistics, or on CPU
    the kernel's high-water mark of the resident set, set back to the current resident set by
    writing 5 to /proc/self/clear_refs (Linux 4.0 and later; elsewhere the peak stays the process's).

    The skeleton resets it when a trial's first epoch ends, so that ``mem_peak_mb`` is seed report
    000's steady-state memory (its table 3): the first epoch's one-off peaks (the optimizer's state
    allocated at the first step, the first evaluation's buffers) are behind it.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        _PROC_CLEAR_REFS.write_text("5")


def no_eval() -> dict[str, float]:
    """The evaluation metrics of a report without an evaluation (out of memory): a search may rank by
    any of them, so each is there, at its worst."""
    inf = math.inf
    return {M.TRAIN_LOSS: inf, M.TRAIN_PPL: inf, M.VAL_LOSS: inf, M.VAL_PPL: inf, M.BEST_VAL_PPL: inf,
            M.TRAIN_ACC: 0.0, M.VAL_ACC: 0.0}


def rng_state(device: torch.device) -> dict[str, Any]:
    return {
        "python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
    }


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# --- the recipe a family fills in -----------------------------------------------------------------

@dataclasses.dataclass
class Progress:
    """A trial's cumulative counters; checkpointed, so resumes add up.

    Attributes:
        epoch: passes over the training data (fractional for families that sample windows).
        step: optimizer steps.
        tokens: training tokens (images for image families).
        wall_s: seconds of training and evaluation in this trial, across attempts.
    """

    epoch: float = 0
    step: int = 0
    tokens: int = 0
    wall_s: float = 0.0


@dataclasses.dataclass
class Interval:
    """What one interval of training measured.

    Attributes:
        loss: mean training loss per token over the interval (or over its last stretch, when the
            family stopped it early because that stretch diverged).
        acc: mean training accuracy.
        lr: the learning rate at the end of the interval.
        diverged: the family stopped the interval early, its loss above the ceiling or not finite.
    """

    loss: float
    acc: float
    lr: float
    diverged: bool = False


class Recipe(abc.ABC):
    """One trainable family, as ``run`` drives it.

    A subclass's constructor takes the parsed config and the data and does no heavy work; ``build``
    makes the model and the optimizer (inside ``run``'s out-of-memory guard) and must set
    ``model``, ``optimizer`` and ``device``.

    Attributes:
        cfg: the parsed config (has ``device`` and ``seed``).
        progress: the trial's counters.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        if self.device.type == "cpu":
            retain_freed_memory()
        self.progress = Progress()
        self.model: torch.nn.Module | None = None  # type: ignore[no-redef]
        self.optimizer: torch.optim.Optimizer | None = None  # type: ignore[no-redef]

    @classmethod
    def setup(cls, cfg: Any, *args: Any) -> Recipe:
        """A seeded, built trial, as ``run`` starts it (for tests and benchmarks that drive one step)."""
        trial = cls(cfg, *args)
        seed_everything(cfg.seed)
        trial.build()
        return trial

    # --- what a family must give ------------------------------------------------------------------
    @abc.abstractmethod
    def build(self) -> None:
        """Put the data on the device and make ``model`` and ``optimizer`` (seeded already)."""

    @abc.abstractmethod
    def intervals(self) -> Iterable[Any]:
        """The intervals still to train after ``progress`` (epochs, evaluation steps...), one report each."""

    @abc.abstractmethod
    def train_interval(self, interval: Any) -> Interval:
        """Train one interval, advancing ``progress``."""

    @abc.abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Validation metrics, ``val_loss`` among them (the divergence check reads it)."""

    @abc.abstractmethod
    def observe(self, train: Interval, val: Mapping[str, float], diverged: bool) -> dict[str, float]:
        """The interval's objective metrics (losses, perplexities or accuracies, best-so-far), updating
        the family's best-so-far state unless ``diverged``."""

    @abc.abstractmethod
    def is_last(self, interval: Any) -> bool:
        """Whether ``interval`` ends the trial's schedule."""

    @abc.abstractmethod
    def sizes(self) -> dict[str, float]:
        """Constant metrics: ``n_params``, ``n_params_nonembed``."""

    @property
    def flops_per_token(self) -> int:
        """Training FLOPs (forward + backward) per token (``trainables.flops``): the config's own
        ``flops_per_token`` (the GPT's and the arithmetic family's configs derive it); a family whose
        config does not overrides this."""
        return self.cfg.flops_per_token

    @property
    @abc.abstractmethod
    def ceiling(self) -> float:
        """A training or validation loss above this means diverged."""

    # --- what a family may add --------------------------------------------------------------------
    def final(self) -> dict[str, float]:
        """Metrics only the last report carries (``test_ppl``...)."""
        return {}

    def state(self) -> dict[str, Any]:
        """The family's own checkpoint state (best weights, data position...), beside the skeleton's."""
        return {}

    def load(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state()`` saved."""

    def autocast(self):
        # bf16 autocast on CUDA (matmuls in bf16, reductions such as the loss in fp32); fp32 on CPU.
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- counters and checkpoints -----------------------------------------------------------------
    def counters(self) -> dict[str, float]:
        p = self.progress
        return {
            M.EPOCH: p.epoch, M.STEP: p.step, M.TOKENS: p.tokens, M.FLOPS: self.flops_per_token * p.tokens,
            M.WALL_S: p.wall_s, **self.sizes(), M.DIVERGED: 0, M.OOM: 0, M.FINISHED: 0,
        }

    def checkpoint(self) -> dict[str, Any]:
        """Everything an exact resume needs: weights, optimizer, counters, RNG states, the family's state."""
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            **dataclasses.asdict(self.progress), "rng": rng_state(self.device), **self.state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Put a freshly built trial back where ``checkpoint()`` left it.

        The optimizer's state (moments, step counts) is the checkpoint's; its hyperparameters
        (momentum, weight decay, betas...) stay those of this trial's config, which a PBT member that
        copied another's checkpoint has perturbed (a plain resume has the same config, so nothing
        changes). The learning rate is set by the family's schedule before every step.
        """
        self.model.load_state_dict(state["model"])
        configured = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, hyper in zip(self.optimizer.param_groups, configured):
            group.update(hyper)
        self.progress = Progress(**{f.name: state[f.name] for f in dataclasses.fields(Progress)})
        set_rng_state(state["rng"], self.device)
        self.load(state)


# --- the loop -------------------------------------------------------------------------------------

def run(recipe: Recipe, report: Report, load_state: Callable[[], dict[str, Any] | None]) -> None:
    """Run one trial of ``recipe`` to its end, reporting every interval.

    Args:
        recipe: the family's recipe for this config and data.
        report: ``report(metrics, *, state=None)``, normally ``tunelab.report``.
        load_state: returns the checkpoint to resume from, or None.
    """
    seed_everything(recipe.cfg.seed)  # as ``Recipe.setup`` does
    try:
        recipe.build()
        state = load_state()
        if state is not None:
            recipe.restore(state)
        _loop(recipe, report)
        return
    except torch.OutOfMemoryError:
        pass  # reported below, outside the handler, once the traceback's frames are released
    _out_of_memory(recipe, report)


def _loop(recipe: Recipe, report: Report) -> None:
    progress = recipe.progress
    attempt_start, wall_before = time.perf_counter(), progress.wall_s
    # mem_peak_mb: the peak since the first epoch ended (the steady state), or, until it has, since this
    # attempt started (a resumed trial past its first epoch is in its steady state from the start).
    steady = progress.epoch >= 1
    reset_mem_peak(recipe.device)
    for interval in recipe.intervals():
        t0, tokens_before = time.perf_counter(), progress.tokens
        train = recipe.train_interval(interval)
        train_s = time.perf_counter() - t0
        val = {M.VAL_LOSS: math.inf} if train.diverged else recipe.evaluate()
        ceiling = recipe.ceiling
        diverged = not (train.loss <= ceiling and val[M.VAL_LOSS] <= ceiling)  # NaN compares False
        result = {
            **recipe.observe(train, val, diverged), M.LR: train.lr,
            M.TOKENS_PER_S: (progress.tokens - tokens_before) / max(train_s, 1e-9),
            M.MEM_PEAK_MB: mem_peak_mb(recipe.device), M.PARAM_NORM: param_norm(recipe.model),
        }
        if diverged:
            progress.wall_s = wall_before + time.perf_counter() - attempt_start
            report({**result, **recipe.counters(), M.DIVERGED: 1})
            return
        last = recipe.is_last(interval)
        if last:
            result.update(recipe.final())
        progress.wall_s = wall_before + time.perf_counter() - attempt_start
        report({**result, **recipe.counters(), M.FINISHED: int(last)}, state=recipe.checkpoint())
        if not steady and progress.epoch >= 1:
            steady = True
            reset_mem_peak(recipe.device)


def _out_of_memory(recipe: Recipe, report: Report) -> None:
    if recipe.optimizer is not None:
        recipe.optimizer.zero_grad(set_to_none=True)
    if recipe.device.type == "cuda":
        torch.cuda.empty_cache()
    report({
        **no_eval(), **recipe.counters(), M.LR: 0.0, M.TOKENS_PER_S: 0.0, M.MEM_PEAK_MB: mem_peak_mb(recipe.device),
        M.PARAM_NORM: param_norm(recipe.model) if recipe.model is not None else 0.0, M.OOM: 1,
    })
