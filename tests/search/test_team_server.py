"""A team's tracking server: `mlflow server --app-name basic-auth` on PostgreSQL, with logins.

The session's PostgreSQL server and MLflow server (tests/conftest.py: ``postgres``, ``team_server``)
are real and shared by these tests; the searches are small synthetic ones through the session's Ray.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from _servers import TEAM_USER

from tunelab import _mlflow
from tunelab import analysis
from tunelab import search
from tunelab import spaces
from tunelab.search import sync
from tunelab.search.cli import main
from tunelab.trainables import metrics
from tunelab.trainables import tags

pytestmark = pytest.mark.slow
LOAD = str(spaces.CATALOGUE / "synthetic_load.yaml")
SMALL = ["budget.trials=3", "epochs=2", "scheduler.max_t=2", "budget.max_concurrent=2"]


@pytest.fixture
def login(monkeypatch):
    """The client's login, as a user gives it: in the environment, never in the search file."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", TEAM_USER[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", TEAM_USER[1])


def test_a_search_on_the_server_with_a_login_then_sync_resume_ls_ui_and_analysis(
        ray_session, team_server, login, tmp_path, capsys, monkeypatch):
    s = spaces.load(LOAD, [*SMALL, "name=team-search", f"storage={tmp_path}", f"tracking.uri={team_server.uri}"])
    outcome = search.run(s)
    assert len(outcome.trials) == 3
    client = _mlflow.client_for(team_server.uri)
    parent = client.get_run(outcome.parent_run_id)
    kids = _mlflow.children(client, parent.info.experiment_id, outcome.parent_run_id)

    def histories():
        return {r.data.tags[tags.TRIAL_ID]: [(m.step, m.value) for m in client.get_metric_history(
            r.info.run_id, metrics.VAL_LOSS)] for r in _mlflow.children(client, parent.info.experiment_id,
                                                                          outcome.parent_run_id)}

    first = histories()
    assert sorted(first) == sorted(t.trial_id for t in outcome.trials)
    assert all(r.data.tags[tags.STATUS] in (metrics.COMPLETED, metrics.STOPPED_EARLY) for r in kids)
    assert parent.info.status == "FINISHED" and parent.data.tags["tunelab.best_trial_id"] in first

    # sync and resume talk to the same server with the same login, and add nothing to a finished search.
    assert len(sync("team-search", tmp_path).trials) == 3
    resumed = search.resume("team-search", tmp_path)
    assert sorted(t.trial_id for t in resumed.trials) == sorted(first)
    assert histories() == first
    assert client.get_run(outcome.parent_run_id).info.status == "FINISHED"

    capsys.readouterr()
    assert main(["ls", "--storage", str(tmp_path)]) == 0
    assert "team-search  FINISHED  3" in capsys.readouterr().out

    # The analysis reads through the server (the client path, with the login); the server's own
    # PostgreSQL database, read with the bulk SQL path, holds the same tables.
    runs, history = analysis.load("team-search", team_server.uri)
    assert runs.num_rows == 3 and history.num_rows > 0
    sql_runs, sql_history = analysis.load("team-search", team_server.backend_uri, method="sql")
    assert sql_runs.equals(runs) and sql_history.equals(history)

    # `tunelab ui` points at the server instead of starting one.
    proc = subprocess.run([sys.executable, "-m", "tunelab", "ui", "team-search", "--storage", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and team_server.uri in proc.stdout, proc.stdout + proc.stderr

    # A resume with a login the server refuses stops at once, in one line.
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
    assert main(["resume", "team-search", "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "tunelab.json: tracking_uri: " in err and "HTTP 401" in err, err


@pytest.mark.parametrize("who", ["wrong password", "no login"])
def test_a_login_the_server_refuses_is_exit_2_naming_tracking_uri_and_nothing_is_written(
        team_server, monkeypatch, tmp_path, capsys, who):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", TEAM_USER[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-" + TEAM_USER[1])
    if who == "no login":
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    storage = tmp_path / "runs"
    code = main(["run", LOAD, *[a for o in SMALL for a in ("--set", o)], "--set", f"tracking.uri={team_server.uri}",
                 "--storage", str(storage)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0 and ": tracking.uri: " in err and "HTTP 401" in err, err
    assert "MLFLOW_TRACKING_USERNAME" in err
    assert not storage.exists()  # no experiment folder, no database, no trial


def test_analysis_with_a_refused_login_is_one_analysis_error(team_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", TEAM_USER[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
    with pytest.raises(analysis.AnalysisError, match="refused the login"):
        analysis.load("team-search", team_server.uri)


def test_a_search_with_its_runs_in_postgresql_directly(ray_session, postgres, tmp_path):
    uri = postgres.create_database("direct")
    outcome = search.run(spaces.load(LOAD, [*SMALL, "name=pg-direct", f"storage={tmp_path}", f"tracking.uri={uri}"]))
    assert len(outcome.trials) == 3 and not outcome.tracking_pending
    runs, history = analysis.load("pg-direct", uri)  # the SQL path on PostgreSQL
    client_runs, client_history = analysis.load("pg-direct", uri, method="client")
    assert runs.equals(client_runs, check_metadata=True) and history.equals(client_history)
    assert sorted(runs.column("trial_id").to_pylist()) == sorted(t.trial_id for t in outcome.trials)
    assert "mlflow.db" not in os.listdir(tmp_path)  # no SQLite database beside the results
