"""The MLflow callback against a real SQLite store, fed made-up trials and results."""

from __future__ import annotations

import types

from tunelab import _mlflow
from tunelab.search import _children
from tunelab.trainables import metrics
from tunelab.trainables import tags


def _trial(trial_id, **config):
    return types.SimpleNamespace(trial_id=trial_id, config=config, last_result={}, error_file=None, checkpoint=None)


def _setup(tmp_path, **objective):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = _mlflow.client_for(uri)
    exp = _mlflow.ensure_experiment(client, "e", tmp_path / "art")
    parent = client.create_run(exp, run_name="p").info.run_id
    tracker = _children.MLflowTracker(uri, exp, parent, sampled_keys=["lr", "cell"], **objective)
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
    (run,) = _mlflow.children(client, exp, parent)
    assert run.info.run_name == "t000 lr=0.123 cell=gru"
    assert run.data.params == {"cell": "gru", "epochs": "4", "lr": "0.123456"}
    assert run.data.tags[tags.STATUS] == metrics.COMPLETED
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val_ppl")
    assert [(m.step, m.value) for m in history] == [(1, 300.0), (2, 150.0)]
    # the flags once, at the last step, from the trial's last result
    assert set(run.data.metrics) == {"val_ppl", "epoch", "training_iteration", *metrics.FLAGS}
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, metrics.FINISHED)] == [(2, 1.0)]


def test_a_restarted_driver_reuses_runs_and_skips_logged_steps(tmp_path):
    client, exp, parent, tracker = _setup(tmp_path)
    t = _trial("abc_00000", lr=0.5, cell="lstm")
    tracker.on_trial_start(0, [], t)
    tracker.on_trial_result(0, [], t, {"training_iteration": 1, "val_ppl": 300.0})
    tracker.on_trial_result(0, [], t, {"training_iteration": 2, "val_ppl": 250.0})
    # The driver dies; a new one (fresh callback, as unpickled by Tuner.restore) takes over.
    again = _children.MLflowTracker(tracker.tracking_uri, exp, parent, ["lr", "cell"])
    again.setup()
    again.on_trial_start(0, [], t)
    again.on_trial_result(0, [], t, {"training_iteration": 2, "val_ppl": 250.0})  # replayed
    again.on_trial_result(0, [], t, {"training_iteration": 3, "val_ppl": 200.0})
    t.last_result = {"training_iteration": 3}
    again.on_trial_complete(0, [], t)
    (run,) = _mlflow.children(client, exp, parent)
    history = client.get_metric_history(run.info.run_id, "val_ppl")
    assert [m.step for m in history] == [1, 2, 3]
    assert run.data.tags[tags.STATUS] == metrics.STOPPED_EARLY


def test_runs_of_trials_ray_never_recorded_are_ended_as_errors(tmp_path):
    client, exp, parent, tracker = _setup(tmp_path)
    done, resumable, lost = _trial("t_done", lr=0.1), _trial("t_mid", lr=0.2), _trial("t_lost", lr=0.3)
    for t in (done, resumable, lost):
        tracker.on_trial_start(0, [], t)
        tracker.on_trial_result(0, [], t, {"training_iteration": 1, "val_ppl": 300.0})
    done.last_result = {"training_iteration": 4, "finished": 1}
    tracker.on_trial_complete(0, [], done)
    # Ray's last snapshot holds t_mid only among the unfinished: a resume cannot continue t_lost.
    assert _children.end_lost_runs(client, exp, parent, known={"t_mid"}) == ["t_lost"]
    runs = {r.data.tags[tags.TRIAL_ID]: r for r in _mlflow.children(client, exp, parent)}
    assert runs["t_lost"].data.tags[tags.STATUS] == metrics.ERROR
    assert runs["t_lost"].data.tags[tags.ERROR] == _children.LOST_MESSAGE
    assert runs["t_lost"].info.status == "FAILED"
    assert runs["t_mid"].data.tags[tags.STATUS] == "running" and runs["t_mid"].info.status == "RUNNING"
    assert runs["t_done"].data.tags[tags.STATUS] == metrics.COMPLETED
    assert _children.end_lost_runs(client, exp, parent, known={"t_mid"}) == []  # once only


def test_errored_trial_gets_error_status_and_traceback(tmp_path):
    client, exp, parent, tracker = _setup(tmp_path)
    t = _trial("abc_00001", lr=0.5)
    err = tmp_path / "error.txt"
    err.write_text("Traceback...\nValueError: boom\n")
    t.error_file = str(err)
    tracker.on_trial_start(0, [], t)
    tracker.on_trial_error(0, [], t)
    (run,) = _mlflow.children(client, exp, parent)
    assert run.data.tags[tags.STATUS] == metrics.ERROR and run.info.status == "FAILED"
    assert "ValueError: boom" in run.data.tags["tunelab.error"]


