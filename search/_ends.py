"""How a trial ended, known on the driver, and a search stopped at once when its trials do not
report its objective.

Ray gives a trial that returned and one that a scheduler or a stopper ended the same last result
(``done=True``). They differ in one place: Ray hands a stopped trial's last result to the callbacks
with ``done`` already set, while a returned trial's ``done`` is added afterwards, to a result the
callbacks have seen without it. ``EndMarker``, the first callback, marks the first kind
(``metrics.STOPPED``), so that the status every part of the driver derives from the last result
(``metrics.final_status``) tells "stopped early" from "completed" without the trainable's help.
"""

from __future__ import annotations

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS, DEBUG_METRICS
from ray.tune.stopper import Stopper

from tunelab.trainables import metrics

# What Ray adds to every result (counters, host, time, config) and its flags: not the trainable's.
RAY_KEYS = frozenset({*AUTO_RESULT_KEYS, *DEBUG_METRICS, "done", "experiment_tag", "should_checkpoint",
                      "__duplicate__", metrics.STOPPED})


def reported_keys(result: dict) -> list[str]:
    """The names a trainable put in a result (Ray's own keys left out)."""
    return sorted(k for k in result if k not in RAY_KEYS)


class EndMarker(Callback):
    """Marks the result at which Ray stopped a trial (``metrics.STOPPED``), unless the trial had
    reached the scheduler's ``max_t``: the scheduler's whole budget, so a completed trial.

    Args:
        time_attr: the scheduler's progress attribute.
        max_t: its maximum (None: a scheduler without one).
    """

    def __init__(self, time_attr: str, max_t: float | None):
        self.time_attr, self.max_t = time_attr, max_t

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if not result.get("done"):
            return
        progress = result.get(self.time_attr)
        reached = self.max_t is not None and isinstance(progress, (int, float)) and progress >= self.max_t
        if not reached:
            result[metrics.STOPPED] = 1


class MissingObjective(RuntimeError):
    """A trial's first report lacks the search's objective (or the scheduler's progress attribute)."""


class ObjectiveCheck(Stopper):
    """Stops the whole search at the first report that lacks what the search needs from it.

    Ray would raise deep in its loop (a long traceback, runs left open); this ends the search
    cleanly and keeps one line for the user: the missing name and the names that were reported.

    Args:
        metric: the search's objective.
        time_attr: the scheduler's progress attribute, when it needs one (None for FIFO).
    """

    def __init__(self, metric: str, time_attr: str | None):
        self.metric, self.time_attr = metric, time_attr
        self.problem: str | None = None

    def __call__(self, trial_id: str, result: dict) -> bool:
        if self.problem is None:
            self.problem = self._lacking(result)
        return self.problem is not None

    def _lacking(self, result: dict) -> str | None:
        """What ``result`` lacks, in a line; None when it has what the search needs (or is Ray's
        result of a trial that returned without ever reporting)."""
        needed = ((self.metric, "the search's metric"), (self.time_attr, "scheduler.time_attr"))
        for name, what in needed:
            value = result.get(name) if name else None
            if name is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
                continue
            keys = reported_keys(result)  # only on this path: every result comes through here
            if not keys:
                return None
            got = "no" if name not in result else f"a non-numeric {value!r} as"
            return f"the trainable reported {got} {name!r} ({what}); it reported: {', '.join(keys)}"
        return None

    def stop_all(self) -> bool:
        return self.problem is not None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "problem": None}
