"""LSTM/GRU language modelling on Penn Treebank: the Ray Tune function trainable ``train(config, data)``.

One trial, on the shared skeleton (``trainables._skeleton``): parse the flat config into ``RNNConfig``,
cut the (shared, read-only) token arrays into streams, build the model and optimizer, then for each
epoch train over the whole train stream in bptt windows (truncated backpropagation through time,
Zaremba et al. 2014), evaluate on validation and report once with a checkpoint. ``Trial`` below is what
this family fills into the skeleton: its data, model, epoch, evaluation and best-weights state.

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
  every 100 steps (one device sync each), which stops the epoch early, and by the skeleton on the
  epoch's train and validation losses.
- ``test_ppl`` (last report only) is measured with the weights of the epoch with the best val_ppl.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from tunelab.trainables import _skeleton
from tunelab.trainables import metrics as M
from tunelab.trainables._config import parse_config
from tunelab.trainables._report import load_state, report
from tunelab.trainables._skeleton import Interval, clip_grad_norm, decay_groups, finite, hits, ppl, set_lr, token_streams
from tunelab.trainables.flops import rnn_flops_per_token
from tunelab.trainables.rnn.config import RNNConfig, param_count, params_nonembed
from tunelab.trainables.rnn.data import PTBData, load_data
from tunelab.trainables.rnn.model import RNNModel, detach
from tunelab.trainables.rnn.schedule import epoch_lr

CHECK_EVERY = 100  # training steps between divergence checks (each costs a device sync)


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
    _skeleton.run(Trial(cfg, data), report, load_state)


class Trial(_skeleton.Recipe):
    """Everything one trial owns while it runs, and the family's part of the skeleton.

    Attributes:
        train, valid, test: [T, B] id streams on the device (``batchify``), once built.
        lr: the learning rate of the last completed epoch (None before the first).
        improved: whether the last completed epoch improved best_val_ppl (the plateau schedule).
        best_weights: a CPU copy of the weights of the epoch with the best val_ppl.
    """

    def __init__(self, cfg: RNNConfig, data: PTBData) -> None:
        super().__init__(cfg)
        self.data = data
        self.vocab_size = data.vocab_size
        self.lr: float | None = None
        self.improved = True
        self.best_val_ppl = math.inf
        self.best_weights: dict[str, torch.Tensor] | None = None

    def build(self) -> None:
        cfg, data, device = self.cfg, self.data, self.device
        self.train = token_streams(data.train, cfg.train_fraction, cfg.batch_size, "train_fraction", device)
        self.valid = token_streams(data.valid, cfg.eval_fraction, cfg.eval_batch_size, "eval_fraction", device)
        self.test = token_streams(data.test, cfg.eval_fraction, cfg.eval_batch_size, "eval_fraction", device)
        self.model = RNNModel(cfg, data.vocab_size).to(device)
        self.optimizer = make_optimizer(cfg, self.model, device)

    @property
    def epoch(self) -> int:
        return int(self.progress.epoch)

    # --- the family's part of the loop --------------------------------------------------------------
    def intervals(self) -> range:
        return range(self.epoch + 1, self.cfg.epochs + 1)

    def train_interval(self, epoch: int) -> Interval:
        lr = epoch_lr(self.cfg, epoch, self.lr, self.improved)
        stats = run_epoch(self, lr)
        self.progress.epoch, self.lr = epoch, lr
        return stats

    def evaluate(self) -> dict[str, float]:
        loss, acc = evaluate(self, self.valid)
        return {M.VAL_LOSS: loss, M.VAL_ACC: acc}

    def observe(self, train: Interval, val: Mapping[str, float], diverged: bool) -> dict[str, float]:
        val_ppl = ppl(val[M.VAL_LOSS])
        self.improved = val_ppl < self.best_val_ppl
        if self.improved and not diverged:
            self.best_val_ppl = val_ppl
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        return {
            M.TRAIN_LOSS: finite(train.loss), M.TRAIN_PPL: ppl(train.loss), M.TRAIN_ACC: train.acc,
            M.VAL_LOSS: finite(val[M.VAL_LOSS]), M.VAL_PPL: val_ppl, M.VAL_ACC: val.get(M.VAL_ACC, 0.0),
            M.BEST_VAL_PPL: self.best_val_ppl,
        }

    def is_last(self, epoch: int) -> bool:
        return epoch == self.cfg.epochs

    def final(self) -> dict[str, float]:
        return {M.TEST_PPL: ppl(evaluate(self, self.test, _best_model(self))[0])}

    def sizes(self) -> dict[str, float]:
        return {M.PARAMS: param_count(self.cfg, self.vocab_size), M.PARAMS_NONEMBED: params_nonembed(self.cfg, self.vocab_size)}

    @property
    def flops_per_token(self) -> int:
        return rnn_flops_per_token(self.cfg, self.vocab_size)

    @property
    def ceiling(self) -> float:
        return self.cfg.diverge_loss

    def state(self) -> dict[str, Any]:
        return {"lr": self.lr, "base_lr": self.cfg.lr, "improved": self.improved, "best_val_ppl": self.best_val_ppl,
                "best_weights": self.best_weights}

    def load(self, state: Mapping[str, Any]) -> None:
        self.lr, self.improved = state["lr"], state["improved"]
        self.best_val_ppl, self.best_weights = state["best_val_ppl"], state["best_weights"]
        # The plateau schedule goes on from the last epoch's rate; a PBT member that copied this
        # checkpoint under another ``lr`` keeps the decay so far, at its own scale (the other schedules
        # are functions of the config and the epoch, and follow a new lr by themselves).
        base = state.get("base_lr", self.cfg.lr)
        if self.lr is not None and base != self.cfg.lr:
            self.lr = self.lr * self.cfg.lr / base


setup = Trial.setup  # a seeded, built trial, for tests and benchmarks


def make_optimizer(cfg: RNNConfig, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names, weight decay on every parameter (the learning rate is set per epoch)."""
    return _skeleton.make_optimizer(cfg.optimizer, decay_groups(model, cfg.weight_decay, matrices_only=False),
                                    lr=cfg.lr, device=device, momentum=cfg.momentum)


def run_epoch(trial: Trial, lr: float) -> Interval:
    """One pass over the train streams in bptt windows, carrying the hidden state across them.

    Stops early, marked diverged, when the mean loss of the last ``CHECK_EVERY`` steps is above
    ``diverge_loss`` or not finite. Advances the trial's step and token counters.

    Args:
        trial: the running trial.
        lr: this epoch's learning rate.
    """
    cfg, model, data, progress = trial.cfg, trial.model, trial.train, trial.progress
    set_lr(trial.optimizer, lr)
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
            clip_grad_norm(model, cfg.clip)
        trial.optimizer.step()
        trial.optimizer.zero_grad(set_to_none=True)
        batch_loss = loss.detach().double() * y.numel()
        loss_sum += batch_loss
        recent += batch_loss
        correct += hits(logits.detach(), y).sum()
        steps, tokens, recent_tokens = steps + 1, tokens + y.numel(), recent_tokens + y.numel()
        if steps % CHECK_EVERY == 0:
            recent_mean = recent.item() / recent_tokens
            if not recent_mean <= cfg.diverge_loss:  # NaN compares False
                progress.step, progress.tokens = progress.step + steps, progress.tokens + tokens
                return Interval(recent_mean, correct.item() / tokens, lr, diverged=True)
            recent.zero_()
            recent_tokens = 0
    progress.step, progress.tokens = progress.step + steps, progress.tokens + tokens
    return Interval(loss_sum.item() / tokens, correct.item() / tokens, lr)


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
        correct += hits(logits, y).sum()
    tokens = (data.size(0) - 1) * data.size(1)
    return loss_sum.item() / tokens, correct.item() / tokens


def _best_model(trial: Trial) -> RNNModel:
    # A copy holding the best-val weights; the trial's model keeps its last weights (the checkpoint's).
    model = copy.deepcopy(trial.model)
    if trial.best_weights is not None:
        model.load_state_dict(trial.best_weights)
    model.rnn.flatten_parameters()  # cuDNN wants the copy's weights in one block again (no-op on CPU)
    return model
