"""Per-epoch learning rates of every lr_schedule."""

from __future__ import annotations

import math

import pytest

from tunelab.trainables.rnn.config import RNNConfig
from tunelab.trainables.rnn.schedule import epoch_lr


def test_step_is_zaremba_small():
    cfg = RNNConfig()  # lr 1, halved every epoch after the 4th
    assert [epoch_lr(cfg, e) for e in range(1, 14)] == [1, 1, 1, 1] + [0.5**k for k in range(1, 10)]


def test_step_with_other_factor_and_start():
    cfg = RNNConfig(lr=4.0, lr_decay=1.15, decay_start=15, epochs=25)
    assert epoch_lr(cfg, 15) == 4.0
    assert epoch_lr(cfg, 25) == pytest.approx(4.0 / 1.15**10)
    assert epoch_lr(RNNConfig(lr=2.0, decay_start=0), 1) == 1.0  # decay_start 0: decays from the start


def test_constant():
    cfg = RNNConfig(lr=0.001, lr_schedule="constant")
    assert {epoch_lr(cfg, e) for e in range(1, 14)} == {0.001}


def test_cosine_from_lr_towards_zero():
    cfg = RNNConfig(lr=2.0, lr_schedule="cosine", epochs=4)
    lrs = [epoch_lr(cfg, e) for e in range(1, 5)]
    assert lrs == pytest.approx([2.0, 1.0 + math.cos(math.pi / 4), 1.0, 1.0 - math.cos(math.pi / 4)])
    assert lrs[-1] > 0


def test_plateau_divides_only_after_no_improvement():
    cfg = RNNConfig(lr=8.0, lr_schedule="plateau", lr_decay=4.0)
    assert epoch_lr(cfg, 1) == 8.0
    assert epoch_lr(cfg, 2, prev_lr=8.0, improved=True) == 8.0
    assert epoch_lr(cfg, 3, prev_lr=8.0, improved=False) == 2.0
    assert epoch_lr(cfg, 4, prev_lr=2.0, improved=False) == 0.5
