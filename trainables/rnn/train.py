"""LSTM/GRU language modelling on Penn Treebank: the Ray Tune function trainable ``train(config, data)``.

One trial: parse the flat config into ``RNNConfig``, seed everything, cut the (shared, read-only)
token arrays into streams, build the model and optimizer, then for each epoch: train over the whole
train stream in bptt windows (truncated backpropagation through time, Zaremba et al. 2014), evaluate
on validation, and report once with a checkpoint, through ``trainables._report`` only. No module
state: everything a trial owns lives in its ``Trial``.

Decisions worth knowing:
- The hidden state starts at zero at every epoch (and every evaluation) and is carried from one bptt
  window to the next, detached, so a checkpoint at an epoch's end needs no data position beyond the
  epoch number, and a resumed trial ends with the same metrics as an uninterrupted one (tested
  through real Ray Tune in tests/trainables/test_rnn_train.py).
- The gradient is that of the cross-entropy summed over the window's time steps and averaged over
  the batch, as in Zaremba's code, so the paper's lr 1 and clip 5 mean what they meant there
  (word_language_model averages over time too, and needs lr 20 and clip 0.25 for the same steps).
  Reported losses are means per token.
- Divergence (a loss above ``diverge_loss``, or NaN/inf) is checked on the mean training loss of
  every 100 steps (one device sync each), and on the epoch's train and validation losses; a
  diverged trial reports once more, with ``diverged: 1`` and no checkpoint, and returns.
- ``test_ppl`` (last report only) is measured with the weights of the epoch with the best val_ppl.
- NaN and inf losses are reported as inf, so min-mode comparisons rank them last.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import random
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainables import metrics as M
from trainables._config import parse_config
from trainables._errors import ConfigError
from trainables._report import finite, load_state, mem_peak_mb, no_eval, param_norm, ppl, report
from trainables.flops import rnn_flops_per_token
from trainables.rnn.config import RNNConfig, param_count, params_nonembed
from trainables.rnn.data import PTBData, batchify, load_data
from trainables.rnn.model import RNNModel, detach
from trainables.rnn.schedule import epoch_lr

CHECK_EVERY = 100  # training steps between divergence checks (each costs a device sync)


@dataclasses.dataclass
class Trial:
    """Everything one trial owns while it runs.

    Attributes:
        train, valid, test: [T, B] id streams on the device (``batchify``).
        epoch, step, tokens: completed epochs, optimizer steps and training tokens so far.
        lr: the learning rate of the last completed epoch (None before the first).
        improved: whether the last completed epoch improved best_val_ppl (the plateau schedule).
        best_weights: a CPU copy of the weights of the epoch with the best val_ppl.
    """

    cfg: RNNConfig
    device: torch.device
    model: RNNModel
    optimizer: torch.optim.Optimizer
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    epoch: int = 0
    step: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    lr: float | None = None
    improved: bool = True
    best_val_ppl: float = math.inf
    best_weights: dict[str, torch.Tensor] | None = None

    def autocast(self):
        # bf16 autocast on CUDA (the recurrence and decoder in bf16, the loss in fp32); fp32 on CPU.
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


@dataclasses.dataclass
class EpochStats:
    """One epoch's training: mean loss and accuracy per token, steps and tokens, diverged or not."""

    loss: float
    acc: float
    steps: int
    tokens: int
    diverged: bool


def train(config: dict[str, Any], data: PTBData | None = None) -> None:
    """Ray Tune function trainable: one LSTM/GRU language model trained on Penn Treebank.

    Args:
        config: the trial's flat config (defaults + fixed + sampled); see ``RNNConfig``.
        data: the ``PTBData`` the driver made with ``data.load_data`` and handed over through
            ``tune.with_parameters``; None loads it here (standalone use).

    Raises:
        ConfigError, DataError: before any training.
    """
    cfg = parse_config(RNNConfig, config)
    if data is None:
        data = load_data({"corpus": "ptb", "dir": None})
    trial = setup(cfg, data)
    state = load_state()
    if state is not None:
        restore(trial, state)
    try:
        _run(trial)
    except torch.OutOfMemoryError:
        pass  # reported below, outside the handler, once the traceback's frames are released
    else:
        return
    trial.optimizer.zero_grad(set_to_none=True)
    if trial.device.type == "cuda":
        torch.cuda.empty_cache()
    report({**no_eval(), **_progress(trial), M.LR: trial.lr or trial.cfg.lr, M.TOKENS_PER_S: 0.0,
            M.MEM_PEAK_MB: mem_peak_mb(trial.device), M.PARAM_NORM: param_norm(trial.model), M.OOM: 1})