def test_unreachable_server_is_a_tracking_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = _mlflow.client_for("http://127.0.0.1:9")  # discard port: nothing listens
    try:
        _mlflow.ensure_experiment(client, "e", None)
    except _mlflow.TrackingError as exc:
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
    good, tracker._client = tracker._client, _mlflow.client_for("http://127.0.0.1:9")  # the server is gone
    tracker.on_trial_result(0, [t], t, rows[1])  # no exception: the search goes on
    assert tracker.pending == {"abc_00002"}
    tracker.on_trial_result(0, [t], t, rows[2])  # within RETRY_S: not even tried

    tracker._client, tracker._retry_at = good, 0.0  # the server is back
    (tmp_path / "trial" / "result.json").write_text("\n".join(__import__("json").dumps(r) for r in rows) + "\n")
    t.status, t.last_result = "TERMINATED", {"training_iteration": 3, "finished": 1}
    tracker.on_trial_complete(0, [t], t)
    assert tracker.pending == set()
    (run,) = _mlflow.children(client, exp, parent)
    history = client.get_metric_history(run.info.run_id, "val_ppl")
    assert [(m.step, m.value) for m in history] == [(1, 250.0), (2, 200.0), (3, 150.0)]
    assert run.data.tags[tags.STATUS] == metrics.COMPLETED and run.info.status == "FINISHED"


def test_a_trial_that_ran_as_told_is_finished_and_only_one_that_raised_failed():
    assert {s: _mlflow.run_status(s) for s in metrics.STATUSES if s != metrics.INFEASIBLE} == {
        metrics.COMPLETED: "FINISHED", metrics.STOPPED_EARLY: "FINISHED", metrics.STATUS_DIVERGED: "FINISHED",
        metrics.STATUS_OOM: "FINISHED", metrics.ERROR: "FAILED", metrics.INTERRUPTED: "KILLED",
    }


def _report(step, **extra):
    return {"training_iteration": step, "epoch": step, "val_ppl": 400.0 - 10 * step, "n_params": 1234.0,
            "n_params_nonembed": 234.0, "diverged": 0, "oom": 0, "finished": 0, "timestamp": 1_700_000_000 + step,
            **extra}


def test_one_report_logs_the_changing_metrics_the_constants_once_and_no_flags():
    first = _children.report_metrics(_report(1), 1, 7, with_constants=True)
    later = _children.report_metrics(_report(2), 2, 7, with_constants=False)
    assert {(m.key, m.step) for m in first} == {("training_iteration", 1), ("epoch", 1), ("val_ppl", 1),
                                                ("n_params", 0), ("n_params_nonembed", 0)}
    assert {(m.key, m.step) for m in later} == {("training_iteration", 2), ("epoch", 2), ("val_ppl", 2)}
    assert {(m.key, m.step, m.value) for m in _children.end_metrics(_report(3, diverged=1), "diverged", 7)} == {
        ("diverged", 3, 1.0), ("oom", 3, 0.0), ("finished", 3, 0.0)}
    # `finished` says whether the trial completed, whether or not its trainable reports the flag
    assert {(m.key, m.value) for m in _children.end_metrics(_report(3), "completed", 7)} == {
        ("diverged", 0.0), ("oom", 0.0), ("finished", 1.0)}
    assert _children.end_metrics({}, "error", 7) == []  # a trial that never reported has no flags


def test_every_number_a_trial_reports_is_logged_and_ray_s_bookkeeping_is_not():
    result = {**_report(2), "val_mae": 0.25, "grad": {"norm": 3.0, "max": 9.0}, "note": "text", "ok": True,
              "done": True, "trial_id": "abc", "pid": 123, "time_this_iter_s": 0.1, "timestamp": 1700000000,
              "config": {"lr": 0.5}, metrics.STOPPED: 1, "time_total_s": 4.5}
    logged = {m.key for m in _children.report_metrics(result, 2, 7, with_constants=False)}
    assert logged == {"training_iteration", "epoch", "val_ppl", "val_mae", "grad/norm", "grad/max", "time_total_s"}


