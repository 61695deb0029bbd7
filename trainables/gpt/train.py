"""GPT pretraining under a FLOP budget: the Ray Tune function trainable ``train(config, data)``.

One trial: parse the flat config into ``GPTConfig``, seed everything, memory-map the token folder,
build the model and optimizer, and train for exactly ``cfg.steps`` optimizer steps on random windows
of the training split, the learning rate following seed 003's cosine schedule with linear warm-up.
After each step in ``eval_steps(cfg)`` it evaluates on a fixed validation slice and reports once
(with a checkpoint), through ``trainables._report`` only. No module state: everything a trial owns
lives in its ``Trial``.

Decisions worth knowing:
- Training windows are drawn by a NumPy Generator seeded from ``cfg.seed``; its state is
  checkpointed, so a resumed trial sees the same windows as an uninterrupted one, and ends with the
  same metrics (tested through real Ray Tune in tests/trainables/test_gpt_train.py).
- ``flops`` = ``gpt_flops_per_token`` × tokens trained, cumulative, in every report. With
  ``eval_every_flops`` set, reports land at the first step past each multiple of it, so ASHA's
  ``time_attr: flops`` rungs compare trials of different shapes at (nearly) equal compute; with
  ``eval_interval`` they land every so many steps, i.e. at multiples of that trial's FLOPs per step.
- ``test_ppl`` (last report only) is computed with the final weights, on the token folder's test
  split when it has one (Penn Treebank) and on the validation slice otherwise. With a cosine decay to
  min_lr the final weights are the schedule's intended result, and keeping a second copy of the
  weights for "best" would double every checkpoint. (DESIGN.md asks for the best-val checkpoint;
  the RNN trainable does that.)
- Divergence is checked at each evaluation (the interval's mean training loss and the validation
  loss), not every step, to avoid a device sync per step.
- Losses that are NaN or inf are reported as inf, so that min-mode comparisons rank them last.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from typing import Any

import numpy as np
import torch

from trainables import metrics as M
from trainables._config import parse_config
from trainables._errors import ConfigError, DataError
from trainables._report import finite, load_state, mem_peak_mb, no_eval, param_norm, ppl, report
from trainables.gpt.config import GPTConfig, eval_steps, param_count, params_nonembed
from trainables.gpt.model import GPT
from trainables.gpt.schedule import lr_at
from trainables.gpt.tokens import TokenData



@dataclasses.dataclass
class Trial:
    """Everything one trial owns while it runs.

    Attributes:
        model: the module whose state_dict a checkpoint holds; ``forward`` is what runs (the same
            module, or its torch.compile wrapper).
        windows: draws the training windows; its state is the data position.
    """

    cfg: GPTConfig
    device: torch.device
    model: GPT
    forward: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_ids: np.ndarray
    eval_ids: dict[str, np.ndarray]
    windows: np.random.Generator
    step: int = 0
    wall_s: float = 0.0
    best_val_ppl: float = math.inf

    def autocast(self):
        # bf16 autocast on CUDA (matmuls in bf16, reductions such as the loss in fp32); fp32 on CPU.
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def train(config: dict[str, Any], data: TokenData | None = None) -> None:
    """Ray Tune function trainable: one GPT pretraining run under a FLOP budget.

    Args:
        config: the trial's flat config (defaults + fixed + sampled); see ``GPTConfig``.
        data: the ``TokenData`` the driver made with ``tokens.load_data`` and handed over through
            ``tune.with_parameters``.

    Raises:
        ConfigError, DataError: before any training.
    """
    cfg = parse_config(GPTConfig, config)
    if data is None:
        raise DataError("the gpt trainable needs its data: tune.with_parameters(train, data=tokens.load_data(...))")
    trial = None
    try:
        trial = setup(cfg, data)
        state = load_state()
        if state is not None:
            restore(trial, state)
        _run(trial)
        return
    except torch.OutOfMemoryError:
        pass  # reported below, outside the handler, once the traceback's frames are released
    if trial is not None:
        trial.optimizer.zero_grad(set_to_none=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    step, wall_s = (trial.step, trial.wall_s) if trial is not None else (0, 0.0)
    report({**no_eval(), **_counters(cfg, step, data.splits["train"], wall_s), M.OOM: 1})


def setup(cfg: GPTConfig, data: TokenData) -> Trial:
    """Seed, memory-map the token folder, build model and optimizer.

    Args:
        cfg: the trial's config.
        data: the token folder's description.
    """
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but this trial sees no CUDA device")
    device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    if data.vocab_size > cfg.vocab_size:
        raise ConfigError(f"vocab_size={cfg.vocab_size} is smaller than the token folder's vocabulary ({data.vocab_size})")
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # seeds CUDA too
    splits = {s: data.open(s) for s in data.splits}
    for name, ids in splits.items():
        if len(ids) <= cfg.context + 1:
            raise DataError(f"{data.path}: the {name} split has {len(ids)} tokens, too few for seq_len={cfg.context}")
    model = GPT(cfg).to(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers (outside autocast) on tensor cores
    forward = torch.compile(model) if cfg.compile else model
    return Trial(cfg=cfg, device=device, model=model, forward=forward, optimizer=make_optimizer(cfg, model, device),
                 train_ids=splits["train"], eval_ids={k: v for k, v in splits.items() if k != "train"},
                 windows=np.random.default_rng(cfg.seed))


def make_optimizer(cfg: GPTConfig, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer, with weight decay on 2-D tensors (matmul weights, embeddings) only, as nanoGPT does.

    Args:
        cfg: optimizer, weight_decay, beta1, beta2 and momentum are used; the learning rate is set per step.
        model: the model.
        device: fused AdamW on CUDA.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.peak_lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda")
    if cfg.optimizer == "adam":  # weight decay as an L2 term added to the gradient
        return torch.optim.Adam(groups, lr=cfg.peak_lr, betas=(cfg.beta1, cfg.beta2))
    momentum = cfg.momentum if cfg.optimizer == "momentum" else 0.0
    return torch.optim.SGD(groups, lr=cfg.peak_lr, momentum=momentum)


def _batch(trial: Trial, ids: np.ndarray, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    # (B,) window starts -> inputs (B, T) and next-token targets (B, T), read from the memory map.
    chunk = torch.from_numpy(ids[starts[:, None] + np.arange(trial.cfg.context + 1)].astype(np.int64))
    if trial.device.type == "cuda":
        chunk = chunk.pin_memory().to(trial.device, non_blocking=True)
    return chunk[:, :-1], chunk[:, 1:]


def train_step(trial: Trial, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over grad_accum micro-batches of random training windows.

    Args:
        trial: the running trial (its step counter advances by one).
        lr: the learning rate of this step.

    Returns:
        The step's mean loss and token accuracy, as 0-d tensors on the device (no sync).
    """
    cfg, model = trial.cfg, trial.forward
    for group in trial.optimizer.param_groups:
        group["lr"] = lr
    model.train()
    loss_sum = torch.zeros((), device=trial.device)
    correct = torch.zeros((), device=trial.device)
    for _ in range(cfg.grad_accum):
        starts = trial.windows.integers(0, len(trial.train_ids) - cfg.context - 1, size=cfg.batch_size)
        x, y = _batch(trial, trial.train_ids, starts)
        with trial.autocast():
            logits, loss = model(x, y)
        (loss / cfg.grad_accum).backward()
        loss_sum += loss.detach().float()
        correct += (logits.detach().argmax(-1) == y).float().mean()
    if cfg.clip:
        torch.nn.utils.clip_grad_norm_(trial.model.parameters(), cfg.clip)
    trial.optimizer.step()
    trial.optimizer.zero_grad(set_to_none=True)
    trial.step += 1
    return loss_sum / cfg.grad_accum, correct / cfg.grad_accum


