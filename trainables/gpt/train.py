"""GPT pretraining under a FLOP budget: the Ray Tune function trainable ``train(config, data)``.

One trial, on the shared skeleton (``trainables._skeleton``): parse the flat config into ``GPTConfig``,
memory-map the token folder, build the model and optimizer, and train for exactly ``cfg.steps``
optimizer steps on random windows of the training split, the learning rate following seed 003's
cosine schedule with linear warm-up. After each step in ``eval_steps(cfg)`` it evaluates on a fixed
validation slice and reports once, with a checkpoint. ``Trial`` below is what this family fills into
the skeleton: its data, model, steps, evaluation and window generator.

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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tunelab.trainables import _skeleton
from tunelab.trainables import metrics as M
from tunelab.trainables._config import parse_config
from tunelab.trainables._errors import ConfigError, DataError
from tunelab.trainables._report import load_state, report
from tunelab.trainables._skeleton import Interval, clip_grad_norm, decay_groups, finite, hits, ppl, set_lr
from tunelab.trainables.gpt.config import GPTConfig, eval_steps, param_count, params_nonembed
from tunelab.trainables.gpt.model import GPT, hidden_weights, width_groups
from tunelab.trainables.gpt.schedule import lr_at
from tunelab.trainables.gpt.tokens import TokenData


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
    _skeleton.run(Trial(cfg, data), report, load_state)


class Trial(_skeleton.Recipe):
    """Everything one trial owns while it runs, and the family's part of the skeleton.

    Attributes:
        model: the module whose state_dict a checkpoint holds; ``forward`` is what runs (the same
            module, or its torch.compile wrapper).
        windows: draws the training windows; its state is the data position.
    """

    def __init__(self, cfg: GPTConfig, data: TokenData) -> None:
        super().__init__(cfg)
        if data.vocab_size > cfg.vocab_size:
            raise ConfigError(f"vocab_size={cfg.vocab_size} is smaller than the token folder's vocabulary ({data.vocab_size})")
        splits = {s: data.open(s) for s in data.splits}
        for name, ids in splits.items():
            if len(ids) <= cfg.context + 1:
                raise DataError(f"{data.path}: the {name} split has {len(ids)} tokens, too few for seq_len={cfg.context}")
        self.train_ids = splits["train"]
        self.eval_ids = {k: v for k, v in splits.items() if k != "train"}
        self.windows = np.random.default_rng(cfg.seed)
        self.best_val_ppl = math.inf

    def build(self) -> None:
        self.model = GPT(self.cfg).to(self.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers (outside autocast) on tensor cores
        self.forward = torch.compile(self.model) if self.cfg.compile else self.model
        self.optimizer = make_optimizer(self.cfg, self.model, self.device)

    @property
    def step(self) -> int:
        return self.progress.step

    # --- the family's part of the loop --------------------------------------------------------------
    def intervals(self) -> list[int]:
        return [s for s in eval_steps(self.cfg) if s > self.step]

    def train_interval(self, stop: int) -> Interval:
        cfg = self.cfg
        losses, accs = [], []
        while self.step < stop:
            # Update t (1-based) uses lr(t): seed 003's schedule with a = warm-up steps, b = all steps.
            lr = lr_at(self.step + 1, cfg.warmup, cfg.steps, cfg.peak_lr, cfg.min_lr)
            loss, acc = train_step(self, lr)
            losses.append(loss)
            accs.append(acc)
        return Interval(torch.stack(losses).mean().item(), torch.stack(accs).mean().item(), lr)  # syncs

    def evaluate(self) -> dict[str, float]:
        loss, acc = evaluate(self, "val")
        return {M.VAL_LOSS: loss, M.VAL_ACC: acc}

    def observe(self, train: Interval, val: Mapping[str, float], diverged: bool) -> dict[str, float]:
        if not diverged:
            self.best_val_ppl = min(self.best_val_ppl, ppl(val[M.VAL_LOSS]))
        self.last_val_ppl = ppl(val[M.VAL_LOSS])
        return {
            M.TRAIN_LOSS: finite(train.loss), M.TRAIN_PPL: ppl(train.loss), M.TRAIN_ACC: train.acc,
            M.VAL_LOSS: finite(val[M.VAL_LOSS]), M.VAL_PPL: self.last_val_ppl, M.VAL_ACC: val[M.VAL_ACC],
            M.BEST_VAL_PPL: self.best_val_ppl,
        }

    def is_last(self, stop: int) -> bool:
        return stop == self.cfg.steps

    def final(self) -> dict[str, float]:
        if "test" not in self.eval_ids:
            return {M.TEST_PPL: self.last_val_ppl}
        return {M.TEST_PPL: ppl(evaluate(self, "test")[0])}

    def sizes(self) -> dict[str, float]:
        return {M.PARAMS: param_count(self.cfg), M.PARAMS_NONEMBED: params_nonembed(self.cfg)}

    @property
    def ceiling(self) -> float:
        return self.cfg.loss_ceiling

    def state(self) -> dict[str, Any]:
        return {"best_val_ppl": self.best_val_ppl, "windows": self.windows.bit_generator.state}

    def load(self, state: Mapping[str, Any]) -> None:
        self.best_val_ppl = state["best_val_ppl"]
        self.windows.bit_generator.state = state["windows"]


setup = Trial.setup  # a seeded, built trial, for tests and benchmarks


def make_optimizer(cfg: GPTConfig, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names, weight decay on 2-D tensors (matmul weights, embeddings) only, as
    nanoGPT does, and µP's learning rates under ``parametrization: mup`` (``width_groups``); the
    learning rate is set per step."""
    groups = width_groups(decay_groups(model, cfg.weight_decay, matrices_only=True),
                          hidden_weights(model.transformer.h), cfg)
    return _skeleton.make_optimizer(cfg.optimizer, groups, lr=cfg.peak_lr, device=device, momentum=cfg.momentum,
                                    betas=(cfg.beta1, cfg.beta2))


def _batch(trial: Trial, ids: np.ndarray, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    # (B,) window starts -> inputs (B, T) and next-token targets (B, T), read from the memory map.
    chunk = torch.from_numpy(ids[starts[:, None] + np.arange(trial.cfg.context + 1)].astype(np.int64))
    if trial.device.type == "cuda":
        chunk = chunk.pin_memory().to(trial.device, non_blocking=True)
    return chunk[:, :-1], chunk[:, 1:]


def train_step(trial: Trial, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over grad_accum micro-batches of random training windows.

    Args:
        trial: the running trial (its step and token counters advance).
        lr: the learning rate of this step.

    Returns:
        The step's mean loss and token accuracy, as 0-d tensors on the device (no sync).
    """
    cfg, model = trial.cfg, trial.forward
    set_lr(trial.optimizer, lr)
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
        correct += hits(logits.detach(), y).float().mean()
    if cfg.clip:
        clip_grad_norm(trial.model, cfg.clip)
    trial.optimizer.step()
    trial.optimizer.zero_grad(set_to_none=True)
    trial.progress.step += 1
    trial.progress.tokens += cfg.tokens_per_step
    trial.progress.epoch = trial.progress.tokens / len(trial.train_ids)
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
        accs.append(hits(logits, y).float().mean())
    return torch.stack(losses).mean().item(), torch.stack(accs).mean().item()
