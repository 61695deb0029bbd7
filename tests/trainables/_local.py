"""A trial run in this process through the skeleton, its reports kept in a list instead of sent to Ray."""

from __future__ import annotations

import copy
from typing import Any

from tunelab.trainables import _skeleton


def run_trial(trial: _skeleton.Recipe, state: dict[str, Any] | None = None) -> list[tuple[dict[str, Any], Any]]:
    """Run ``trial`` to its end with ``_skeleton.run``, as a family's ``train`` does, handing it a
    ``report`` that records and a ``load_state`` that returns ``state``.

    Args:
        trial: a family's recipe for a parsed config and its data, not built yet.
        state: the checkpoint to resume from; None starts afresh.

    Returns:
        The reports as (metrics, a deep copy of the checkpoint state or None) pairs.
    """
    reports: list[tuple[dict[str, Any], Any]] = []

    def report(metrics: dict[str, Any], *, state: dict[str, Any] | None = None) -> None:
        reports.append((metrics, copy.deepcopy(state)))

    _skeleton.run(trial, report, lambda: state)
    return reports
