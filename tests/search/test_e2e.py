"""Real searches: real Ray Tune, real Optuna, real MLflow (SQLite), real PTB slices.

One small TPE + ASHA search is shared by the tests that only read its results.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState
from ray import tune

import search
import spaces
from search import _tracking
from search import load_study
from search._searcher import STATUS_ATTR
from trainables import metrics

pytestmark = pytest.mark.slow
SMOKE = spaces.CATALOGUE / "ptb_smoke.yaml"
TINY = [
    "hidden_size=32", "train_fraction=0.01", "eval_fraction=0.05", "epochs=3",
    "scheduler.max_t=3", "budget.max_concurrent=2",
]
# LSTM and GRU of width 32 differ in size; this window admits only the LSTM, so every GRU the
# sampler proposes is infeasible (params: LSTM 658,448, GRU 656,336 with a 10,000-word vocabulary).
LSTM_ONLY = "constraints.params=[657000, 700000]"


@pytest.fixture(scope="module")
def smoke(ray_session, tmp_path_factory, data_dir):
    storage = tmp_path_factory.mktemp("smoke")
    s = spaces.load(SMOKE, [*TINY, "budget.trials=6", LSTM_ONLY, f"storage={storage}"])
    outcome = search.run(s)
    client = _tracking.client_for(outcome.tracking_uri)
    parent = client.get_run(outcome.parent_run_id)
    kids = _tracking.children(client, parent.info.experiment_id, outcome.parent_run_id)
    return outcome, client, parent, kids


def test_asha_stops_some_trials_and_every_trial_has_one_child_run(smoke):
    outcome, client, parent, kids = smoke
    assert len(outcome.trials) == 6
    counts = outcome.counts()
    assert counts[metrics.STOPPED_EARLY] >= 1, counts
    assert counts[metrics.COMPLETED] >= 1, counts
    assert sorted(r.data.tags[_tracking.TRIAL_ID_TAG] for r in kids) == sorted(t.trial_id for t in outcome.trials)
    for run in kids:
        history = client.get_metric_history(run.info.run_id, metrics.VAL_PPL)
        assert [m.step for m in history] == list(range(1, len(history) + 1))
        assert run.data.tags[_tracking.STATUS_TAG] in (metrics.COMPLETED, metrics.STOPPED_EARLY, metrics.STATUS_DIVERGED)
        assert float(run.data.params["hidden_size"]) == 32


def test_parent_names_the_best_trial(smoke):
    outcome, client, parent, kids = smoke
    tags, values = parent.data.tags, parent.data.metrics
    best_run = client.get_run(tags["tunelab.best_run_id"])
    best_hist = client.get_metric_history(best_run.info.run_id, metrics.VAL_PPL)
    all_best = min(m.value for r in kids for m in client.get_metric_history(r.info.run_id, metrics.VAL_PPL))
    assert min(m.value for m in best_hist) == pytest.approx(all_best)
    assert values["best_val_ppl"] == pytest.approx(all_best)
    assert tags["tunelab.best_trial_id"] == best_run.data.tags[_tracking.TRIAL_ID_TAG]
    assert tags["tunelab.sampler"] == "tpe" and tags["tunelab.scheduler"] == "asha"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "search")}
    assert artifacts == {"search/ptb_smoke.yaml", "search/resolved.yaml"}
    assert parent.info.status == "FINISHED"


def test_the_study_tells_pruned_complete_and_infeasible_apart(smoke):
    outcome, client, parent, kids = smoke
    study = load_study(outcome.experiment_dir, outcome.name)
    by_status = {}
    for t in study.trials:
        by_status.setdefault(t.user_attrs[STATUS_ATTR], []).append(t)
    for t in by_status[metrics.STOPPED_EARLY]:
        assert t.state == TrialState.PRUNED and t.intermediate_values
    for t in by_status[metrics.COMPLETED]:
        assert t.state == TrialState.COMPLETE
        assert t.value == t.intermediate_values[max(t.intermediate_values)]
    infeasible = by_status.get(metrics.INFEASIBLE, [])
    assert infeasible and all(t.params["cell"] == "gru" and t.constraints["feasible"] > 0 for t in infeasible)
    assert all(t.params["cell"] == "lstm" for ts in by_status.values() for t in ts if t not in infeasible)
    # infeasible configs never became Ray trials or MLflow runs, and the parent counts them
    assert len(kids) == 6 and parent.data.metrics["n_infeasible"] == len(infeasible)


def test_a_huge_learning_rate_diverges_and_the_search_completes(ray_session, tmp_path, data_dir):
    s = spaces.load(SMOKE, [*TINY, "budget.trials=2", "lr=100000", "lr_schedule=constant",
                            "scheduler.name=fifo", f"storage={tmp_path}"])
    outcome = search.run(s)
    assert [t.status for t in outcome.trials] == [metrics.STATUS_DIVERGED] * 2
    client = _tracking.client_for(outcome.tracking_uri)
    exp = client.get_experiment_by_name(outcome.name).experiment_id
    for run in _tracking.children(client, exp, outcome.parent_run_id):
        assert run.data.tags[_tracking.STATUS_TAG] == metrics.STATUS_DIVERGED
        assert run.data.metrics[metrics.DIVERGED] == 1.0
    assert client.get_run(outcome.parent_run_id).info.status == "FINISHED"


def test_running_the_same_name_twice_is_refused(ray_session, smoke, capsys):
    from search.cli import main

    outcome = smoke[0]
    code = main(["run", str(SMOKE), "--storage", str(outcome.experiment_dir.parent)])
    assert code == 2
    assert "tunelab resume ptb-smoke" in capsys.readouterr().err


def _tunelab(*args, **kw):
    return [sys.executable, "-m", "search.cli", *args]


def test_kill_9_the_driver_then_resume(tmp_path, data_dir):
    """The driver dies mid-search; `tunelab resume` finishes it with budget.trials trials, one run each."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [*TINY, "epochs=4", "scheduler.name=fifo", "budget.trials=5", "cell=lstm"]
    sets = [a for x in args for a in ("--set", x)]
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen(_tunelab("run", str(SMOKE), "--storage", str(tmp_path), *sets),
                              stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    db = tmp_path / "mlflow.db"
    deadline = time.time() + 300
    client = None
    while time.time() < deadline:  # wait until some trials finished and others are mid-way
        time.sleep(2)
        if driver.poll() is not None:
            pytest.fail(f"driver ended before it was killed:\n{(tmp_path / 'driver.log').read_text()[-3000:]}")
        if not db.exists() or not (tmp_path / "ptb-smoke" / "tunelab.json").exists():
            continue
        client = client or _tracking.client_for(f"sqlite:///{db}")
        state = json.loads((tmp_path / "ptb-smoke" / "tunelab.json").read_text())
        kids = _tracking.children(client, state["experiment_id"], state["parent_run_id"])
        done = [r for r in kids if r.data.tags.get(_tracking.STATUS_TAG) == metrics.COMPLETED]
        if len(done) >= 2 and len(kids) >= 3:
            break
    else:
        pytest.fail("search did not progress in time")
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
    driver.wait()
    before = {r.data.tags[_tracking.TRIAL_ID_TAG] for r in kids}

    proc = subprocess.run(_tunelab("resume", "ptb-smoke", "--storage", str(tmp_path)),
                          capture_output=True, text=True, env=env, timeout=600, start_new_session=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    kids = _tracking.children(client, state["experiment_id"], state["parent_run_id"])
    ids = [r.data.tags[_tracking.TRIAL_ID_TAG] for r in kids]
    assert len(ids) == len(set(ids)) and before <= set(ids)  # no duplicated child runs, none forgotten
    # budget.trials trials as Ray knows them; a trial started after Ray's last snapshot of its trials
    # cannot be resumed: its run is ended as an error and another trial takes its place.
    ray_ids = {t.trial_id for t in tune.ExperimentAnalysis(str(tmp_path / "ptb-smoke")).trials}
    assert len(ray_ids) == 5 and ray_ids <= set(ids)
    lost = [r for r in kids if r.data.tags[_tracking.TRIAL_ID_TAG] not in ray_ids]
    for r in lost:
        assert r.data.tags[_tracking.STATUS_TAG] == metrics.ERROR and r.info.status == "FAILED"
        assert r.data.tags[_tracking.ERROR_TAG] == _tracking.LOST_MESSAGE
    kids = [r for r in kids if r.data.tags[_tracking.TRIAL_ID_TAG] in ray_ids]
    assert all(r.data.tags[_tracking.STATUS_TAG] == metrics.COMPLETED for r in kids)
    for r in kids:  # each epoch logged once, resumed trials included
        steps = [m.step for m in client.get_metric_history(r.info.run_id, metrics.VAL_PPL)]
        assert steps == [1, 2, 3, 4], (r.info.run_name, steps)
    assert client.get_run(state["parent_run_id"]).info.status == "FINISHED"


def test_ls_lists_the_search_with_counts_and_best(smoke, capsys):
    from search.cli import main

    outcome = smoke[0]
    assert main(["ls", "--storage", str(outcome.experiment_dir.parent)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["search", "state", "trials", *metrics.STATUSES, "best"]
    row = out[1].split()
    counts = outcome.counts()
    assert row[:3] == ["ptb-smoke", "FINISHED", "6"]
    assert [int(v) for v in row[3:9]] == [counts[s] for s in metrics.STATUSES]
    assert row[9] == f"val_ppl={outcome.best.best:.4g}"


def test_ui_serves_the_search_database_on_loopback(smoke):
    import socket
    import urllib.request

    outcome = smoke[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(_tunelab("ui", outcome.name, "--storage", str(outcome.experiment_dir.parent),
                                     "--port", str(port)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    proc.kill()
                    pytest.fail(f"mlflow server did not come up: {proc.stdout.read().decode()[-2000:]}")
                time.sleep(1)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name={outcome.name}")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert json.load(r)["experiment"]["name"] == outcome.name
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def test_report_writes_both_files_and_logs_them_on_the_parent(smoke, tmp_path, capsys):
    from search.cli import main

    outcome, client, parent, kids = smoke
    storage = str(outcome.experiment_dir.parent)
    assert main(["report", outcome.name, "--storage", storage, "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert f"{len(outcome.trials)} trials ran" in md and (tmp_path / "rep" / "report.html").stat().st_size > 0
    logged = {a.path for a in client.list_artifacts(outcome.parent_run_id, "report")}
    assert {"report/report.md", "report/report.html"} <= logged

    capsys.readouterr()
    assert main(["report", "no-such-search", "--storage", storage]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no search named 'no-such-search'" in err[0]
    assert not (outcome.experiment_dir.parent / "no-such-search").exists()
