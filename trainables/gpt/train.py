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
- By epochs (``epochs`` set, ``data: {corpus: ptb}``: Penn Treebank's words through the recurrent
  LM's reader), the training split is read in order as the LSTM reads it: ``batch_size`` contiguous
  streams, consecutive windows of seq_len tokens, one pass per epoch; the data position is the step
  count, so a resume mid-epoch goes on from the next window. Validation and test are then evaluated
  whole, in the same windows (a fresh context at each window's start; the LSTM carries its state
  across windows instead), so that val_ppl and test_ppl are per-token perplexities over the same
  tokens as the LSTM's.
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
from tunelab.trainables._skeleton import Interval, clip_grad_norm, decay_groups, finite, hits, ppl, set_lr, token_streams
from tunelab.trainables.gpt.config import GPTConfig, epoch_steps, eval_steps, param_count, params_nonembed, steps_from_budget
from tunelab.trainables.gpt.model import GPT, hidden_weights, width_groups
from tunelab.trainables.gpt.schedule import lr_at
from tunelab.trainables.gpt.tokens import TokenData
from tunelab.trainables.rnn.data import PTBData


def train(config: dict[str, Any], data: TokenData | PTBData | None = None) -> None:
    """Ray Tune function trainable: one GPT pretraining run under a FLOP budget.

    Args:
        config: the trial's flat config (defaults + fixed + sampled); see ``GPTConfig``.
        data: the ``TokenData`` (or, for ``corpus: ptb``, the ``PTBData``) the driver made with
            ``tokens.load_data`` and handed over through ``tune.with_parameters``.

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
        windows: draws the training windows (runs counted in steps or FLOPs); its state is the data
            position.
        total_steps: optimizer steps of the whole trial.
        per_epoch: optimizer steps per epoch, by epochs (else None).
        streams: by epochs, split -> its [T, B] streams on the device, once built.
    """

    def __init__(self, cfg: GPTConfig, data: TokenData | PTBData) -> None:
        super().__init__(cfg)
        if data.vocab_size > cfg.vocab_size:
            raise ConfigError(f"vocab_size={cfg.vocab_size} is smaller than the data's vocabulary ({data.vocab_size})")
        splits = {s: data.open(s) for s in data.splits}
        for name, ids in splits.items():
            if len(ids) <= cfg.context + 1:
                raise DataError(f"{data.path}: the {name} split has {len(ids)} tokens, too few for seq_len={cfg.context}")
        self.splits = splits
        self.train_ids = splits["train"][: int(len(splits["train"]) * cfg.train_fraction)]
        if len(self.train_ids) <= cfg.context + 1:
            raise ConfigError(f"train_fraction={cfg.train_fraction} leaves {len(self.train_ids)} tokens, "
                              f"too few for seq_len={cfg.context}")
        self.eval_ids = {k: v for k, v in splits.items() if k != "train"}
        self.per_epoch = epoch_steps(cfg, len(splits["train"])) if cfg.epochs is not None else None
        if self.per_epoch == 0:
            raise ConfigError(f"train_fraction={cfg.train_fraction} leaves {len(self.train_ids)} tokens: "
                              f"{cfg.batch_size} streams hold no window of seq_len={cfg.context} (x grad_accum={cfg.grad_accum})")
        self.total_steps = steps_from_budget(cfg, len(splits["train"]))
        self.points = eval_steps(cfg, len(splits["train"]))
        self.windows = np.random.default_rng(cfg.seed)
        self.best_val_ppl = math.inf
        self.streams: dict[str, torch.Tensor] = {}

    def build(self) -> None:
        if self.per_epoch is not None:
            cfg = self.cfg
            self.streams = {"train": token_streams(self.train_ids, 1.0, cfg.batch_size, "train_fraction", self.device),
                            **{k: token_streams(v, 1.0, cfg.batch_size, "batch_size", self.device)
                               for k, v in self.eval_ids.items()}}
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
        return [s for s in self.points if s > self.step]

    def train_interval(self, stop: int) -> Interval:
        cfg = self.cfg
        losses, accs = [], []
        warmup = cfg.warmup_of(self.total_steps)
        while self.step < stop:
            # Update t (1-based) uses lr(t): seed 003's schedule with a = warm-up steps, b = all steps.
            lr = lr_at(self.step + 1, warmup, self.total_steps, cfg.peak_lr, cfg.min_lr)
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
        return stop == self.total_steps

    def train_batch(self, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets (B, T) of micro-batch ``micro`` of the next optimizer step: random windows
        of the training split, or by epochs the streams' next window (the data position is the step)."""
        cfg = self.cfg
        if self.per_epoch is None:
            starts = self.windows.integers(0, len(self.train_ids) - cfg.context - 1, size=cfg.batch_size)
            return _batch(self, self.train_ids, starts)
        row = ((self.step % self.per_epoch) * cfg.grad_accum + micro) * cfg.context
        chunk = self.streams["train"][row:row + cfg.context + 1].t()  # (B, T + 1)
        return chunk[:, :-1], chunk[:, 1:]

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
    for micro in range(cfg.grad_accum):
        x, y = trial.train_batch(micro)
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
    if trial.per_epoch is None:
        trial.progress.epoch = trial.progress.tokens / len(trial.train_ids)
    else:
        trial.progress.epoch = trial.step / trial.per_epoch
    return loss_sum / cfg.grad_accum, correct / cfg.grad_accum


@torch.no_grad()
def evaluate(trial: Trial, split: str = "val") -> tuple[float, float]:
    """Mean loss and token accuracy on a fixed slice of a split: eval_iters batches of windows.

    The windows start at evenly spaced positions, the same in every evaluation and every trial with
    the same seq_len, batch_size and eval_iters. By epochs, the whole split instead
    (``evaluate_streams``).

    Args:
        trial: the running trial.
        split: "val" or "test".
    """
    cfg = trial.cfg
    if trial.per_epoch is not None:
        return evaluate_streams(trial, trial.streams[split])
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


@torch.no_grad()
def evaluate_streams(trial: Trial, data: torch.Tensor) -> tuple[float, float]:
    """Mean loss (nats/token) and token accuracy over a whole [T, B] stream, in consecutive windows of
    seq_len tokens (the last one shorter), every token but each stream's first predicted once.

    Args:
        trial: the running trial.
        data: ``trial.streams["val"]`` or ``["test"]``.
    """
    context = trial.cfg.context
    trial.forward.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=trial.device)
    correct = torch.zeros((), dtype=torch.int64, device=trial.device)
    for i in range(0, data.size(0) - 1, context):
        n = min(context, data.size(0) - 1 - i)
        x, y = data[i:i + n].t(), data[i + 1:i + 1 + n].t()  # (B, n)
        with trial.autocast():
            logits, loss = trial.forward(x, y)
        loss_sum += loss.double() * y.numel()
        correct += hits(logits, y).sum()
    tokens = (data.size(0) - 1) * data.size(1)
    return loss_sum.item() / tokens, correct.item() / tokens
