"""What a running search shows on the console: a compact live view, and Ray's own output in a file.

``LiveConsole`` is a Tune callback that keeps a few numbers per trial on each result (cheap: the
view is drawn by rich's refresh thread, a few times a second, not per result). On a terminal it shows
one line per running trial (its name, sampled values, progress, current and best objective) above a
progress bar of the trials ended out of the budget, with the elapsed time and an estimate of what is
left; each trial that ends leaves one line (status, best value). Without a terminal (CI, a pipe) it
prints only those end lines, with the count and the elapsed time.

``ray_output`` sends everything Ray prints while the search runs (its configuration and result boxes,
trial status tables, the trials' "Checkpoint successfully created" lines) to ``ray.log`` in the
search's folder; ``tunelab run --verbose`` leaves it on the console, as Ray prints it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from ray.tune import Callback

from tunelab.search._ends import RAY_ENDED
from tunelab.trainables import metrics

RAY_LOG = "ray.log"
# Loggers whose records belong on the console, not in ray.log: ours (e.g. "MLflow does not answer").
_OWN_LOGGERS = ("tunelab",)
# Loggers that print progress of their own that ray.log keeps (Optuna: "A new study created").
_QUIET_LOGGERS = ("optuna", "mlflow", "ray")


class RayLog:
    """Where Ray's output goes while a search runs: kept in memory until the search's folder exists
    (``open``), then appended to ``ray.log`` there. If the search stops before that (bad input), what
    was kept is printed on the console after all.

    Writing it never raises: Ray writes here from inside its own error handling, where an exception
    (the disk is full) would replace the error being handled with a traceback of its own. A write
    that fails is dropped, and the first failure is kept in ``error``.
    """

    def __init__(self) -> None:
        self._kept: list[str] = []
        self._file: TextIO | None = None
        self.error: OSError | None = None

    def open(self, path: Path) -> None:
        """Append from now on to ``path`` (what was kept first)."""
        self._file = open(path, "a", buffering=1)
        self._file.write("".join(self._kept))
        self._kept.clear()

    def write(self, text: str) -> int:
        if self._file is None:
            self._kept.append(text)
        else:
            try:
                self._file.write(text)
            except OSError as exc:
                self.error = self.error or exc
        return len(text)

    def flush(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                self.error = self.error or exc

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:  # Ray's init hands sys.stderr to faulthandler
        if self._file is None:
            raise io.UnsupportedOperation("ray.log is not open yet")
        return self._file.fileno()

    def close(self, console: TextIO) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                self.error = self.error or exc
        elif self._kept:
            console.write("".join(self._kept))


@contextlib.contextmanager
def ray_output(verbose: bool, console: TextIO | None = None) -> Iterator[RayLog | None]:
    """Inside it, what Ray (and Optuna, MLflow) print goes to a ``RayLog`` (the search's ``ray.log``
    once it is opened), unless ``verbose``; the live view and our own warnings still reach
    ``console`` (the stdout in force when it is entered)."""
    out = console or sys.stdout
    if verbose:
        yield None
        return
    log = RayLog()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), _loggers_to(log, out):
            yield log
    finally:
        log.close(out)


@contextlib.contextmanager
def _loggers_to(log: TextIO, console: TextIO) -> Iterator[None]:
    """Handlers made before the redirect hold the console's stream: point them at ``log`` meanwhile,
    and give our own loggers a handler on the console."""
    moved = []
    for name in _QUIET_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler:  # not files, not others' capture handlers
                moved.append((handler, handler.stream))
                _set_stream(handler, log)
    own = logging.StreamHandler(console)
    own.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    for name in _OWN_LOGGERS:
        logging.getLogger(name).addHandler(own)
    try:
        yield
    finally:
        for name in _OWN_LOGGERS:
            logging.getLogger(name).removeHandler(own)
        for handler, stream in moved:
            _set_stream(handler, stream)


def _set_stream(handler: logging.StreamHandler, stream: TextIO) -> None:
    # setStream flushes the old stream first, which raises if a caller closed it (a file that an
    # earlier search's output was redirected to, as bench/search_efficiency.py does per search).
    if getattr(handler.stream, "closed", False):
        handler.stream = stream
    else:
        handler.setStream(stream)


class LiveConsole(Callback):
    """Tune callback: the live view of a search (see the module docstring).

    Args:
        metric, mode: the objective.
        sampled_keys: the sampled parameters (shown per running trial).
        trials: the budget's number of trials (the progress bar's total).
        time_attr, max_t: the scheduler's progress counter and its end (``epoch 2/4``).
        label: a trial's name (``t003``), as its MLflow run is named.
        header: a line printed first (what runs, where Ray's output goes).
        out: where to draw; None is the process's own stdout (``sys.__stdout__``: while the search runs,
            ``sys.stdout`` is Ray's log).
    """

    def __init__(self, metric: str, mode: str, sampled_keys: Sequence[str], trials: int, time_attr: str,
                 max_t: float | None, label: Callable[[Any], str], header: str = "", out: TextIO | None = None):
        self.metric, self.mode = metric, mode
        self.header = header
        self.sampled_keys = tuple(sampled_keys)
        self.trials, self.time_attr, self.max_t = trials, time_attr, max_t
        self.label = label
        self.out = out
        self._running: dict[str, _Row] = {}
        self._ended = 0
        self._best: float | None = None
        self._start = time.monotonic()
        self._console = None
        self._live = None
        self._counted = False  # the trials that ended before a resume are counted (``on_step_begin``)

    def __getstate__(self) -> dict:  # Ray pickles callbacks into the experiment folder
        return {**self.__dict__, "out": None, "_console": None, "_live": None, "_running": {}, "_counted": False,
                "_ended": 0, "_best": None}

    # --- Tune's hooks: bookkeeping only; rich draws on its own thread -------------------------

    def setup(self, **info) -> None:
        from rich.console import Console

        self._start = time.monotonic()
        self._console = Console(file=self.out or sys.__stdout__, highlight=False, soft_wrap=False)
        if self.header:
            self._console.print(self.header, markup=False, soft_wrap=True)
        if self._console.is_terminal:
            from rich.live import Live

            self._live = Live(_Running(self), console=self._console, refresh_per_second=2, transient=True,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()

    def on_step_begin(self, iteration, trials, **info) -> None:
        """At the first step, count the trials that ended before (a resumed search goes on from there)."""
        if self._counted:
            return
        self._counted = True
        for trial in trials:
            if trial.status in RAY_ENDED:
                self._ended += 1
                best = trial.metric_analysis.get(self.metric, {}).get(self.mode)
                if isinstance(best, (int, float)) and math.isfinite(best) and (
                        self._best is None or self._better(best, self._best)):
                    self._best = float(best)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        sampled = " ".join(f"{k}={_short(trial.config[k])}" for k in self.sampled_keys if k in trial.config)
        self._running[trial.trial_id] = _Row(self.label(trial), sampled)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        row = self._running.get(trial.trial_id)
        if row is None:
            return
        row.progress = result.get(self.time_attr)
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row.current = float(value)
            if math.isfinite(value) and (row.best is None or self._better(value, row.best)):
                row.best = float(value)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._ended_line(trial, metrics.final_status(trial.last_result))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._ended_line(trial, metrics.ERROR, error_message(trial))

    def on_experiment_end(self, trials, **info) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # --- drawing ---------------------------------------------------------------------------

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    def _ended_line(self, trial, status: str, error: str | None = None) -> None:
        row = self._running.pop(trial.trial_id, None) or _Row(self.label(trial), "")
        self._ended += 1
        new_best = row.best is not None and (self._best is None or self._better(row.best, self._best))
        if new_best:
            self._best = row.best
        best = "" if row.best is None else f"{self.metric} {row.best:<8.4g}{' best so far' if new_best else ''}"
        where = "" if row.progress is None else f"{self.time_attr} {_short(row.progress)}"
        count = f"[{self._ended}/{self.trials} {_clock(time.monotonic() - self._start)}]"
        line = "  ".join((f"{count:<11}", row.name, f"{status:<13}", f"{where:<9}", f"{best:<30}", row.sampled)).rstrip()
        if error:
            line += f"\n{'':<11}  {row.name}  raised {error}"
        if self._console is None:  # no setup(): Tune restored the callback mid-search
            self.setup()
        self._console.print(line, markup=False, soft_wrap=True)


def error_message(trial) -> str | None:
    """The last line of the traceback Ray kept for a trial that raised ("ValueError: ...")."""
    path = getattr(trial, "error_file", None)
    try:
        with open(path) as f:
            lines = [line.strip() for line in f.read().splitlines() if line.strip()]
    except (OSError, TypeError):
        return None
    return lines[-1][:300] if lines else None


class _Row:
    """What the view keeps of a running trial."""

    __slots__ = ("name", "sampled", "progress", "current", "best")

    def __init__(self, name: str, sampled: str):
        self.name, self.sampled = name, sampled
        self.progress: float | None = None
        self.current: float | None = None
        self.best: float | None = None


class _Running:
    """The running trials as a rich table over a progress bar, built when rich refreshes (not on every
    result)."""

    def __init__(self, view: LiveConsole):
        self.view = view

    def __rich__(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        v = self.view
        elapsed = time.monotonic() - v._start
        # What is left: the mean time per ended trial so far, times the trials still to end.
        left = _clock(elapsed / v._ended * (v.trials - v._ended)) if v._ended else "?"
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=v.trials, completed=v._ended, width=30),
                    f"{v._ended}/{v.trials} trials ended  {_clock(elapsed)} elapsed  ~{left} left")
        return Group(self._table(), bar)

    def _table(self):
        from rich.table import Table

        v = self.view
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for col in ("trial", v.time_attr, v.metric, "best", "sampled"):
            table.add_column(col, justify="right" if col in (v.metric, "best") else "left", no_wrap=True)
        for row in list(v._running.values()):
            progress = "" if row.progress is None else _short(row.progress)
            if progress and v.max_t:
                progress += f"/{_short(v.max_t)}"
            table.add_row(row.name, progress, _value(row.current), _value(row.best), row.sampled)
        return table


def _value(v: float | None) -> str:
    return "" if v is None else f"{v:.4g}"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e7 else f"{v:.3g}"
    return str(v)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"