def setup(cfg: RNNConfig, data: PTBData) -> Trial:
    """Seed, cut the splits into streams on the device, build model and optimizer.

    Args:
        cfg: the trial's config.
        data: Penn Treebank ids (read-only; only slices are copied to the device).
    """
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but this trial sees no CUDA device")
    device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # seeds CUDA too
    streams = {
        "train": _streams(data.train, cfg.train_fraction, cfg.batch_size, "train_fraction", device),
        "valid": _streams(data.valid, cfg.eval_fraction, cfg.eval_batch_size, "eval_fraction", device),
        "test": _streams(data.test, cfg.eval_fraction, cfg.eval_batch_size, "eval_fraction", device),
    }
    model = RNNModel(cfg, data.vocab_size).to(device)
    return Trial(cfg=cfg, device=device, model=model, optimizer=make_optimizer(cfg, model), **streams)


def _streams(ids: np.ndarray, fraction: float, batch_size: int, field: str, device: torch.device) -> torch.Tensor:
    # A leading fraction of the split as [T, B] int64 streams; at least one input/target pair each.
    part = ids[: int(len(ids) * fraction)]
    if len(part) // batch_size < 2:
        raise ConfigError(f"{field}={fraction} leaves {len(part)} tokens, too few for {batch_size} streams")
    return torch.from_numpy(batchify(part, batch_size).astype(np.int64)).to(device)


