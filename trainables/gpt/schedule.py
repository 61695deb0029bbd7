"""Cosine learning-rate schedule with linear warm-up, as in seed report 003 (question 1.2).

    lr(t) = max_lr · t / a                                          for t < a
    lr(t) = min_lr + (cos(π (t − a) / (b − a)) + 1) · (max_lr − min_lr) / 2    for a ≤ t ≤ b

with a the warm-up steps and b all steps. The trainable counts optimizer updates from 1: update t uses
lr(t), so the first update is not wasted at lr 0 and the last one (t = b) uses min_lr.
"""

from __future__ import annotations

import math


def lr_at(t: float, warmup: int, total: int, max_lr: float, min_lr: float) -> float:
    """The learning rate at step t.

    Args:
        t: the step (update t of ``total``; 0 gives 0 when there is a warm-up).
        warmup: a, the warm-up steps (0: none).
        total: b, the step at which the cosine reaches min_lr; later steps stay at min_lr.
        max_lr: the peak, reached at t = a.
        min_lr: the floor, reached at t = b.
    """
    if t < warmup:
        return max_lr * t / warmup
    if total <= warmup:  # all warm-up: no cosine part
        return max_lr
    theta = math.pi * (min(t, total) - warmup) / (total - warmup)
    return min_lr + (math.cos(theta) + 1.0) * (max_lr - min_lr) / 2.0
