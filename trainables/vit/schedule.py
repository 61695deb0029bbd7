"""Per-step learning rate of the ViT (torch-free): linear warm-up, then constant, cosine or step.

    warm-up: lr · t / a for update t < a = round(warmup_epochs · steps_per_epoch)
    constant: lr
    cosine: seed 003's cosine from lr (at t = a) to min_lr (at the last update), ``gpt.schedule.lr_at``
    step: lr / lr_decay ** floor((epoch - 1) / decay_every), epochs 1-based (StepLR)

Updates are counted from 1, as in the GPT: update t uses lr(t), the last one min_lr under cosine.
"""

from __future__ import annotations

import math

from tunelab.trainables.gpt.schedule import lr_at
from tunelab.trainables.vit.config import ViTConfig


def step_lr(cfg: ViTConfig, t: int, steps_per_epoch: int) -> float:
    """The learning rate of update ``t`` (1-based) of a trial with ``steps_per_epoch`` updates an epoch.

    Args:
        cfg: the trial's config.
        t: the update about to be made, 1-based.
        steps_per_epoch: optimizer steps in one epoch.
    """
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    total = cfg.epochs * steps_per_epoch
    if cfg.lr_schedule == "cosine":
        return lr_at(t, warmup, total, cfg.lr, cfg.min_lr)
    if t < warmup:
        return cfg.lr * t / warmup
    if cfg.lr_schedule == "step":
        epoch = math.ceil(t / steps_per_epoch)
        return cfg.lr / cfg.lr_decay ** ((epoch - 1) // cfg.decay_every)
    return cfg.lr
