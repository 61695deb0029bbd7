"""The MLflow callback against a real SQLite store, fed made-up trials and results."""

from __future__ import annotations

import types

from search import _tracking
from trainables import metrics


def _trial(trial_id, **config):
    return types.SimpleNamespace(trial_id=trial_id, config=config, last_result={}, error_file=None)


def _setup(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = _tracking.client_for(uri)
    exp = _tracking.ensure_experiment(client, "e", tmp_path / "art")
    parent = client.create_run(exp, run_name="p").info.run_id
    tracker = _tracking.MLflowTracker(uri, exp, parent, sampled_keys=["lr", "cell"])
    tracker.setup()
    return client, exp, parent, tracker


def test_one_child_per_trial_named_by_number_and_values(tmp_path):
    client, exp, parent, tracker = _setup(tmp_path)
    t = _trial("abc_00003", lr=0.123456, cell="gru", epochs=4)
    tracker.on_trial_start(0, [], t)
    for step in (1, 2):
        tracker.on_trial_result(0, [], t, {"training_iteration": step, "val_ppl": 300.0 / step, "epoch": step,
                                           "trial_id": "abc_00003", "config": {"x": 1}, "done": False})
    t.last_result = {"training_iteration": 2, "finished": 1}
    tracker.on_trial_complete(0, [], t)
    (run,) = _tracking.children(client, exp, parent)
    assert run.info.run_name == "t000 lr=0.123 cell=gru"
    assert run.data.params == {"cell": "gru", "epochs": "4", "lr": "0.123456"}
    assert run.data.tags[_tracking.STATUS_TAG] == metrics.COMPLETED
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val_ppl")
    assert [(m.step, m.value) for m in history] == [(1, 300.0), (2, 150.0)]
    assert set(run.data.metrics) == {"val_ppl", "epoch", "training_iteration"}


def test_a_restarted_driver_reuses_runs_and_skips_logged_steps(tmp_path):
    client, exp, parent, tracker = _setup(tmp_path)
    t = _trial("abc_00000", lr=0.5, cell="lstm")
    tracker.on_trial_start(0, [], t)
    tracker.on_trial_result(0, [], t, {"training_iteration": 1, "val_ppl": 300.0})
    tracker.on_trial_result(0, [], t, {"training_iteration": 2, "val_ppl": 250.0})
    # The driver dies; a new one (fresh callback, as unpickled by Tuner.restore) takes over.
    again = _tracking.MLflowTracker(tracker.tracking_uri, exp, parent, ["lr", "cell"])
    again.setup()
    again.on_trial_start(0, [], t)
    again.on_trial_result(0, [], t, {"training_iteration": 2, "val_ppl": 250.0})  # replayed
    again.on_trial_result(0, [], t, {"training_iteration": 3, "val_ppl": 200.0})
    t.last_result = {"training_iteration": 3}
    again.on_trial_complete(0, [], t)
    (run,) = _tracking.children(client, exp, parent)
    history = client.get_metric_history(run.info.run_id, "val_ppl")
    assert [m.step for m in history] == [1, 2, 3]
    assert run.data.tags[_tracking.STATUS_TAG] == metrics.STOPPED_EARLY


def test_runs_of_trials_ray_never_recorded_are_ended_as_errors(tmp_path):
    client, exp, parent, tracker = _setup(tmp_path)
    done, resumable, lost = _trial("t_done", lr=0.1), _trial("t_mid", lr=0.2), _trial("t_lost", lr=0.3)
    for t in (done, resumable, lost):
        tracker.on_trial_start(0, [], t)
        tracker.on_trial_result(0, [], t, {"training_iteration": 1, "val_ppl": 300.0})
    done.last_result = {"training_iteration": 4, "finished": 1}
    tracker.on_trial_complete(0, [], done)
    # Ray's last snapshot holds t_mid only among the unfinished: a resume cannot continue t_lost.
    assert _tracking.end_lost_runs(client, exp, parent, known={"t_mid"}) == ["t_lost"]
    runs = {r.data.tags[_tracking.TRIAL_ID_TAG]: r for r in _tracking.children(client, exp, parent)}
    assert runs["t_lost"].data.tags[_tracking.STATUS_TAG] == metrics.ERROR
    assert runs["t_lost"].data.tags[_tracking.ERROR_TAG] == _tracking.LOST_MESSAGE
    assert runs["t_lost"].info.status == "FAILED"
    assert runs["t_mid"].data.tags[_tracking.STATUS_TAG] == "running" and runs["t_mid"].info.status == "RUNNING"
    assert runs["t_done"].data.tags[_tracking.STATUS_TAG] == metrics.COMPLETED
    assert _tracking.end_lost_runs(client, exp, parent, known={"t_mid"}) == []  # once only


def test_errored_trial_gets_error_status_and_traceback(tmp_path):
    client, exp, parent, tracker = _setup(tmp_path)
    t = _trial("abc_00001", lr=0.5)
    err = tmp_path / "error.txt"
    err.write_text("Traceback...\nValueError: boom\n")
    t.error_file = str(err)
    tracker.on_trial_start(0, [], t)
    tracker.on_trial_error(0, [], t)
    (run,) = _tracking.children(client, exp, parent)
    assert run.data.tags[_tracking.STATUS_TAG] == metrics.ERROR and run.info.status == "FAILED"
    assert "ValueError: boom" in run.data.tags["tunelab.error"]


def test_unreachable_server_is_a_tracking_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = _tracking.client_for("http://127.0.0.1:9")  # discard port: nothing listens
    try:
        _tracking.ensure_experiment(client, "e", None)
    except _tracking.TrackingError as exc:
        assert "cannot use MLflow at http://127.0.0.1:9" in str(exc)
    else:
        raise AssertionError("expected TrackingError")


def test_an_unreachable_server_is_caught_up_from_rays_results(tmp_path, monkeypatch):
    client, exp, parent, tracker = _setup(tmp_path)
    t = _trial("abc_00002", lr=0.5, cell="lstm")
    t.path, t.local_path, t.status = str(tmp_path / "trial"), None, "RUNNING"
    rows = [{"training_iteration": s, "val_ppl": 300.0 - 50 * s, "timestamp": 1_700_000_000 + s} for s in (1, 2, 3)]
    (tmp_path / "trial").mkdir()
    tracker.on_trial_start(0, [t], t)
    tracker.on_trial_result(0, [t], t, rows[0])

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    good, tracker._client = tracker._client, _tracking.client_for("http://127.0.0.1:9")  # the server is gone
    tracker.on_trial_result(0, [t], t, rows[1])  # no exception: the search goes on
    assert tracker.pending == {"abc_00002"}
    tracker.on_trial_result(0, [t], t, rows[2])  # within RETRY_S: not even tried

    tracker._client, tracker._retry_at = good, 0.0  # the server is back
    (tmp_path / "trial" / "result.json").write_text("\n".join(__import__("json").dumps(r) for r in rows) + "\n")
    t.status, t.last_result = "TERMINATED", {"training_iteration": 3, "finished": 1}
    tracker.on_trial_complete(0, [t], t)
    assert tracker.pending == set()
    (run,) = _tracking.children(client, exp, parent)
    history = client.get_metric_history(run.info.run_id, "val_ppl")
    assert [(m.step, m.value) for m in history] == [(1, 250.0), (2, 200.0), (3, 150.0)]
    assert run.data.tags[_tracking.STATUS_TAG] == metrics.COMPLETED and run.info.status == "FINISHED"


def test_a_tracking_uri_mlflow_cannot_use_is_exit_2_naming_it_and_nothing_is_written(tmp_path, capsys):
    from search.cli import main

    load = str(__import__("spaces").CATALOGUE / "synthetic_load.yaml")
    assert main(["run", load, "--set", "tracking.uri=ftp://x", "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith(f"tunelab: error: {load}: tracking.uri: cannot use MLflow at ftp://x: MLflow has no "
                          "store for the scheme 'ftp'; expected one of sqlite:///PATH, postgresql://"), err
    assert not (tmp_path / "runs").exists()