def test_no_constant_or_flag_is_logged_twice_across_a_restart(tmp_path):
    client, exp, parent, tracker = _setup(tmp_path)
    t = _trial("abc_00005", lr=0.5, cell="lstm")
    tracker.on_trial_start(0, [], t)
    tracker.on_trial_result(0, [], t, _report(1))
    tracker.on_trial_result(0, [], t, _report(2))
    again = _children.MLflowTracker(tracker.tracking_uri, exp, parent, ["lr", "cell"])  # the driver restarted
    again.setup()
    again.on_trial_start(0, [], t)
    again.on_trial_result(0, [], t, _report(3, finished=1))
    t.last_result = _report(3, finished=1)
    again.on_trial_complete(0, [], t)
    (run,) = _mlflow.children(client, exp, parent)
    steps = {k: [m.step for m in client.get_metric_history(run.info.run_id, k)]
             for k in ("val_ppl", *metrics.CONSTANTS, *metrics.FLAGS)}
    assert steps == {"val_ppl": [1, 2, 3], "n_params": [0], "n_params_nonembed": [0],
                     "diverged": [3], "oom": [3], "finished": [3]}


def test_the_parent_gets_one_progress_step_per_ended_trial_and_each_child_a_description(tmp_path):
    client, exp, parent, tracker = _setup(tmp_path, metric="val_ppl", mode="min", time_attr="epoch")
    ends = [("abc_0", [300.0, 250.0], {"finished": 1}), ("abc_1", [500.0], {}), ("abc_2", [200.0, 180.0, 260.0],
                                                                               {"diverged": 1})]
    for trial_id, values, flags in ends:
        t = _trial(trial_id, lr=0.1, cell="gru")
        tracker.on_trial_start(0, [], t)
        for step, v in enumerate(values, 1):
            tracker.on_trial_result(0, [], t, {"training_iteration": step, "epoch": step, "val_ppl": v,
                                               "flops": 1e9 * step, "wall_s": 2.0 * step})
        t.last_result = {"training_iteration": len(values), "epoch": len(values), "flops": 1e9 * len(values),
                         "wall_s": 2.0 * len(values), **flags}
        tracker.on_trial_complete(0, [], t)
    history = {k: [(m.step, m.value) for m in client.get_metric_history(parent, k)]
               for k in ("best_val_ppl", "trial_val_ppl", "search_flops", "search_trial_s")}
    assert history == {"best_val_ppl": [(1, 250.0), (2, 250.0), (3, 180.0)],
                       "trial_val_ppl": [(1, 250.0), (2, 500.0), (3, 180.0)],
                       "search_flops": [(1, 2e9), (2, 3e9), (3, 6e9)],
                       "search_trial_s": [(1, 4.0), (2, 6.0), (3, 12.0)]}
    notes = {r.data.tags[tags.TRIAL_ID]: r.data.tags[tags.NOTE]
             for r in _mlflow.children(client, exp, parent)}
    assert notes == {"abc_0": "Completed: ran its whole schedule; best val_ppl 250.",
                     "abc_1": "Stopped early after epoch 1: the scheduler ranked it below its rung; best val_ppl 500.",
                     "abc_2": "Diverged at epoch 3 (loss not finite or above the ceiling); its values are logged "
                              "as they were; best val_ppl 180."}
    # A restarted driver goes on from step 3, with the best so far.
    again = _children.MLflowTracker(tracker.tracking_uri, exp, parent, ["lr", "cell"], metric="val_ppl", mode="min")
    again.setup()
    t = _trial("abc_3", lr=0.2, cell="lstm")
    again.on_trial_start(0, [], t)
    again.on_trial_result(0, [], t, {"training_iteration": 1, "val_ppl": 190.0, "wall_s": 1.0})
    t.last_result = {"training_iteration": 1, "wall_s": 1.0}
    again.on_trial_complete(0, [], t)
    assert [(m.step, m.value) for m in client.get_metric_history(parent, "best_val_ppl")][-1] == (4, 180.0)
    assert [(m.step, m.value) for m in client.get_metric_history(parent, "search_trial_s")][-1] == (4, 13.0)
    assert {r.info.run_name for r in _mlflow.children(client, exp, parent)} >= {"t000 lr=0.1 cell=gru",
                                                                                  "t003 lr=0.2 cell=lstm"}


def test_a_tracking_uri_mlflow_cannot_use_is_exit_2_naming_it_and_nothing_is_written(tmp_path, capsys):
    from tunelab.search.cli import main

    load = str(__import__("spaces").CATALOGUE / "synthetic_load.yaml")
    assert main(["run", load, "--set", "tracking.uri=ftp://x", "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith(f"tunelab: error: {load}: tracking.uri: cannot use MLflow at ftp://x: MLflow has no "
                          "store for the scheme 'ftp'; expected one of sqlite:///PATH, postgresql://"), err
    assert not (tmp_path / "runs").exists()