@torch.no_grad()
def evaluate(trial: Trial, split: str = "val") -> tuple[float, float]:
    """Mean loss and token accuracy on a fixed slice of a split: eval_iters batches of windows.

    The windows start at evenly spaced positions, the same in every evaluation and every trial with
    the same seq_len, batch_size and eval_iters.

    Args:
        trial: the running trial.
        split: "val" or "test".
    """
    cfg = trial.cfg
    ids = trial.eval_ids[split]
    starts = np.linspace(0, len(ids) - cfg.context - 1, num=cfg.eval_iters * cfg.batch_size).astype(np.int64)
    trial.forward.eval()
    losses, accs = [], []
    for i in range(cfg.eval_iters):
        x, y = _batch(trial, ids, starts[i * cfg.batch_size:(i + 1) * cfg.batch_size])
        with trial.autocast():
            logits, loss = trial.forward(x, y)
        losses.append(loss.float())
        accs.append((logits.argmax(-1) == y).float().mean())
    return torch.stack(losses).mean().item(), torch.stack(accs).mean().item()


def _run(trial: Trial) -> None:
    cfg = trial.cfg
    steps, warmup, ceiling = cfg.steps, cfg.warmup, cfg.loss_ceiling
    test_split = "test" if "test" in trial.eval_ids else "val"
    attempt_start, wall_before = time.perf_counter(), trial.wall_s
    for stop in [s for s in eval_steps(cfg) if s > trial.step]:
        if trial.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trial.device)
        t0, first = time.perf_counter(), trial.step
        losses, accs = [], []
        while trial.step < stop:
            # Update t (1-based) uses lr(t): seed 003's schedule with a = warm-up steps, b = all steps.
            lr = lr_at(trial.step + 1, warmup, steps, cfg.peak_lr, cfg.min_lr)
            loss, acc = train_step(trial, lr)
            losses.append(loss)
            accs.append(acc)
        train_loss, train_acc = torch.stack(losses).mean().item(), torch.stack(accs).mean().item()  # syncs
        train_s = time.perf_counter() - t0
        val_loss, val_acc = evaluate(trial, "val")
        trial.wall_s = wall_before + time.perf_counter() - attempt_start
        diverged = not (train_loss <= ceiling and val_loss <= ceiling)  # NaN compares False
        if not diverged:
            trial.best_val_ppl = min(trial.best_val_ppl, ppl(val_loss))
        result = {
            M.TRAIN_LOSS: finite(train_loss), M.TRAIN_PPL: ppl(train_loss), M.TRAIN_ACC: train_acc,
            M.VAL_LOSS: finite(val_loss), M.VAL_PPL: ppl(val_loss), M.VAL_ACC: val_acc,
            M.BEST_VAL_PPL: trial.best_val_ppl, M.LR: lr,
            M.TOKENS_PER_S: (trial.step - first) * cfg.tokens_per_step / max(train_s, 1e-9),
            M.MEM_PEAK_MB: mem_peak_mb(trial.device), M.PARAM_NORM: param_norm(trial.model),
            **_counters(cfg, trial.step, len(trial.train_ids), trial.wall_s), M.DIVERGED: int(diverged),
        }
        if diverged:
            report(result)
            return
        if trial.step == steps:
            result[M.TEST_PPL] = ppl(evaluate(trial, test_split)[0]) if test_split != "val" else result[M.VAL_PPL]
            result[M.FINISHED] = 1
        report(result, state=_state(trial))


