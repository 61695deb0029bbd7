"""MLflow layout of a search (README: "What a search records"), written by the driver only.

One parent run per search; one child run per Ray trial, found again by its trial id after
``tunelab resume`` (Ray's ``MLflowLoggerCallback`` keeps that map in memory only, so a resumed search
would get a second run per trial). Every report is one ``log_batch`` call, not one request per key.

A tracking server that goes away does not stop the search: the trials it could not record are noted,
and once it answers again each is replayed from what Ray wrote (the trial's ``result.json``), from
the first step MLflow lacks. ``tunelab sync`` does the same after the search has ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import os
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlflow.entities import Metric, Param, RunTag  # noqa: F401 (re-used by _run)
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException
from ray.tune import Callback

from tunelab.search import _ends
from tunelab.search._artifacts import log_checkpoint_artifacts
from tunelab.trainables import metrics
from tunelab.trainables import tags

log = logging.getLogger(__name__)

TRIAL_ID_TAG, STATUS_TAG, ERROR_TAG, TRAINABLE_TAG = tags.TRIAL_ID, tags.STATUS, tags.ERROR, tags.TRAINABLE
PARENT_TAG, RUN_NAME_TAG = tags.PARENT, tags.RUN_NAME
# Seconds between attempts to reach a tracking server that stopped answering.
RETRY_S = 15.0
# The URI schemes of MLflow's own tracking stores (a plugin may add others, which client_for accepts).
USABLE_SCHEMES = ("sqlite:///PATH", "postgresql://", "mysql://", "mssql://", "http(s)://HOST:PORT", "file:///PATH",
                  "databricks")
# What a report carries besides the trainable's metrics that is worth a curve.
_PROGRESS_KEYS = ("training_iteration", "time_total_s")
NOTE_TAG = tags.NOTE
# MLflow's run status says whether the trial ran as told: finished, stopped by the scheduler or the
# budget, diverged and out of memory are all outcomes of a trial that did its job (``tunelab.status``
# tells them apart), so they end FINISHED; only a trial that raised ends FAILED. MLflow shows KILLED
# with a red cross, as a failure: it is left to runs a user killed (an interrupted search's trials).
_RUN_STATUS = {
    metrics.COMPLETED: "FINISHED", metrics.STOPPED_EARLY: "FINISHED", metrics.STATUS_DIVERGED: "FINISHED",
    metrics.STATUS_OOM: "FINISHED", metrics.ERROR: "FAILED", metrics.INTERRUPTED: "KILLED",
}


def run_status(status: str) -> str:
    """MLflow's run status (FINISHED, FAILED) for a trial's final ``tunelab.status``."""
    return _RUN_STATUS[status]


class TrackingError(RuntimeError):
    """The MLflow tracking server cannot be used (unreachable, refused)."""


def client_for(uri: str) -> MlflowClient:
    """A client for ``uri`` that fails fast instead of retrying for minutes when a server is down.

    Raises:
        TrackingError: MLflow has no store for the URI's scheme (``ftp://...``).
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        with _creating(uri):
            return MlflowClient(tracking_uri=uri)
    except UnsupportedModelRegistryStoreURIException:  # the client's constructor refuses the scheme
        scheme = urlparse(uri).scheme
        raise TrackingError(f"cannot use MLflow at {uri}: MLflow has no store for the scheme {scheme!r}; expected "
                            f"one of {', '.join(USABLE_SCHEMES)}") from None


