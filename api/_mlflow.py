"""The MLflow client as tunelab uses it: one that fails fast, errors in one line, every page of runs.

The driver, ``tunelab ls``, ``resume``, ``sync`` and ``analysis`` reach MLflow through these; what a
search writes there is laid out by ``search._children`` (one run per trial) and ``search._parent``
(one per search). Imports MLflow only (no Ray, no torch), so ``analysis`` shares it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from mlflow.entities import Metric, Param, RunTag  # noqa: F401 (what a log_batch carries, for _children, _parent)
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException

from tunelab.trainables import metrics
from tunelab.trainables import tags

# The URI schemes of MLflow's own tracking stores (a plugin may add others, which client_for accepts).
USABLE_SCHEMES = ("sqlite:///PATH", "postgresql://", "mysql://", "mssql://", "http(s)://HOST:PORT", "file:///PATH",
                  "databricks")
# MLflow's run status says whether the trial ran as told: finished, stopped by the scheduler or the
# budget, diverged and out of memory are all outcomes of a trial that did its job (``tunelab.status``
# tells them apart), so they end FINISHED; only a trial that raised ends FAILED. MLflow shows KILLED
# with a red cross, as a failure: it is left to runs a user killed (an interrupted search's trials).
_RUN_STATUS = {
    metrics.COMPLETED: "FINISHED", metrics.STOPPED_EARLY: "FINISHED", metrics.STATUS_DIVERGED: "FINISHED",
    metrics.STATUS_OOM: "FINISHED", metrics.ERROR: "FAILED", metrics.INTERRUPTED: "KILLED",
}


def run_status(status: str) -> str:
    """MLflow's run status (FINISHED, FAILED, KILLED) for a trial's final ``tunelab.status``."""
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
        yield  # not SQLite, or a folder that is not there yet (MLflow makes it: nothing to share a lock in)
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


def children(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list:
    """Every child run of a parent run (all pages)."""
    return all_runs(client, experiment_id, f"tags.`{tags.PARENT}` = '{parent_run_id}'")


def all_runs(client: MlflowClient, experiment_id: str, filter_string: str = "") -> list:
    """Every run of an experiment that matches ``filter_string`` (all pages)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def git_commit(path: Path) -> str | None:
    """The commit checked out where ``path`` is, if it is in a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None
