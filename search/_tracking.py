"""MLflow layout of a search (DESIGN.md, "Results and tracking"), written by the driver only.

One parent run per search; one child run per Ray trial, found again by its trial id after
``tunelab resume`` (Ray's ``MLflowLoggerCallback`` keeps that map in memory only, so a resumed search
would get a second run per trial). Every report is one ``log_batch`` call, not one request per key.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag  # noqa: F401 (re-used by _run)
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from trainables import metrics

TRIAL_ID_TAG = "tunelab.trial_id"
STATUS_TAG = "tunelab.status"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
# What a report carries besides the trainable's metrics that is worth a curve.
_PROGRESS_KEYS = ("training_iteration", "time_total_s")
_RUN_STATUS = {
    metrics.COMPLETED: "FINISHED", metrics.STOPPED_EARLY: "KILLED", metrics.STATUS_DIVERGED: "FINISHED",
    metrics.STATUS_OOM: "FAILED", metrics.ERROR: "FAILED",
}


class TrackingError(RuntimeError):
    """The MLflow tracking server cannot be used (unreachable, refused)."""


def client_for(uri: str) -> MlflowClient:
    """A client for ``uri`` that fails fast instead of retrying for minutes when a server is down."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    return MlflowClient(tracking_uri=uri)


def ensure_experiment(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    """The id of experiment ``name``, created (artifacts under ``artifact_root``) if missing."""
    try:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = artifact_root.resolve().as_uri() if artifact_root is not None else None
        return client.create_experiment(name, artifact_location=location)
    except Exception as exc:  # the client raises many types for "cannot reach the server"
        raise TrackingError(f"cannot use MLflow at {client.tracking_uri}: {str(exc).splitlines()[0]}") from None


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
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, sampled_keys: Iterable[str]):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sampled_keys = tuple(sampled_keys)
        self._client: MlflowClient | None = None
        self._runs: dict[str, str] = {}  # trial id -> run id
        self._last_step: dict[str, int] = {}  # run id -> last logged training_iteration

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = client_for(self.tracking_uri)
        return self._client

    def __getstate__(self) -> dict:  # Ray pickles callbacks into the experiment folder
        return {**self.__dict__, "_client": None, "_runs": {}, "_last_step": {}}

    def setup(self, **info) -> None:
        """Find the child runs a previous launch of this search made, so a resume reuses them."""
        for run in children(self.client, self.experiment_id, self.parent_run_id):
            trial_id = run.data.tags.get(TRIAL_ID_TAG)
            if trial_id:
                self._runs[trial_id] = run.info.run_id
                self._last_step[run.info.run_id] = int(run.data.metrics.get("training_iteration", 0))

    def _run_for(self, trial) -> str:
        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            sampled = {k: trial.config[k] for k in self.sampled_keys if k in trial.config}
            run = self.client.create_run(
                self.experiment_id, run_name=run_name(len(self._runs), sampled),
                tags={PARENT_TAG: self.parent_run_id, TRIAL_ID_TAG: trial.trial_id, STATUS_TAG: "running"},
            )
            run_id = run.info.run_id
            params = [Param(k, v[:6000]) for k, v in flat_params(trial.config).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(run_id, params=params[i:i + 100])
            self._runs[trial.trial_id] = run_id
            self._last_step[run_id] = 0
        return run_id

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._run_for(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        run_id = self._run_for(trial)
        step = int(result.get("training_iteration", 0))
        if step <= self._last_step.get(run_id, 0):
            return  # already logged before a restart
        ts = int(time.time() * 1000)
        values = numeric_metrics(result)
        self.client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v in values.items()])
        self._last_step[run_id] = step

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, metrics.final_status(trial.last_result))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        run_id = self._finish(trial, metrics.ERROR)
        if trial.error_file and os.path.exists(trial.error_file):
            self.client.log_artifact(run_id, trial.error_file)
            with open(trial.error_file) as f:
                self.client.set_tag(run_id, "tunelab.error", f.read()[-4000:])

    def _finish(self, trial, status: str) -> str:
        run_id = self._run_for(trial)
        self.client.log_batch(run_id, tags=[RunTag(STATUS_TAG, status)])
        self.client.set_terminated(run_id, _RUN_STATUS[status])
        return run_id


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
