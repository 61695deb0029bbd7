"""Modular arithmetic with a GPT or an LSTM/GRU (seed report 002): the Ray Tune function trainable.

One trial, on the shared skeleton (``trainables._skeleton``): parse the flat config into ``ArithConfig``,
make the equations in memory (``data.make_data``), build the GPT family's ``GPT`` or the RNN family's
``RNNModel`` from configs derived from this one, and train ``cfg.steps`` optimizer steps at a constant
learning rate. Every ``eval_every`` steps (and at the last) it evaluates the whole training and
validation splits and reports once, with a checkpoint. ``Trial`` below is what this family fills in.

Decisions worth knowing:
- Reported ``train_loss``/``train_acc`` are measured on the whole training split at the evaluation
  (the model as it is at that step, in eval mode), as seed 002 plots them, not averaged over the
  interval's batches; the interval's batch average only feeds the divergence check.
- Loss and accuracy count the result token only (see ``data``); with several orders, each order's
  share of a split is reported too (``val_acc_o2``, ``val_acc_o3``, ...).
- The extremum metrics (seed 002) are tracked over the evaluations: t_f is the step of the smallest
  loss (its first step on a tie) and the first step of the largest accuracy; the last report carries
  them and Δt(L) = t_f(L_val) - t_f(L_train), Δt(A) = t_f(A_val) - t_f(A_train). They are part of the
  checkpoint, so a resumed trial ends with the same values.
- A step's batch is a function of the step (``data.batch_indices``): resuming needs no data position.
- A GPT's last checkpoint carries the attention weights on the first two training equations as a
  JSON artifact (``config.ATTENTION_ARTIFACT``), which the driver logs on the trial's MLflow run.
- The recurrent models read time-first ([S, B]) input, each equation from a zero state.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from tunelab.trainables import _skeleton
from tunelab.trainables import metrics as M
from tunelab.trainables._config import parse_config
from tunelab.trainables._report import ARTIFACTS, load_state, report
from tunelab.trainables._skeleton import Interval, decay_groups, finite, hits, ppl
from tunelab.trainables.arith.config import (
    ATTENTION_ARTIFACT, ArithConfig, eval_steps, model_config, param_count, params_nonembed, rnn_config,
)
from tunelab.trainables.arith.data import ArithData, Split, batch_indices, make_data
from tunelab.trainables.gpt.model import GPT
from tunelab.trainables.rnn.model import RNNModel

EVAL_BATCH = 4096  # equations per forward pass when evaluating a split
# The extrema seed 002 tracks: metric -> whether larger is better.
EXTREMA = {M.TRAIN_LOSS: False, M.VAL_LOSS: False, M.TRAIN_ACC: True, M.VAL_ACC: True}


def train(config: dict[str, Any], data: Any = None) -> None:
    """Ray Tune function trainable: one model learning modular arithmetic.

    Args:
        config: the trial's flat config (defaults + fixed + sampled); see ``ArithConfig``.
        data: unused (the equations are made from the config); the registry hands over None.

    Raises:
        ConfigError: before any training.
    """
    cfg = parse_config(ArithConfig, config)
    _skeleton.run(Trial(cfg), report, load_state)


class Trial(_skeleton.Recipe):
    """Everything one trial owns while it runs, and the family's part of the skeleton.

    Attributes:
        data: the equations, split (NumPy).
        extrema: metric -> (best value, t_f) over the evaluations so far.
        artifacts: files the last checkpoint carries ({name: text}), set by ``final``.
    """

    def __init__(self, cfg: ArithConfig, data: Any = None) -> None:
        super().__init__(cfg)
        self.data: ArithData = make_data(cfg)
        self.batch = min(cfg.batch_size, len(self.data.train))
        self.extrema: dict[str, tuple[float, int]] = {}
        self.artifacts: dict[str, str] = {}

    def build(self) -> None:
        cfg = self.cfg
        self.splits = {name: _on_device(getattr(self.data, name), self.device) for name in ("train", "val")}
        if cfg.model == "gpt":
            self.model = GPT(model_config(cfg)).to(self.device)
        else:
            self.model = RNNModel(rnn_config(cfg), cfg.vocab_size).to(self.device)
        groups = decay_groups(self.model, cfg.weight_decay, matrices_only=False)  # seed 002 decays every weight
        self.optimizer = _skeleton.make_optimizer(cfg.optimizer, groups, lr=cfg.lr, device=self.device,
                                                  momentum=cfg.momentum, betas=(cfg.beta1, cfg.beta2))

    @property
    def step(self) -> int:
        return self.progress.step

    # --- the model on a batch -----------------------------------------------------------------------
    def answer_logits(self, x: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        """Logits at each equation's "=" position, (B, V), from inputs x (B, S) and positions answer (B,)."""
        if self.cfg.model == "gpt":
            logits, _ = self.model(x)  # (B, S, V)
        else:
            logits, _ = self.model(x.t(), self.model.init_hidden(x.size(0)))  # time first: (S, B, V)
            logits = logits.transpose(0, 1)
        return logits[torch.arange(x.size(0), device=x.device), answer]

    # --- the family's part of the loop --------------------------------------------------------------
    def intervals(self) -> list[int]:
        return [s for s in eval_steps(self.cfg) if s > self.step]

    def train_interval(self, stop: int) -> Interval:
        cfg, train = self.cfg, self.splits["train"]
        n = len(self.data.train)
        self.model.train()
        losses, accs = [], []
        while self.step < stop:
            idx = torch.from_numpy(batch_indices(cfg.seed, n, cfg.batch_size, self.step)).to(self.device)
            x, answer, result = train["x"][idx], train["answer"][idx], train["result"][idx]
            with self.autocast():
                logits = self.answer_logits(x, answer)
                loss = F.cross_entropy(logits.float(), result)
            loss.backward()
            if cfg.clip:
                _skeleton.clip_grad_norm(self.model, cfg.clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
            accs.append(hits(logits.detach(), result).float().mean())
            self.progress.step += 1
            self.progress.tokens += self.batch * cfg.seq_len
            self.progress.epoch = self.progress.step * self.batch / n
        return Interval(torch.stack(losses).mean().item(), torch.stack(accs).mean().item(), cfg.lr)  # syncs

    def evaluate(self) -> dict[str, float]:
        """Loss and accuracy on the whole training and validation splits (and per order when mixed)."""
        out = {}
        for name in ("train", "val"):
            out.update(self.evaluate_split(name))
        return out

    @torch.no_grad()
    def evaluate_split(self, name: str) -> dict[str, float]:
        split = self.splits[name]
        self.model.eval()
        losses, right = [], []
        for i in range(0, len(split["x"]), EVAL_BATCH):
            with self.autocast():
                logits = self.answer_logits(split["x"][i:i + EVAL_BATCH], split["answer"][i:i + EVAL_BATCH])
            target = split["result"][i:i + EVAL_BATCH]
            losses.append(F.cross_entropy(logits.float(), target, reduction="none"))
            right.append(hits(logits, target).float())
        loss, hit = torch.cat(losses).double(), torch.cat(right).double()
        train = name == "train"
        means = {M.TRAIN_LOSS if train else M.VAL_LOSS: loss.mean(), M.TRAIN_ACC if train else M.VAL_ACC: hit.mean()}
        if len(self.cfg.orders) > 1:
            for order in self.cfg.orders:
                mine = split["order"] == order
                train_loss, val_loss, train_acc, val_acc = M.BY_ORDER[order]
                means[train_loss if train else val_loss] = loss[mine].mean()
                means[train_acc if train else val_acc] = hit[mine].mean()
        values = torch.stack(list(means.values())).tolist()  # one sync
        return dict(zip(means, values))

    def observe(self, train: Interval, val: Mapping[str, float], diverged: bool) -> dict[str, float]:
        out = {k: finite(v) if "loss" in k else v for k, v in val.items()}
        out.setdefault(M.TRAIN_LOSS, finite(train.loss))  # no evaluation after a diverged interval
        out.setdefault(M.TRAIN_ACC, train.acc)
        out.setdefault(M.VAL_ACC, 0.0)
        out[M.VAL_LOSS] = finite(val[M.VAL_LOSS])
        if not diverged:
            for key, larger in EXTREMA.items():
                old = self.extrema.get(key)
                value = out[key]
                if old is None or (value > old[0] if larger else value < old[0]):  # strict: the first step
                    self.extrema[key] = (value, self.step)
        best_val = self.extrema.get(M.VAL_LOSS, (math.inf, 0))[0]
        return {
            **out, M.TRAIN_PPL: ppl(out[M.TRAIN_LOSS]), M.VAL_PPL: ppl(out[M.VAL_LOSS]),
            M.BEST_VAL_PPL: ppl(best_val), M.COMPUTE: params_nonembed(self.cfg) * self.step * self.batch,
        }

    def is_last(self, stop: int) -> bool:
        return stop == self.cfg.steps

    def final(self) -> dict[str, float]:
        """Seed 002's extremum metrics; a GPT also leaves its attention maps with the last checkpoint."""
        t_f = {M.T_F[key]: float(step) for key, (_, step) in self.extrema.items()}
        out = {**t_f, M.LOSS_DELTA_T: t_f[M.VAL_LOSS_T_F] - t_f[M.TRAIN_LOSS_T_F],
               M.ACC_DELTA_T: t_f[M.VAL_ACC_T_F] - t_f[M.TRAIN_ACC_T_F]}
        if self.cfg.model == "gpt":
            self.artifacts = {ATTENTION_ARTIFACT: json.dumps(self.attention_maps())}
        return out

    @torch.no_grad()
    def attention_maps(self, samples: int = 2) -> dict[str, Any]:
        """The attention weights on the first ``samples`` training equations (seed 002, question 8).

        Returns:
            {"tokens": the input tokens of each sample, "weights": (samples, L, H, S, S) nested lists,
            rows attending to columns, "step": the optimizer step}.
        """
        split = self.data.train
        x = torch.from_numpy(split.x[:samples]).to(self.device)
        self.model.eval()
        _, _, att = self.model(x, return_attention=True)
        return {
            "tokens": [self.data.vocab.decode(row) for row in split.x[:samples]],
            "weights": [[[[[round(v, 5) for v in r] for r in head] for head in layer] for layer in sample]
                        for sample in att.float().cpu().tolist()],
            "step": self.step,
        }

    def sizes(self) -> dict[str, float]:
        return {M.PARAMS: param_count(self.cfg), M.PARAMS_NONEMBED: params_nonembed(self.cfg)}

    @property
    def ceiling(self) -> float:
        return self.cfg.diverge_loss

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"extrema": dict(self.extrema)}
        if self.artifacts:
            state[ARTIFACTS] = dict(self.artifacts)
        return state

    def load(self, state: Mapping[str, Any]) -> None:
        self.extrema = dict(state["extrema"])


setup = Trial.setup  # a seeded, built trial, for tests and benchmarks


def _on_device(split: Split, device: torch.device) -> dict[str, torch.Tensor]:
    arrays = {"x": split.x, "answer": split.answer, "result": split.result, "order": split.order}
    return {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
