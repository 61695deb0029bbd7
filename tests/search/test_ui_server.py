"""`tunelab ui`'s server (search/_ui_server.py): what it starts for a search, called directly."""

from __future__ import annotations

import sys

import pytest

from tunelab import spaces
from tunelab.search import _paths, _ui, _ui_server


def _search(storage, name: str, uri: str, experiment_id: str = "7") -> None:
    (storage / name).mkdir(parents=True)
    _paths.write_state(storage / name, {"tracking_uri": uri, "experiment_id": experiment_id})


def test_a_search_on_a_database_gets_one_local_server_and_its_runs_table(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _search(tmp_path, "s", uri)
    server = _ui_server.ui_server(tmp_path, "s", 5123)
    assert not server.remote and server.tracking_uri == uri and server.port == 5123
    assert server.command == [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
                              "--host", "127.0.0.1", "--port", "5123", "--workers", "1"]
    assert server.url == _ui.runs_url("http://127.0.0.1:5123", "7")


def test_without_a_name_the_results_roots_database_and_every_experiment(tmp_path):
    server = _ui_server.ui_server(tmp_path, None, 5000)
    assert server.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert server.url == _ui.runs_url("http://127.0.0.1:5000", None)


def test_a_search_on_a_tracking_server_starts_nothing(tmp_path):
    _search(tmp_path, "team", "http://mlflow.example:5000")
    server = _ui_server.ui_server(tmp_path, "team", 5000)
    assert server.remote and server.command == [] and server.tracking_uri == "http://mlflow.example:5000"


def test_an_unknown_search_is_a_spec_error(tmp_path):
    with pytest.raises(spaces.SpecError, match="no search named 'nope'"):
        _ui_server.ui_server(tmp_path, "nope", 5000)


def test_serve_replaces_this_process_or_opens_a_browser_beside_the_server(tmp_path, monkeypatch):
    _search(tmp_path, "s", f"sqlite:///{tmp_path / 'mlflow.db'}")
    server = _ui_server.ui_server(tmp_path, "s", 5123)
    calls = []

    def execv(path, argv):  # the real one never returns: this process becomes the server
        calls.append(("execv", path, argv))
        raise SystemExit(0)

    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "unset after the test")  # recorded, then gone
    monkeypatch.delenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION")
    monkeypatch.setattr(_ui_server.os, "execv", execv)
    monkeypatch.setattr(_ui_server, "serve_and_open", lambda cmd, url, port: calls.append(("open", cmd, url, port)) or 3)
    with pytest.raises(SystemExit):
        _ui_server.serve(server)
    assert calls == [("execv", sys.executable, server.command)]
    assert _ui_server.os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"  # no background jobs
    assert _ui_server.serve(server, open_browser=True) == 3
    assert calls[1] == ("open", server.command, server.url, 5123)