def _counters(cfg: GPTConfig, step: int, train_tokens: int, wall_s: float) -> dict[str, Any]:
    tokens = step * cfg.tokens_per_step
    return {
        M.STEP: step, M.TOKENS: tokens, M.EPOCH: tokens / train_tokens,
        M.FLOPS: cfg.flops_per_token * tokens, M.WALL_S: wall_s,
        M.PARAMS: param_count(cfg), M.PARAMS_NONEMBED: params_nonembed(cfg),
        M.DIVERGED: 0, M.OOM: 0, M.FINISHED: 0,
    }



def _state(trial: Trial) -> dict[str, Any]:
    """Everything an exact resume needs: weights, optimizer, position in the schedule and the data, RNGs."""
    return {
        "model": trial.model.state_dict(),
        "optimizer": trial.optimizer.state_dict(),
        "step": trial.step,
        "wall_s": trial.wall_s,
        "best_val_ppl": trial.best_val_ppl,
        "windows": trial.windows.bit_generator.state,
        "rng": {
            "python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if trial.device.type == "cuda" else None,
        },
    }


def restore(trial: Trial, state: dict[str, Any]) -> None:
    """Put a freshly set-up trial back where ``state`` (from ``_state``) left it.

    Args:
        trial: the result of ``setup`` with the same config.
        state: a checkpoint's state.
    """
    trial.model.load_state_dict(state["model"])
    trial.optimizer.load_state_dict(state["optimizer"])
    trial.step, trial.wall_s, trial.best_val_ppl = state["step"], state["wall_s"], state["best_val_ppl"]
    trial.windows.bit_generator.state = state["windows"]
    rng = state["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] is not None and trial.device.type == "cuda":
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
