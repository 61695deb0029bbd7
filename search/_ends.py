"""How a trial ended, known on the driver, and a search stopped at once when its trials do not
report its objective.

Ray gives a trial that returned and one that a scheduler or a stopper ended the same last result
(``done=True``). They differ in one place: Ray hands a stopped trial's last result to the callbacks
with ``done`` already set, while a returned trial's ``done`` is added afterwards, to a result the
callbacks have seen without it. ``EndMarker``, the first callback, marks the first kind
(``metrics.STOPPED``), so that the status every part of the driver derives from the last result
(``metrics.final_status``) tells "stopped early" from "completed" without the trainable's help.

A search can also end before its budget: Ctrl-C, SIGTERM, or a fault of the machine (a full disk).
``Interruption`` turns each into the end Ray Tune gives a Ctrl-C, the experiment's state saved and
the running trials left resumable, and remembers why, so that the search's records say INTERRUPTED
and the exit status says which.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS, DEBUG_METRICS
from ray.tune.stopper import Stopper

from tunelab import _private
from tunelab.search._errors import SearchFailed
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


class MissingObjective(SearchFailed):
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


# The statuses of a Ray trial that has ended (the others, PENDING, RUNNING, PAUSED, will run on).
RAY_ENDED = ("TERMINATED", "ERROR")
# errno values that say the results' disk (or the user's quota on it) is full.
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_FULL_TEXT = re.compile(r"\[Errno (%s)\]|No space left on device|Disk quota exceeded|File too large"
                        % "|".join(str(e) for e in sorted(_FULL)))


def disk_full(error: BaseException | str | None) -> bool:
    """Whether an exception (or the text of a traceback Ray kept) is a write that found the disk full."""
    if isinstance(error, OSError) and error.errno in _FULL:
        return True
    if isinstance(error, BaseException):
        return any(disk_full(e) for e in (error.__cause__, error.__context__) if e is not None) or \
            bool(_FULL_TEXT.search(str(error)))
    return bool(error and _FULL_TEXT.search(error))


class Interruption:
    """Why a search ended before its budget, and the means to end it so.

    While ``catching()`` is in force, SIGINT and SIGTERM no longer raise: the first one is recorded
    (``signal``) and handed to Ray Tune at its next step, which ends the search as it does on Ctrl-C
    (the experiment's state saved, the running trials stopped and left resumable); a second one
    raises ``KeyboardInterrupt`` at once. ``fault()`` does the same for a fault of the machine that
    a callback sees (a trial's write found the disk full), recorded as ``fault``.
    """

    # Room kept on the results' disk while a search runs (``RESERVE_FILE``), given back when a write
    # finds the disk full: Ray's last save of the experiment, which makes it resumable, and the
    # closing of its records then find the room they need.
    RESERVE_BYTES = 8 << 20

    def __init__(self, reserve: Path | None = None) -> None:
        self.reserve = reserve
        self.signal: str | None = None  # "SIGINT", "SIGTERM"
        self.fault: str | None = None  # one line: what went wrong
        self.handed_to_ray = False
        self.aborted = False  # the fit was left by an exception (a second signal, a failed write)
        self.closing = False  # the fit is over and the records are being closed: signals are ignored

    @property
    def reason(self) -> str | None:
        return self.fault or self.signal

    @property
    def cut(self) -> bool:
        """Whether the search was ended before its budget (not only asked to: a signal that came as
        the last trial ended left a search that ran its budget)."""
        return self.reason is not None and (self.handed_to_ray or self.aborted)

    def fault_seen(self, line: str) -> None:
        if self.reason is None:
            self.fault = line
        self.give_back_room()

    def keep_room(self) -> None:
        """Set ``RESERVE_BYTES`` aside on the results' disk (at most a quarter of the room it has)."""
        if self.reserve is None:
            return
        try:
            disk = os.statvfs(self.reserve.parent)
            size = min(self.RESERVE_BYTES, disk.f_bavail * disk.f_frsize // 4)
            fd = os.open(self.reserve, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
        except OSError:  # a full disk already, or a file system without fallocate: the fault ends the search
            pass

    def give_back_room(self) -> None:
        if self.reserve is not None:
            with contextlib.suppress(OSError):
                self.reserve.unlink()

    @contextlib.contextmanager
    def catching(self) -> Iterator[Interruption]:
        """Handle SIGINT and SIGTERM as above (in the main thread; elsewhere Python gives no handler)."""
        global _ACTIVE
        if threading.current_thread() is not threading.main_thread():
            _ACTIVE = self
            try:
                yield self
            finally:
                _ACTIVE = None
            return
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in saved:
            signal.signal(sig, self._on_signal)
        _ACTIVE = self
        watch = _SaveWatch()
        logging.getLogger("ray.tune").addHandler(watch)
        self.keep_room()
        try:
            yield self
        finally:
            self.give_back_room()
            logging.getLogger("ray.tune").removeHandler(watch)
            _ACTIVE = None
            for sig, handler in saved.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame) -> None:
        if self.closing:
            return
        if self.reason is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: do not wait for the trials to stop
        self.signal = signal.Signals(signum).name

    def hand_to_ray(self) -> None:
        """End the search at Ray Tune's next step, as its Ctrl-C does (Ray listens for SIGUSR1 too while
        its loop runs): called from inside that loop, where Ray's handler is the one in force."""
        if _private.ray_graceful_stop():
            self.handed_to_ray = True


_ACTIVE: Interruption | None = None


class _SaveWatch(logging.Handler):
    """Sees Ray's driver fail to save the experiment for want of room (Ray logs it and goes on): a fault."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        now = _ACTIVE
        if now is not None and error is not None and disk_full(error):
            now.fault_seen(f"the disk is full: Ray could not save the search's state ({error_line(error)})")


def error_line(error: BaseException | None) -> str | None:
    """What was raised, in one line: the last line of the traceback Ray carries ("ValueError: ...")."""
    if error is None:
        return None
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


class InterruptWatch(Callback):
    """Tune callback: hands a recorded interruption to Ray at its next step, and records a trial whose
    write found the disk full as a fault (the search stops: every trial would fail the same way; it
    is resumable once there is room). Stateless: after ``tunelab resume``, Tune restores it from the
    experiment folder and it serves the ``Interruption`` in force then."""

    def on_step_begin(self, iteration, trials, **info) -> None:
        now = _ACTIVE
        if now is not None and now.reason is not None and not now.handed_to_ray:
            now.hand_to_ray()

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._check(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._check(trial)

    @staticmethod
    def _check(trial) -> None:
        now = _ACTIVE
        if now is None:
            return
        text = _read(getattr(trial, "error_file", None))
        if disk_full(text):
            lines = [line.strip() for line in text.splitlines() if _FULL_TEXT.search(line)]
            now.fault_seen(f"the disk is full: {lines[-1][:200] if lines else 'a trial could not write'}")


def _read(path) -> str:
    try:
        with open(path) as f:
            return f.read()
    except (OSError, TypeError):
        return ""
