"""The only outward calls a trial makes: report metrics, save and load checkpoints.

Ray's reporting API has changed three times; every trainable goes through these two functions so the
next change touches one file.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch
from ray import tune

_STATE_FILE = "state.pt"


def report(metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
    """Report one interval's metrics to Tune, with a checkpoint of ``state`` when given.

    Args:
        metrics: flat metric dict (names from ``trainables.metrics``).
        state: everything needed to resume exactly (model, optimizer, schedule, RNG, data position);
            saved with ``torch.save`` into a checkpoint directory that Tune takes over.
    """
    if state is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, os.path.join(tmp, _STATE_FILE))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def load_state() -> dict[str, Any] | None:
    """The state saved by the trial's latest checkpoint, or None on a fresh start."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as path:
        return torch.load(os.path.join(path, _STATE_FILE), weights_only=False)
