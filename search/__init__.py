"""Search file -> running Ray Tune experiment: Tuner assembly, budgets, tracking, CLI.

``run`` and ``resume`` are the callable core behind ``tunelab run`` and ``tunelab resume``.
"""

from search._budget import FlopBudgetStopper
from search._run import Outcome, SearchExistsError, resume, run
from search._searcher import InfeasibleSpaceError, OptunaSearcher
from search._tracking import MLflowTracker, TrackingError

__all__ = [
    "FlopBudgetStopper", "InfeasibleSpaceError", "MLflowTracker", "OptunaSearcher", "Outcome",
    "SearchExistsError", "TrackingError", "resume", "run",
]