@contextlib.contextmanager
def _creating(uri: str) -> Iterator[None]:
    """For a SQLite URI, hold a lock beside the database while MLflow opens it: the client's
    constructor makes the tables of a new database, and two searches started at once on a new
    results root would both make them, one failing half-way ("duplicate column name")."""
    db = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if db is None or not db.parent.is_dir():
        yield  # not SQLite, or a folder that is not there: the store's own error names it
        return
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_experiment(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    """The id of experiment ``name``, created (artifacts under ``artifact_root``) if missing.

    Raises:
        TrackingError: the store cannot be reached, or refuses the login.
    """
    try:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = artifact_root.resolve().as_uri() if artifact_root is not None else None
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:
            # Made meanwhile: by another search of that name, or by this request's first attempt when
            # a slow server answered after the client had given up and sent it again.
            exp = client.get_experiment_by_name(name) if exc.error_code == "RESOURCE_ALREADY_EXISTS" else None
            if exp is None:
                raise
            return exp.experiment_id
    except Exception as exc:  # the client raises many types for "cannot reach the server"
        raise TrackingError(f"cannot use MLflow at {client.tracking_uri}: {first_line(exc)}") from None


def get_run(client: MlflowClient, run_id: str):
    """``client.get_run``, raising TrackingError (one line) when the store cannot be used."""
    try:
        return client.get_run(run_id)
    except Exception as exc:  # the client raises many types for "cannot reach the server"
        raise TrackingError(f"cannot use MLflow at {client.tracking_uri}: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    """One line saying what went wrong; a login the server refuses says which variables give one."""
    text = str(exc).strip() or type(exc).__name__
    code = getattr(exc, "error_code", "")
    if "error code 401" in text or code == "UNAUTHENTICATED":
        return ("the server refused the login (HTTP 401): set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD to a login on it")
    if "error code 403" in text or code == "PERMISSION_DENIED":
        return f"the login has no permission for this (HTTP 403): {text.splitlines()[0][-200:]}"
    return text.splitlines()[0]


def git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def flat_params(config: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in sorted(config.items())}


def run_name(number: int, sampled: Mapping[str, Any]) -> str:
    """'t003 lr=0.52 dropout=0.31': the trial's number in start order and its sampled values."""
    parts = [f"{k}={_short(v)}" for k, v in sampled.items()]
    return " ".join([f"t{number:03d}", *parts])[:250]


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def numeric_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The reportable numbers of a Tune result: every number the trainable reported (nested dicts
    flattened as ``a/b``), whatever its name, and Tune's progress counters; not Ray's bookkeeping."""
    out = {}
    for key, value in _flat(result):
        if key in _ends.RAY_KEYS and key not in _PROGRESS_KEYS:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def _flat(result: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in result.items():
        if isinstance(value, Mapping):
            if key != "config":
                yield from _flat(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def report_metrics(result: Mapping[str, Any], step: int, timestamp_ms: int, *, with_constants: bool) -> list[Metric]:
    """What one report adds to a child run: every changing metric at ``step``; the constants
    (``metrics.CONSTANTS``) once, at step 0, when ``with_constants``; never the 0/1 flags
    (``metrics.FLAGS``: ``end_metrics`` logs them once, when the trial ends)."""
    out = []
    for key, value in numeric_metrics(result).items():
        if key in metrics.FLAGS:
            continue
        if key in metrics.CONSTANTS:
            if with_constants:
                out.append(Metric(key, value, timestamp_ms, 0))
            continue
        out.append(Metric(key, value, timestamp_ms, step))
    return out


def end_metrics(last_result: Mapping[str, Any] | None, status: str, timestamp_ms: int) -> list[Metric]:
    """The flags a trial ended with, at its last step: ``diverged`` and ``oom`` as it reported them (0
    when absent), ``finished`` 1 when its status is completed; nothing for a trial that never reported."""
    if not last_result or "training_iteration" not in last_result:
        return []
    step = int(last_result["training_iteration"])
    values = {key: float(last_result.get(key) or 0) for key in metrics.FLAGS}
    values[metrics.FINISHED] = float(status == metrics.COMPLETED)
    return [Metric(key, values[key], timestamp_ms, step) for key in sorted(values)]


def trial_note(status: str, last_result: Mapping[str, Any] | None, best: float | None, metric: str | None,
               time_attr: str | None = None, why: str | None = None) -> str:
    """A child run's one-line description: how the trial ended and why, and its best objective."""
    last = last_result or {}
    attr = time_attr or "training_iteration"
    where = f"{attr} {_short(last[attr])}" if last.get(attr) is not None else "its first report"
    text = {
        metrics.COMPLETED: "Completed: ran its whole schedule",
        metrics.STOPPED_EARLY: f"Stopped early after {where}: {why or 'the scheduler ranked it below its rung'}",
        metrics.STATUS_DIVERGED: f"Diverged at {where} (loss not finite or above the ceiling); "
                                 "its values are logged as they were",
        metrics.STATUS_OOM: "Out of memory: the config does not fit on its device",
        metrics.ERROR: f"Failed: the trial raised{' after ' + where if last.get(attr) is not None else ''} "
                       "(traceback in tag tunelab.error)",
    }[status]
    if metric and best is not None:
        text += f"; best {metric} {best:.4g}"
    return text + "."


class MLflowTracker(Callback):
    """Tune callback: one child run per trial under the search's parent run.

    Args:
        tracking_uri: MLflow tracking URI.
        experiment_id: the search's experiment.
        parent_run_id: the search's parent run.
        sampled_keys: the names of the sampled parameters (they name the child runs).
        pending_file: written while MLflow misses records of some trials (so the end of the search,
            or `tunelab sync`, knows to catch up), removed once it has them.
        metric, mode: the objective; with it, the parent run gets the search's progress as trials end
            (``Progress``) and each child's description its best value.
        time_attr: the scheduler's progress counter (``epoch``), named in a stopped trial's description.
        inputs: dataset inputs (``mlflow.entities.DatasetInput``) logged on each child run.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, sampled_keys: Iterable[str],
                 pending_file: Path | None = None, metric: str | None = None, mode: str = "min",
                 time_attr: str | None = None, inputs: Iterable[Any] = ()):
        self.tracking_uri = tracking_uri
        self.pending_file = pending_file
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sampled_keys = tuple(sampled_keys)
        self.metric, self.mode, self.time_attr = metric, mode, time_attr
        self.inputs = list(inputs)
        self._client: MlflowClient | None = None
        self._runs: dict[str, str] = {}  # trial id -> run id
        self._names: dict[str, str] = {}  # trial id -> t003, in start order
        self._last_step: dict[str, int] = {}  # run id -> last logged training_iteration
        self._params_due: dict[str, Mapping[str, Any] | None] = {}  # run id -> config not yet logged
        self._constants_logged: set[str] = set()  # run ids that have their step-0 constants
        self._best: dict[str, float] = {}  # run id -> best objective value logged so far
        self._progress: Progress | None = None  # the parent's progress curve, read back by setup()
        self._pending: set[str] = set()  # trials with records MLflow has not got (server unreachable)
        self._retry_at = 0.0

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = client_for(self.tracking_uri)
        return self._client

    def __getstate__(self) -> dict:  # Ray pickles callbacks into the experiment folder
        return {**self.__dict__, "_client": None, "_runs": {}, "_last_step": {}, "_pending": set(), "_params_due": {},
                "_names": {}, "_constants_logged": set(), "_best": {}, "_progress": None}

    def setup(self, **info) -> None:
        """Find the child runs a previous launch of this search made, so a resume reuses them, and
        the parent's progress curve, so it goes on where it stopped."""
        for run in children(self.client, self.experiment_id, self.parent_run_id):
            trial_id = run.data.tags.get(TRIAL_ID_TAG)
            if trial_id:
                self._runs[trial_id] = run.info.run_id
                self._names[trial_id] = (run.info.run_name or "").split(" ")[0] or trial_id
                self._last_step[run.info.run_id] = int(run.data.metrics.get("training_iteration", 0))
                if not run.data.params:  # the driver died before the trial's first report
                    self._params_due[run.info.run_id] = None
                if metrics.CONSTANTS & set(run.data.metrics):
                    self._constants_logged.add(run.info.run_id)
        if self.metric is not None:
            self._progress = Progress.read(self.client, self.parent_run_id, self.metric, self.mode)

    def trial_label(self, trial) -> str:
        """The trial's name, t003 (its number in start order), as its child run is named."""
        if trial.trial_id not in self._names:
            self._names[trial.trial_id] = f"t{len(self._names):03d}"
        return self._names[trial.trial_id]

    def _run_for(self, trial) -> str:
        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            sampled = {k: trial.config[k] for k in self.sampled_keys if k in trial.config}
            label = self.trial_label(trial)
            number = int(label[1:]) if label[1:].isdigit() else len(self._runs)
            run = self.client.create_run(
                self.experiment_id, run_name=run_name(number, sampled),
                tags={PARENT_TAG: self.parent_run_id, TRIAL_ID_TAG: trial.trial_id, STATUS_TAG: "running"},
            )
            run_id = run.info.run_id
            self._runs[trial.trial_id] = run_id
            self._last_step[run_id] = 0
            self._params_due[run_id] = trial.config
            if self.inputs:
                self.client.log_inputs(run_id, datasets=self.inputs)
        elif run_id in self._params_due and self._params_due[run_id] is None:
            self._params_due[run_id] = trial.config  # found by setup() without params
        return run_id

    def _due_params(self, run_id: str) -> list[Param]:
        """The trial's params, if not logged yet: they ride with its first batch (one request less per
        trial); MLflow takes at most 100 per batch, so any beyond go first on their own."""
        config = self._params_due.get(run_id)
        if config is None:
            return []
        params = [Param(k, v[:6000]) for k, v in flat_params(config).items()]
        for i in range(100, len(params), 100):
            self.client.log_batch(run_id, params=params[i:i + 100])
        return params[:100]

    @property
    def pending(self) -> set[str]:
        """Trial ids whose records have not reached MLflow yet."""
        return set(self._pending)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.trial_label(trial)  # numbered in start order even while MLflow does not answer
        self._guard(trials, trial, lambda: self._run_for(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._guard(trials, trial, lambda: self._log_results(trial, [result]))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._guard(trials, trial, lambda: self._finish(trial, metrics.final_status(trial.last_result)))
        # What the trial left with its last checkpoint for the record (attention maps...).
        self._guard(trials, trial, lambda: log_checkpoint_artifacts(self.client, self._run_for(trial), trial))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._guard(trials, trial, lambda: self._finish(trial, metrics.ERROR))

    def on_step_end(self, iteration, trials, **info) -> None:
        if self._pending and time.monotonic() >= self._retry_at:
            self._guard(trials, None, lambda: None)

    def _guard(self, trials, trial, call) -> None:
        """Make one trial's MLflow calls; if the server does not answer, note the trial and go on."""
        if self._pending:
            if time.monotonic() < self._retry_at:
                if trial is not None:
                    self._pending.add(trial.trial_id)
                return
            try:  # the server may be back: first what it missed, then this call
                self._replay_pending(trials)
            except Exception as exc:
                self._offline(trial, exc)
                return
        try:
            call()
        except Exception as exc:  # the client raises many types for "cannot reach the server"
            self._offline(trial, exc)

    def _offline(self, trial, exc: Exception) -> None:
        if not self._pending:
            log.warning("MLflow at %s does not answer (%s); the trials go on, and what they report is "
                        "replayed when it is back (or by `tunelab sync`)", self.tracking_uri,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        if trial is not None:
            self._pending.add(trial.trial_id)
        self._retry_at = time.monotonic() + RETRY_S
        if self.pending_file is not None:
            self.pending_file.write_text(json.dumps(sorted(self._pending)))

    def _replay_pending(self, trials) -> None:
        by_id = {t.trial_id: t for t in trials}
        for trial_id in sorted(self._pending):
            if trial_id in by_id:
                self.replay(by_id[trial_id])
            self._pending.discard(trial_id)
        if self.pending_file is not None:
            self.pending_file.unlink(missing_ok=True)
        log.warning("MLflow at %s answers again; the missed records were replayed", self.tracking_uri)

    def replay(self, trial, why_stopped: str | None = None) -> None:
        """Bring one trial's child run up to what Ray recorded: missing steps, then its end status
        (``why_stopped``: the reason a stopped trial's description gives, if not its scheduler)."""
        results = read_results(_result_file(trial))
        self._log_results(trial, results)
        last = results[-1] if results else trial.last_result
        if trial.last_result and trial.last_result.get("training_iteration") == last.get("training_iteration"):
            last = trial.last_result  # Ray's own copy: it says whether the trial returned (``done``)
        if trial.status == "ERROR":
            self._finish(trial, metrics.ERROR, last, replaying=True)
        elif trial.status == "TERMINATED":
            self._finish(trial, metrics.final_status(last), last, replaying=True, why=why_stopped)
            log_checkpoint_artifacts(self.client, self._run_for(trial), trial)  # missed if MLflow was down

    def _log_results(self, trial, results: Iterable[Mapping[str, Any]]) -> None:
        """Log the reports MLflow does not have yet (steps past the last one logged), one batch each."""
        run_id = self._run_for(trial)
        for result in results:
            step = int(result.get("training_iteration", 0))
            if step <= self._last_step.get(run_id, 0):
                continue  # already logged, before a restart or a replay
            ts = int(result.get("timestamp", time.time()) * 1000)
            batch = report_metrics(result, step, ts, with_constants=run_id not in self._constants_logged)
            self.client.log_batch(run_id, metrics=batch, params=self._due_params(run_id))
            self._params_due.pop(run_id, None)
            self._last_step[run_id] = step
            if any(m.key in metrics.CONSTANTS for m in batch):
                self._constants_logged.add(run_id)
            self._note_best(run_id, result.get(self.metric) if self.metric else None)

    def _note_best(self, run_id: str, value: Any) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return
        old = self._best.get(run_id)
        if old is None or (value < old if self.mode == "min" else value > old):
            self._best[run_id] = float(value)

    def _trial_best(self, run_id: str) -> float | None:
        """The trial's best objective value: from its reports, or (after a driver restart) MLflow's history."""
        if run_id not in self._best and self.metric is not None:
            for m in self.client.get_metric_history(run_id, self.metric):
                self._note_best(run_id, m.value)
        return self._best.get(run_id)

    def _finish(self, trial, status: str, last: Mapping[str, Any] | None = None, replaying: bool = False,
                why: str | None = None) -> str:
        run_id = self._run_for(trial)
        if replaying and self.client.get_run(run_id).data.tags.get(STATUS_TAG) == status:
            return run_id  # recorded already
        last = last if last is not None else trial.last_result
        best = self._trial_best(run_id)
        end_tags = [RunTag(STATUS_TAG, status),
                    RunTag(NOTE_TAG, trial_note(status, last, best, self.metric, self.time_attr, why))]
        if status == metrics.ERROR and trial.error_file and os.path.exists(trial.error_file):
            self.client.log_artifact(run_id, trial.error_file)
            with open(trial.error_file) as f:
                end_tags.append(RunTag(ERROR_TAG, f.read()[-4000:]))
        ts = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=end_metrics(last, status, ts), tags=end_tags,
                              params=self._due_params(run_id))
        self._params_due.pop(run_id, None)
        self.client.set_terminated(run_id, run_status(status))
        if self._progress is not None:
            self._progress.trial_ended(self.client, best, last)
        return run_id


def _result_file(trial) -> Path:
    """Where Ray's JSON logger wrote the trial's reports: its folder in the experiment's storage (the
    driver's staging folder only exists, and only differs, for cloud storage with Ray running)."""
    path = Path(trial.path) / "result.json"
    if not path.exists() and ray_is_initialized():
        path = Path(trial.local_path) / "result.json"
    return path


def ray_is_initialized() -> bool:
    import ray

    return ray.is_initialized()


def read_results(path: Path) -> list[dict[str, Any]]:
    """The reports Ray wrote for one trial (its ``result.json``, one JSON object per line)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a killed driver
    return rows


LOST_MESSAGE = ("the driver stopped before Ray recorded this trial, so `tunelab resume` could not continue it; "
                "the search ran another trial in its place")


def end_lost_runs(client: MlflowClient, experiment_id: str, parent_run_id: str, known: set[str]) -> list[str]:
    """End, as errors, the child runs of trials that Ray's experiment state does not hold.

    Ray snapshots its trials every few seconds; a driver killed between a trial's start and the next
    snapshot leaves a child run (and a RUNNING Optuna trial) for a trial a resume knows nothing of.
    Returns the trial ids of the runs it ended.
    """
    lost = []
    for run in children(client, experiment_id, parent_run_id):
        trial_id = run.data.tags.get(TRIAL_ID_TAG)
        if trial_id in known or run.data.tags.get(STATUS_TAG) in metrics.ENDED:
            continue
        client.log_batch(run.info.run_id, tags=[RunTag(STATUS_TAG, metrics.ERROR), RunTag(ERROR_TAG, LOST_MESSAGE),
                                                RunTag(NOTE_TAG, f"Failed: {LOST_MESSAGE}.")])
        client.set_terminated(run.info.run_id, run_status(metrics.ERROR))
        lost.append(trial_id)
    return lost


def children(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list:
    """Every child run of a parent run (all pages)."""
    return all_runs(client, experiment_id, f"tags.`{PARENT_TAG}` = '{parent_run_id}'")


def all_runs(client: MlflowClient, experiment_id: str, filter_string: str = "") -> list:
    """Every run of an experiment that matches ``filter_string`` (all pages)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


@dataclasses.dataclass
class Progress:
    """The search's progress on its parent run, one step per ended trial (step k: k trials ended).

    At each step: the best objective so far (``best_val_ppl``: the optimisation-history curve), the
    ended trial's own best (``trial_val_ppl``: its scatter), and the FLOPs and training seconds the
    ended trials spent together (``search_flops``, ``search_trial_s``: choose one as the x axis of a
    chart in MLflow to see the best so far against compute).
    """

    parent_run_id: str
    metric: str
    mode: str
    ended: int = 0
    best: float | None = None
    flops: float = 0.0
    trial_s: float = 0.0

    @classmethod
    def read(cls, client: MlflowClient, parent_run_id: str, metric: str, mode: str) -> Progress:
        """The progress logged so far (nothing on a new search; where it stopped after a restart)."""
        progress = cls(parent_run_id, metric, mode)
        spent = client.get_metric_history(parent_run_id, metrics.SEARCH_TRIAL_S)
        if spent:
            last = max(spent, key=lambda m: m.step)
            progress.ended, progress.trial_s = last.step, last.value
            values = client.get_run(parent_run_id).data.metrics
            progress.best = values.get(metrics.best_so_far(metric))
            progress.flops = values.get(metrics.SEARCH_FLOPS, 0.0)
        return progress

    def trial_ended(self, client: MlflowClient, best: float | None, last: Mapping[str, Any] | None) -> None:
        """Log the next step: one more trial ended, with ``best`` its best objective (None: none)."""
        last = last or {}
        flops = self.flops + float(last.get(metrics.FLOPS) or 0.0)
        trial_s = self.trial_s + float(last.get(metrics.WALL_S) or 0.0)
        so_far = self.best
        if best is not None and (so_far is None or (best < so_far if self.mode == "min" else best > so_far)):
            so_far = best
        values = {metrics.SEARCH_FLOPS: flops, metrics.SEARCH_TRIAL_S: trial_s}
        if so_far is not None:
            values[metrics.best_so_far(self.metric)] = so_far
        if best is not None:
            values[metrics.trial_value(self.metric)] = best
        ts = int(time.time() * 1000)
        client.log_batch(self.parent_run_id, metrics=[Metric(k, v, ts, self.ended + 1) for k, v in values.items()])
        # only once MLflow has it: a server that did not answer leaves the count as it was
        self.ended, self.flops, self.trial_s, self.best = self.ended + 1, flops, trial_s, so_far