def make_optimizer(cfg: RNNConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.optimizer``; the learning rate is set per epoch.

    Args:
        cfg: optimizer, lr, momentum and weight_decay are used.
        model: the model.
    """
    params = list(model.parameters())  # tied weights appear once
    if cfg.optimizer == "adamw":  # decoupled weight decay (Loshchilov & Hutter)
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":  # weight decay as an L2 term added to the gradient
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    momentum = cfg.momentum if cfg.optimizer == "momentum" else 0.0
    return torch.optim.SGD(params, lr=cfg.lr, momentum=momentum, weight_decay=cfg.weight_decay)


def run_epoch(trial: Trial, lr: float) -> EpochStats:
    """One pass over the train streams in bptt windows, carrying the hidden state across them.

    Stops early, marked diverged, when the mean loss of the last ``CHECK_EVERY`` steps is above
    ``diverge_loss`` or not finite. Advances ``trial.step`` and ``trial.tokens``.

    Args:
        trial: the running trial.
        lr: this epoch's learning rate.
    """
    cfg, model, data = trial.cfg, trial.model, trial.train
    for group in trial.optimizer.param_groups:
        group["lr"] = lr
    model.train()
    hidden = model.init_hidden(cfg.batch_size)
    # Sums on the device, so that a step needs no sync: total loss and hits, and the loss since the last check.
    loss_sum, correct, recent = (torch.zeros((), dtype=torch.float64, device=trial.device) for _ in range(3))
    steps = tokens = recent_tokens = 0
    for i in range(0, data.size(0) - 1, cfg.bptt):
        n = min(cfg.bptt, data.size(0) - 1 - i)
        x, y = data[i:i + n], data[i + 1:i + 1 + n]  # [n, B]: y is x shifted one step ahead
        hidden = detach(hidden)
        with trial.autocast():
            logits, hidden = model(x, hidden)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        (loss * n).backward()  # Zaremba: summed over time, averaged over the batch
        if cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        trial.optimizer.step()
        trial.optimizer.zero_grad(set_to_none=True)
        batch_loss = loss.detach().double() * y.numel()
        loss_sum += batch_loss
        recent += batch_loss
        correct += (logits.detach().argmax(-1) == y).sum()
        steps, tokens, recent_tokens = steps + 1, tokens + y.numel(), recent_tokens + y.numel()
        if steps % CHECK_EVERY == 0:
            recent_mean = recent.item() / recent_tokens
            if not recent_mean <= cfg.diverge_loss:  # NaN compares False
                trial.step, trial.tokens = trial.step + steps, trial.tokens + tokens
                return EpochStats(recent_mean, correct.item() / tokens, steps, tokens, diverged=True)
            recent.zero_()
            recent_tokens = 0
    trial.step, trial.tokens = trial.step + steps, trial.tokens + tokens
    return EpochStats(loss_sum.item() / tokens, correct.item() / tokens, steps, tokens, diverged=False)


@torch.no_grad()
def evaluate(trial: Trial, data: torch.Tensor, model: RNNModel | None = None) -> tuple[float, float]:
    """Mean loss (nats/token) and token accuracy over a whole [T, B] stream, from a zero state.

    Args:
        trial: the running trial.
        data: ``trial.valid`` or ``trial.test``.
        model: the model to evaluate (default: the trial's).
    """
    cfg, model = trial.cfg, model or trial.model
    model.eval()
    hidden = model.init_hidden(data.size(1))
    loss_sum = torch.zeros((), dtype=torch.float64, device=trial.device)
    correct = torch.zeros((), dtype=torch.int64, device=trial.device)
    for i in range(0, data.size(0) - 1, cfg.bptt):
        n = min(cfg.bptt, data.size(0) - 1 - i)
        x, y = data[i:i + n], data[i + 1:i + 1 + n]
        with trial.autocast():
            logits, hidden = model(x, hidden)
            loss_sum += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").double()
        correct += (logits.argmax(-1) == y).sum()
    tokens = (data.size(0) - 1) * data.size(1)
    return loss_sum.item() / tokens, correct.item() / tokens


def _run(trial: Trial) -> None:
    cfg = trial.cfg
    attempt_start, wall_before = time.perf_counter(), trial.wall_s
    for epoch in range(trial.epoch + 1, cfg.epochs + 1):
        lr = epoch_lr(cfg, epoch, trial.lr, trial.improved)
        if trial.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trial.device)
        t0 = time.perf_counter()
        stats = run_epoch(trial, lr)
        train_s = time.perf_counter() - t0
        val_loss, val_acc = (math.inf, 0.0) if stats.diverged else evaluate(trial, trial.valid)
        diverged = not (stats.loss <= cfg.diverge_loss and val_loss <= cfg.diverge_loss)  # NaN compares False
        val_ppl = ppl(val_loss)
        trial.epoch, trial.lr, trial.improved = epoch, lr, val_ppl < trial.best_val_ppl
        if trial.improved and not diverged:
            trial.best_val_ppl = val_ppl
            trial.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in trial.model.state_dict().items()}
        result = {
            M.TRAIN_LOSS: finite(stats.loss), M.TRAIN_PPL: ppl(stats.loss), M.TRAIN_ACC: stats.acc,
            M.VAL_LOSS: finite(val_loss), M.VAL_PPL: val_ppl, M.VAL_ACC: val_acc,
            M.BEST_VAL_PPL: trial.best_val_ppl, M.LR: lr,
            M.TOKENS_PER_S: stats.tokens / max(train_s, 1e-9),
            M.MEM_PEAK_MB: mem_peak_mb(trial.device), M.PARAM_NORM: param_norm(trial.model),
        }
        if diverged:
            trial.wall_s = wall_before + time.perf_counter() - attempt_start
            report({**result, **_progress(trial), M.DIVERGED: 1})
            return
        if epoch == cfg.epochs:
            result[M.TEST_PPL] = ppl(evaluate(trial, trial.test, _best_model(trial))[0])
        trial.wall_s = wall_before + time.perf_counter() - attempt_start
        report({**result, **_progress(trial), M.FINISHED: int(epoch == cfg.epochs)}, state=_state(trial))


def _best_model(trial: Trial) -> RNNModel:
    # A copy holding the best-val weights; the trial's model keeps its last weights (the checkpoint's).
    model = copy.deepcopy(trial.model)
    if trial.best_weights is not None:
        model.load_state_dict(trial.best_weights)
    model.rnn.flatten_parameters()  # cuDNN wants the copy's weights in one block again (no-op on CPU)
    return model


def _progress(trial: Trial) -> dict[str, Any]:
    cfg, vocab = trial.cfg, trial.model.decoder.out_features
    return {
        M.EPOCH: trial.epoch, M.STEP: trial.step, M.TOKENS: trial.tokens,
        M.FLOPS: rnn_flops_per_token(cfg, vocab) * trial.tokens, M.WALL_S: trial.wall_s,
        M.PARAMS: param_count(cfg, vocab), M.PARAMS_NONEMBED: params_nonembed(cfg, vocab),
        M.DIVERGED: 0, M.OOM: 0, M.FINISHED: 0,
    }



def _state(trial: Trial) -> dict[str, Any]:
    """Everything an exact resume needs: weights, optimizer, schedule, counters, best weights, RNGs."""
    return {
        "model": trial.model.state_dict(),
        "optimizer": trial.optimizer.state_dict(),
        "epoch": trial.epoch, "step": trial.step, "tokens": trial.tokens, "wall_s": trial.wall_s,
        "lr": trial.lr, "improved": trial.improved,
        "best_val_ppl": trial.best_val_ppl, "best_weights": trial.best_weights,
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
    for key in ("epoch", "step", "tokens", "wall_s", "lr", "improved", "best_val_ppl", "best_weights"):
        setattr(trial, key, state[key])
    rng = state["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] is not None and trial.device.type == "cuda":
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
