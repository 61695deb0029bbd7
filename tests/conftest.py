"""Shared fixtures: the PTB location, one Ray instance, one MLflow store on SQLite (each test its own
experiment in it), and (for the tests that use them) one PostgreSQL server and one MLflow server with
logins on it, for the whole session."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TUNELAB_DATA", ROOT.parent / "shared" / "data")).resolve()
os.environ.setdefault("TUNELAB_DATA", str(SHARED_DATA))
# Nothing puts the checkout on the path: the tests, their subprocesses and Ray's workers import the
# installed package, ``tunelab`` (an editable install in the Makefile's venv), as a user's code does.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder holding ptb/ and tinyshakespeare/ (../shared/data in this repository's CI)."""
    if not (SHARED_DATA / "ptb" / "ptb.train.txt").exists():
        raise RuntimeError(f"PTB not found under {SHARED_DATA}; set TUNELAB_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance shared by every test that runs trials (2 cores: starting Ray is costly)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory):
    """(URI, client) of one SQLite MLflow store for the session: making a store's tables takes seconds."""
    from tunelab import _mlflow

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    return uri, _mlflow.client_for(uri)


@pytest.fixture
def experiment(mlflow_store, tmp_path):
    """(client, id) of a new experiment of the session's store, with its artifacts under tmp_path."""
    from tunelab import _mlflow

    client = mlflow_store[1]
    return client, _mlflow.ensure_experiment(client, f"test-{uuid.uuid4().hex[:12]}", tmp_path / "mlartifacts")


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server (Debian's, from a temporary folder; see tests/_servers.py)."""
    from _servers import Postgres

    server = Postgres().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def team_server(postgres, tmp_path_factory):
    """`mlflow server --app-name basic-auth` on the session's PostgreSQL, with the login _servers.TEAM_USER."""
    from _servers import TEAM_USER, MlflowAuth

    server = MlflowAuth(postgres.create_database("mlflow"), postgres.create_database("mlflow_auth"),
                        tmp_path_factory.mktemp("team_server"))
    server.start()
    try:
        server.create_user(*TEAM_USER)
        yield server
    finally:
        server.stop()
