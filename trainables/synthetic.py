"""A trainable with no model: a known learning curve, for load tests and overhead benchmarks.

``val_loss`` at epoch e is ``floor + (x - 0.3)^2 + (y + 0.2)^2 + 1 / e``: its optimum is known, a trial
takes microseconds (``sleep_s`` per epoch makes it longer), and ``fail_at_epoch`` makes the trial
raise, for the failure paths. What a search measures with it is the search machinery itself: Ray,
the sampler, the scheduler, the MLflow callback. ``checkpoint: true`` saves a checkpoint with every
report and resumes from the latest one (the node-loss tests); off by default, so a trial needs no torch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from tunelab.trainables import metrics
from tunelab.trainables._config import config_dataclass, parse_config
from tunelab.trainables._report import load_state, report

CONSTRAINTS: tuple[str, ...] = ()
METRICS = (metrics.EPOCH, metrics.TRAIN_LOSS, metrics.VAL_LOSS, metrics.TRAIN_PPL, metrics.VAL_PPL, metrics.WALL_S,
           metrics.DIVERGED, metrics.OOM, metrics.FINISHED)


@config_dataclass
class SyntheticConfig:
    """Attributes:
        x, y: the two searched coordinates.
        floor: the best reachable loss.
        epochs: reports per trial.
        sleep_s: seconds each epoch waits (0: as fast as Ray reports).
        fail_at_epoch: raise at this epoch (0: never).
        checkpoint: checkpoint every epoch (through ``trainables._report``) and resume from the latest.
        seed: unused by the curve; kept so seed studies look as they do with real trainables.
    """

    x: float = 0.0
    y: float = 0.0
    floor: float = 1.0
    epochs: int = 4
    sleep_s: float = 0.0
    fail_at_epoch: int = 0
    checkpoint: bool = False
    seed: int = 0


def check(cfg: SyntheticConfig, constraints: Mapping[str, Any]) -> str | None:
    if cfg.epochs < 1:
        return f"epochs={cfg.epochs} must be at least 1"
    return None


def flops_per_token(cfg: SyntheticConfig) -> int:
    return 0


def load_data(data: Mapping[str, Any]) -> None:
    return None


def val_loss(cfg: SyntheticConfig, epoch: int) -> float:
    return cfg.floor + (cfg.x - 0.3) ** 2 + (cfg.y + 0.2) ** 2 + 1.0 / epoch


def train(config: dict[str, Any], data: Any = None) -> None:
    """The Ray Tune function trainable: one report per epoch, a checkpoint with each if asked."""
    cfg = parse_config(SyntheticConfig, config)
    state = load_state() if cfg.checkpoint else None  # a checkpoint needs torch; a plain trial never loads it
    first = state["epoch"] + 1 if state else 1
    wall_before = state["wall_s"] if state else 0.0  # resumes add up
    start = time.perf_counter()
    for epoch in range(first, cfg.epochs + 1):
        if cfg.sleep_s:
            time.sleep(cfg.sleep_s)
        if epoch == cfg.fail_at_epoch:
            raise RuntimeError(f"synthetic failure at epoch {epoch}")
        loss = val_loss(cfg, epoch)
        wall = wall_before + time.perf_counter() - start
        values = {
            metrics.EPOCH: epoch, metrics.TRAIN_LOSS: loss - 0.1, metrics.VAL_LOSS: loss,
            metrics.TRAIN_PPL: math.exp(loss - 0.1), metrics.VAL_PPL: math.exp(loss),
            metrics.WALL_S: wall, metrics.DIVERGED: 0, metrics.OOM: 0,
            metrics.FINISHED: int(epoch == cfg.epochs),
        }
        report(values, state={"epoch": epoch, "wall_s": wall} if cfg.checkpoint else None)
