"""Search file -> running Ray Tune experiment: Tuner assembly, budgets, tracking, CLI.

``run``, ``resume``, ``sync`` and ``transfer`` are the callable core behind the ``tunelab`` commands of
those names; ``load_study`` opens a search's Optuna study from its folder. The names below are imported
on first use (PEP 562), so ``import tunelab.search`` (and ``tunelab inspect``, ``tunelab train``) does
not import Ray.
"""

import importlib

_EXPORTS = {
    "MissingObjective": "tunelab.search._ends", "run_search": "tunelab.search._api",
    "FlopBudgetStopper": "tunelab.search._budget",
    "MLflowTracker": "tunelab.search._children", "OptunaSearcher": "tunelab.search._searcher", "Outcome": "tunelab.search._summary",
    "SearchExistsError": "tunelab.search._run", "TrackingError": "tunelab._mlflow", "load_study": "tunelab.search._paths",
    "SearchFailed": "tunelab.search._errors", "SearchRunningError": "tunelab.search._errors",
    "resume": "tunelab.search._resume", "run": "tunelab.search._run", "sync": "tunelab.search._resume",
    "transfer": "tunelab.search._transfer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
