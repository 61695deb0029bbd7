"""The MLflow client as tunelab uses it (api/_mlflow.py), against real SQLite stores."""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2
from mlflow.tracking import MlflowClient

from tunelab import _mlflow
from tunelab.trainables import tags

FAIL_FAST = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")


def test_a_scheme_mlflow_has_no_store_for_is_a_tracking_error_listing_the_usable_ones():
    with pytest.raises(_mlflow.TrackingError) as caught:
        _mlflow.client_for("ftp://host/mlflow")
    assert str(caught.value) == ("cannot use MLflow at ftp://host/mlflow: MLflow has no store for the scheme 'ftp'; "
                                 "expected one of sqlite:///PATH, postgresql://, mysql://, mssql://, "
                                 "http(s)://HOST:PORT, file:///PATH, databricks")


def test_a_client_fails_fast_unless_the_user_said_otherwise(mlflow_store, monkeypatch):
    for key in FAIL_FAST:
        monkeypatch.delenv(key, raising=False)
    _mlflow.client_for(mlflow_store[0])
    assert [os.environ.get(k) for k in FAIL_FAST] == ["2", "10"]
    monkeypatch.setenv(FAIL_FAST[0], "7")
    monkeypatch.setenv(FAIL_FAST[1], "120")
    _mlflow.client_for(mlflow_store[0])
    assert [os.environ.get(k) for k in FAIL_FAST] == ["7", "120"]


def test_a_new_sqlite_store_is_made_by_one_client_at_a_time(tmp_path):
    db = tmp_path / "mlflow.db"
    made = []
    with open(tmp_path / "mlflow.db.lock", "a") as lock:  # another process is making the tables
        fcntl.flock(lock, fcntl.LOCK_EX)
        maker = threading.Thread(target=lambda: made.append(_mlflow.client_for(f"sqlite:///{db}")))
        maker.start()
        maker.join(timeout=2)
        assert maker.is_alive() and not db.exists()  # waits for the lock before MLflow opens the file
    maker.join(timeout=120)
    assert not maker.is_alive() and db.exists()
    assert made[0].search_experiments()[0].name == "Default"


def test_ensure_experiment_makes_it_once_with_its_artifacts_where_asked(experiment, tmp_path):
    client, _ = experiment
    exp_id = _mlflow.ensure_experiment(client, "made-here", tmp_path / "art")
    assert client.get_experiment(exp_id).artifact_location == (tmp_path / "art").resolve().as_uri()
    assert _mlflow.ensure_experiment(client, "made-here", tmp_path / "elsewhere") == exp_id
    assert client.get_experiment(_mlflow.ensure_experiment(client, "made-default", None)).artifact_location


class _Late(MlflowClient):
    """A real client whose first look for an experiment comes just before another process makes it."""

    looked = False

    def get_experiment_by_name(self, name):
        found = super().get_experiment_by_name(name)
        if not self.looked:
            self.looked = True
            MlflowClient(self.tracking_uri).create_experiment(name)
        return found


def test_an_experiment_made_meanwhile_by_another_search_is_the_one_used(mlflow_store):
    uri, client = mlflow_store
    exp_id = _mlflow.ensure_experiment(_Late(uri), "made-meanwhile", None)
    assert exp_id == client.get_experiment_by_name("made-meanwhile").experiment_id


def test_any_other_refusal_is_a_tracking_error_in_one_line(mlflow_store):
    uri, client = mlflow_store
    with pytest.raises(_mlflow.TrackingError) as caught:
        _mlflow.ensure_experiment(client, "", None)
    assert str(caught.value) == f"cannot use MLflow at {uri}: Invalid experiment name: ''"
    with pytest.raises(_mlflow.TrackingError) as caught:
        _mlflow.get_run(client, "0123456789abcdef")
    assert str(caught.value) == f"cannot use MLflow at {uri}: Run with id=0123456789abcdef not found"


LONG = "x" * 250


@pytest.mark.parametrize("error, line", [
    (MlflowException("API request to /api/2.0/mlflow/runs/get failed with error code 401 != 200. Response body: "
                     "''\nmore"), "LOGIN"),
    (MlflowException("no session", error_code=databricks_pb2.UNAUTHENTICATED), "LOGIN"),
    (MlflowException(f"failed with error code 403 != 200. Response body: {LONG}\nsecond line"),
     "the login has no permission for this (HTTP 403): " + "x" * 200),  # the end of the first line
    (MlflowException("not yours", error_code=databricks_pb2.PERMISSION_DENIED),
     "the login has no permission for this (HTTP 403): not yours"),
    (ConnectionError("  Connection refused\n  at port 9  "), "Connection refused"),
    (TimeoutError(""), "TimeoutError"),
])
def test_first_line_says_what_went_wrong_and_what_gives_a_login(error, line):
    if line == "LOGIN":
        line = ("the server refused the login (HTTP 401): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                "to a login on it")
    assert _mlflow.first_line(error) == line


def test_children_are_the_runs_of_one_parent_and_no_other(experiment):
    client, exp_id = experiment
    parent, other = (client.create_run(exp_id, run_name=n).info.run_id for n in ("parent", "other"))
    kids = {client.create_run(exp_id, run_name=f"t{i}", tags={tags.PARENT: parent}).info.run_id for i in range(3)}
    client.create_run(exp_id, run_name="theirs", tags={tags.PARENT: other})
    client.create_run(exp_id, run_name="grandchild", tags={tags.PARENT: next(iter(kids))})
    assert {r.info.run_id for r in _mlflow.children(client, exp_id, parent)} == kids
    assert len(_mlflow.all_runs(client, exp_id)) == 7
    assert {r.info.run_name for r in _mlflow.all_runs(client, exp_id, "attributes.run_name = 'other'")} == {"other"}


def test_git_commit_is_the_checkout_s_head_or_none_outside_one(tmp_path):
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    head = subprocess.run([*git, "log", "-1", "--format=%H"], check=True, capture_output=True, text=True).stdout.strip()
    assert len(head) == 40 and _mlflow.git_commit(repo / "sub") == head
    assert _mlflow.git_commit(tmp_path) is None  # not a checkout
    assert _mlflow.git_commit(tmp_path / "missing") is None
