"""MLflow layout of a search (DESIGN.md, "Results and tracking"), written by the driver only.

One parent run per search; one child run per Ray trial, found again by its trial id after
``tunelab resume`` (Ray's ``MLflowLoggerCallback`` keeps that map in memory only, so a resumed search
would get a second run per trial). Every report is one ``log_batch`` call, not one request per key.

A tracking server that goes away does not stop the search: the trials it could not record are noted,
and once it answers again each is replayed from what Ray wrote (the trial's ``result.json``), from
the first step MLflow lacks. ``tunelab sync`` does the same after the search has ended.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlflow.entities import Metric, Param, RunTag  # noqa: F401 (re-used by _run)
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException
from ray.tune import Callback

from trainables import metrics

log = logging.getLogger(__name__)

TRIAL_ID_TAG = "tunelab.trial_id"
STATUS_TAG = "tunelab.status"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
ERROR_TAG = "tunelab.error"
TRAINABLE_TAG = "tunelab.trainable"  # on the parent run: the search's trainable
# Seconds between attempts to reach a tracking server that stopped answering.
RETRY_S = 15.0
# The URI schemes of MLflow's own tracking stores (a plugin may add others, which client_for accepts).
USABLE_SCHEMES = ("sqlite:///PATH", "postgresql://", "mysql://", "mssql://", "http(s)://HOST:PORT", "file:///PATH",
                  "databricks")
# What a report carries besides the trainable's metrics that is worth a curve.
_PROGRESS_KEYS = ("training_iteration", "time_total_s")
_RUN_STATUS = {
    metrics.COMPLETED: "FINISHED", metrics.STOPPED_EARLY: "KILLED", metrics.STATUS_DIVERGED: "FINISHED",
    metrics.STATUS_OOM: "FAILED", metrics.ERROR: "FAILED",
}


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
        return MlflowClient(tracking_uri=uri)
    except UnsupportedModelRegistryStoreURIException:  # the client's constructor refuses the scheme
        scheme = urlparse(uri).scheme
        raise TrackingError(f"cannot use MLflow at {uri}: MLflow has no store for the scheme {scheme!r}; expected "
                            f"one of {', '.join(USABLE_SCHEMES)}") from None


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
    """The reportable numbers of a Tune result: our metrics and Tune's progress counters."""
    out = {}
    for key in metrics.ALL + _PROGRESS_KEYS:
        value = result.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


class MLflowTracker(Callback):
    """Tune callback: one child run per trial under the search's parent run.

    Args:
        tracking_uri: MLflow tracking URI.
        experiment_id: the search's experiment.
        parent_run_id: the search's parent run.
        sampled_keys: the names of the sampled parameters (they name the child runs).
        pending_file: written while MLflow misses records of some trials (so the end of the search,
            or `tunelab sync`, knows to catch up), removed once it has them.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, sampled_keys: Iterable[str],
                 pending_file: Path | None = None):
        self.tracking_uri = tracking_uri
        self.pending_file = pending_file
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sampled_keys = tuple(sampled_keys)
        self._client: MlflowClient | None = None
        self._runs: dict[str, str] = {}  # trial id -> run id
        self._last_step: dict[str, int] = {}  # run id -> last logged training_iteration
        self._params_due: dict[str, Mapping[str, Any] | None] = {}  # run id -> config not yet logged
        self._pending: set[str] = set()  # trials with records MLflow has not got (server unreachable)
        self._retry_at = 0.0

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = client_for(self.tracking_uri)
        return self._client

    def __getstate__(self) -> dict:  # Ray pickles callbacks into the experiment folder
        return {**self.__dict__, "_client": None, "_runs": {}, "_last_step": {}, "_pending": set(), "_params_due": {}}

    def setup(self, **info) -> None:
        """Find the child runs a previous launch of this search made, so a resume reuses them."""
        for run in children(self.client, self.experiment_id, self.parent_run_id):
            trial_id = run.data.tags.get(TRIAL_ID_TAG)
            if trial_id:
                self._runs[trial_id] = run.info.run_id
                self._last_step[run.info.run_id] = int(run.data.metrics.get("training_iteration", 0))
                if not run.data.params:  # the driver died before the trial's first report
                    self._params_due[run.info.run_id] = None

    def _run_for(self, trial) -> str:
        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            sampled = {k: trial.config[k] for k in self.sampled_keys if k in trial.config}
            run = self.client.create_run(
                self.experiment_id, run_name=run_name(len(self._runs), sampled),
                tags={PARENT_TAG: self.parent_run_id, TRIAL_ID_TAG: trial.trial_id, STATUS_TAG: "running"},
            )
            run_id = run.info.run_id
            self._runs[trial.trial_id] = run_id
            self._last_step[run_id] = 0
            self._params_due[run_id] = trial.config
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
        self._guard(trials, trial, lambda: self._run_for(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._guard(trials, trial, lambda: self._log_results(trial, [result]))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._guard(trials, trial, lambda: self._finish(trial, metrics.final_status(trial.last_result)))

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

    def replay(self, trial) -> None:
        """Bring one trial's child run up to what Ray recorded: missing steps, then its end status."""
        results = read_results(_result_file(trial))
        self._log_results(trial, results)
        if trial.status == "ERROR":
            self._finish(trial, metrics.ERROR, replaying=True)
        elif trial.status == "TERMINATED":
            self._finish(trial, metrics.final_status(results[-1] if results else trial.last_result), replaying=True)

    def _log_results(self, trial, results: Iterable[Mapping[str, Any]]) -> None:
        """Log the reports MLflow does not have yet (steps past the last one logged), one batch each."""
        run_id = self._run_for(trial)
        for result in results:
            step = int(result.get("training_iteration", 0))
            if step <= self._last_step.get(run_id, 0):
                continue  # already logged, before a restart or a replay
            ts = int(result.get("timestamp", time.time()) * 1000)
            values = numeric_metrics(result)
            self.client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v in values.items()],
                                  params=self._due_params(run_id))
            self._params_due.pop(run_id, None)
            self._last_step[run_id] = step

    def _finish(self, trial, status: str, replaying: bool = False) -> str:
        run_id = self._run_for(trial)
        if replaying and self.client.get_run(run_id).data.tags.get(STATUS_TAG) == status:
            return run_id  # recorded already
        tags = [RunTag(STATUS_TAG, status)]
        if status == metrics.ERROR and trial.error_file and os.path.exists(trial.error_file):
            self.client.log_artifact(run_id, trial.error_file)
            with open(trial.error_file) as f:
                tags.append(RunTag(ERROR_TAG, f.read()[-4000:]))
        self.client.log_batch(run_id, tags=tags, params=self._due_params(run_id))
        self._params_due.pop(run_id, None)
        self.client.set_terminated(run_id, _RUN_STATUS[status])
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
        if trial_id in known or run.data.tags.get(STATUS_TAG) in metrics.STATUSES:
            continue
        client.log_batch(run.info.run_id, tags=[RunTag(STATUS_TAG, metrics.ERROR), RunTag(ERROR_TAG, LOST_MESSAGE)])
        client.set_terminated(run.info.run_id, _RUN_STATUS[metrics.ERROR])
        lost.append(trial_id)
    return lost


def children(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list:
    """Every child run of a parent run (all pages)."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
            max_results=1000, page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs
