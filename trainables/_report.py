"""The only outward calls a trial makes: report metrics, save and load checkpoints.

Ray's reporting API has changed three times; every trainable goes through these two functions so the
next change touches one file.
"""

from __future__ import annotations

import math
import os
import resource
import tempfile
from typing import Any

import torch
from ray import tune

from trainables import metrics as M

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


# --- what every language-model trainable's reports share ------------------------------------------

MB = 2**20


def no_eval() -> dict[str, float]:
    """The evaluation metrics of a report without an evaluation (out of memory): a search may rank by any
    of them, so each is there, at its worst."""
    inf = math.inf
    return {M.TRAIN_LOSS: inf, M.TRAIN_PPL: inf, M.VAL_LOSS: inf, M.VAL_PPL: inf, M.BEST_VAL_PPL: inf,
            M.TRAIN_ACC: 0.0, M.VAL_ACC: 0.0}


def finite(loss: float) -> float:
    return loss if math.isfinite(loss) else math.inf


def ppl(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf  # NaN and overflow -> inf


def param_norm(model: torch.nn.Module) -> float:
    with torch.no_grad():
        return torch.linalg.vector_norm(torch.stack([p.float().norm() for p in model.parameters()])).item()


def mem_peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB; the process's peak RSS
