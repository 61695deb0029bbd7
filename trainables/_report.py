"""The only outward calls a trial makes: report metrics (with a checkpoint), and load the last checkpoint.

``report`` is public as ``tunelab.report``: the one reporting call of a lab's trainable too. Ray's
reporting API has changed three times; every trainable goes through these two functions so the
next change touches one file. Inside a Ray Tune trial they go to ``ray.tune``. Outside one (``tunelab
train``, a notebook, a GPU machine without Ray) ``report`` prints each report as a row of a table and
``load_state`` finds nothing, so a trainable runs the same code with or without Ray.

Torch-free at import: the instant trainables (synthetic, tabular benchmarks) report through here too,
and torch is imported only to save or load a checkpoint.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import warnings
from collections.abc import Mapping
from typing import Any

from tunelab.trainables import metrics as M

_STATE_FILE = "state.pt"
# A key of a checkpoint's state: {file name: text}. Those files go into the checkpoint folder's
# ``artifacts/`` beside the state (not into it); the driver logs them on the trial's MLflow run when
# the trial ends (``search._artifacts``). For what a trial leaves for the record, such as attention maps.
ARTIFACTS = "artifacts"
# The columns a printed report shows, in this order, when the report has them.
_COLUMNS = (
    M.EPOCH, M.STEP, M.TOKENS, M.FLOPS, M.TRAIN_LOSS, M.VAL_LOSS, M.TRAIN_PPL, M.VAL_PPL, M.TRAIN_ACC,
    M.VAL_ACC, M.TEST_PPL, M.TEST_ACC, M.LR, M.WALL_S, M.TOKENS_PER_S, M.DIVERGED, M.OOM, M.FINISHED,
)


def _tune():
    """``ray.tune`` when this process runs a Tune trial, else None.

    A Ray worker that runs a trial has imported ``ray.tune`` already, so a process that has not is
    outside any trial and never pays for importing Ray.
    """
    if "ray.tune" not in sys.modules:
        return None
    from ray import tune

    with warnings.catch_warnings():  # outside a trial Ray warns once that the context is empty
        warnings.simplefilter("ignore")
        inside = tune.get_context().get_trial_id() is not None
    return tune if inside else None


def report(metrics: dict[str, Any], *, state: dict[str, Any] | None = None) -> None:
    """Report one interval's metrics to Tune, with a checkpoint of ``state`` when given.

    Outside a Tune trial the metrics are printed as a table row (the header before the first row)
    and ``state`` is dropped. A trial that returns after its last report has completed; one that a
    scheduler stops is stopped early. The metrics may have any names: every number is logged in
    MLflow, and the search's ``metric`` must be one of them (``mode`` says which way is better).

    Args:
        metrics: flat metric dict: the built-in trainables use the names of
            ``tunelab.trainables.metrics``; a lab's trainable any names it likes.
        state: everything needed to resume exactly (model, optimizer, schedule, RNG, data position);
            saved with ``torch.save`` into a checkpoint directory that Tune takes over. Its
            ``ARTIFACTS`` entry, if any, is written as files into the directory's ``artifacts/``.
    """
    tune = _tune()
    if tune is None:
        _print_row(metrics)
        return
    if state is None:
        tune.report(metrics)
        return
    import torch

    state = dict(state)
    files = state.pop(ARTIFACTS, None) or {}
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, os.path.join(tmp, _STATE_FILE))
        if files:
            os.makedirs(os.path.join(tmp, ARTIFACTS))
            for name, text in files.items():
                with open(os.path.join(tmp, ARTIFACTS, name), "w", encoding="utf-8") as f:
                    f.write(text)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def load_state() -> dict[str, Any] | None:
    """The state saved by the trial's latest checkpoint, or None on a fresh start (or outside Tune)."""
    tune = _tune()
    checkpoint = None if tune is None else tune.get_checkpoint()
    if checkpoint is None:
        return None
    import torch

    with checkpoint.as_directory() as path:
        return torch.load(os.path.join(path, _STATE_FILE), weights_only=False)


# --- the printed table (outside Tune) -------------------------------------------------------------

class _Table:
    """Rows of reports under the header of the first; a column a later report adds (``test_ppl`` on
    the last) follows its row as ``name=value``."""

    def __init__(self) -> None:
        self.columns: tuple[str, ...] | None = None

    def row(self, metrics: Mapping[str, Any]) -> str:
        lines = []
        shown = [c for c in _COLUMNS if c in metrics] + [k for k in metrics if _own(k)]  # a lab's names too
        if self.columns is None:
            self.columns = tuple(shown)
            lines.append("  ".join(f"{c:>{_width(c)}}" for c in self.columns))
        cells = [f"{_cell(metrics.get(c, '')):>{_width(c)}}" for c in self.columns]
        cells += [f"{c}={_cell(metrics[c])}" for c in shown if c not in self.columns]
        lines.append("  ".join(cells))
        return "\n".join(lines)


def _own(key: str) -> bool:
    """A name outside tunelab's vocabulary: a lab's trainable's own metric, always shown."""
    return key not in M.ALL


def _width(column: str) -> int:
    return max(len(column), 9)


def _cell(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if not math.isfinite(value):
        return str(float(value))
    if value == int(value) and abs(value) < 1e7:
        return str(int(value))
    return f"{value:.4g}"


# One table per process: ``tunelab train`` runs one trial per process.
_TABLE = _Table()


def _print_row(metrics: Mapping[str, Any]) -> None:
    print(_TABLE.row(metrics), flush=True)
