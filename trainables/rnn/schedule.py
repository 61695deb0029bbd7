"""Per-epoch learning rate of the recurrent LM (torch-free).

The learning rate is fixed within an epoch and changes between epochs, as in Zaremba et al. (2014)
and pytorch/examples' word_language_model.
"""

from __future__ import annotations

import math

from tunelab.trainables.rnn.config import RNNConfig


def epoch_lr(cfg: RNNConfig, epoch: int, prev_lr: float | None = None, improved: bool = True) -> float:
    """The learning rate of 1-based ``epoch``.

    - constant: lr.
    - step: lr / lr_decay ** max(0, epoch - decay_start); Zaremba small (lr 1, lr_decay 2,
      decay_start 4) trains epochs 1-4 at 1, epoch 5 at 0.5, epoch 6 at 0.25, ...
    - plateau: the previous epoch's lr, divided by lr_decay when that epoch's val_ppl did not beat
      the best before it (word_language_model's rule, with our factor); decay_start is not used.
    - cosine: lr · (1 + cos(π (epoch - 1) / epochs)) / 2, from lr at epoch 1 towards 0; the last
      epoch still trains at a small positive rate.

    Args:
        cfg: the trial's config.
        epoch: the epoch about to run, 1-based.
        prev_lr: the learning rate of epoch - 1 (plateau only; None at epoch 1).
        improved: whether epoch - 1 improved the best val_ppl (plateau only).
    """
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "step":
        return cfg.lr / cfg.lr_decay ** max(0, epoch - cfg.decay_start)
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / cfg.epochs))
    if prev_lr is None:  # plateau, first epoch
        return cfg.lr
    return prev_lr if improved else prev_lr / cfg.lr_decay
