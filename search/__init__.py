"""Search file -> running Ray Tune experiment: Tuner assembly, budgets, tracking, CLI.

``run``, ``resume`` and ``sync`` are the callable core behind ``tunelab run``, ``resume`` and ``sync``;
``load_study`` opens a search's Optuna study from its folder. The names below are imported on first
use (PEP 562), so ``import search`` (and ``tunelab inspect``, ``tunelab train``) does not import Ray.
"""

import importlib

_EXPORTS = {
    "FlopBudgetStopper": "search._budget", "InfeasibleSpaceError": "search._searcher",
    "MLflowTracker": "search._tracking", "OptunaSearcher": "search._searcher", "Outcome": "search._summary",
    "SearchExistsError": "search._run", "TrackingError": "search._tracking", "load_study": "search._paths",
    "resume": "search._resume", "run": "search._run", "sync": "search._resume",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
