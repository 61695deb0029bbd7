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

from tunelab import _mlflow
from tunelab import search
from tunelab import spaces
from tunelab.search import _children
from tunelab.search import load_study
from tunelab.search._searcher import STATUS_ATTR
from tunelab.trainables import metrics
from tunelab.trainables import tags

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
    client = _mlflow.client_for(outcome.tracking_uri)
    parent = client.get_run(outcome.parent_run_id)
    kids = _mlflow.children(client, parent.info.experiment_id, outcome.parent_run_id)
    return outcome, client, parent, kids


def test_asha_stops_some_trials_and_every_trial_has_one_child_run(smoke):
    outcome, client, parent, kids = smoke
    assert len(outcome.trials) == 6
    counts = outcome.counts()
    assert counts[metrics.STOPPED_EARLY] >= 1, counts
    assert counts[metrics.COMPLETED] >= 1, counts
    assert sorted(r.data.tags[tags.TRIAL_ID] for r in kids) == sorted(t.trial_id for t in outcome.trials)
    for run in kids:
        history = client.get_metric_history(run.info.run_id, metrics.VAL_PPL)
        assert [m.step for m in history] == list(range(1, len(history) + 1))
        assert run.data.tags[tags.STATUS] in (metrics.COMPLETED, metrics.STOPPED_EARLY, metrics.STATUS_DIVERGED)
        assert run.info.status == "FINISHED"  # stopped by ASHA is not a failure
        assert float(run.data.params["hidden_size"]) == 32
        # constants once (step 0), the flags once (the last step), the rest at every report
        assert [m.step for m in client.get_metric_history(run.info.run_id, metrics.PARAMS)] == [0]
        for flag in metrics.FLAGS:
            assert [m.step for m in client.get_metric_history(run.info.run_id, flag)] == [len(history)]
        assert run.data.tags[tags.NOTE].startswith(("Completed", "Stopped early", "Diverged"))
        assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["ptb"]


def test_the_parent_logs_one_progress_step_per_trial(smoke):
    outcome, client, parent, kids = smoke
    best = client.get_metric_history(parent.info.run_id, metrics.best_so_far(metrics.VAL_PPL))
    assert [m.step for m in best] == list(range(1, len(outcome.trials) + 1))
    values = [m.value for m in best]
    assert values == sorted(values, reverse=True) and values[-1] == pytest.approx(outcome.best.best)
    trial_values = sorted(m.value for m in client.get_metric_history(parent.info.run_id, "trial_val_ppl"))
    assert trial_values == pytest.approx(sorted(t.best for t in outcome.trials))
    spent = client.get_metric_history(parent.info.run_id, metrics.SEARCH_FLOPS)
    assert [m.step for m in spent] == [m.step for m in best] and spent[-1].value > spent[0].value > 0
    note = parent.data.tags[tags.NOTE]
    assert f"trial [{outcome.best.name}](#/experiments/{parent.info.experiment_id}/runs/{outcome.best.run_id})" in note
    assert parent.data.tags["tunelab.best_trial"] == outcome.best.name and outcome.best.name.startswith("t")
    assert [i.dataset.name for i in parent.inputs.dataset_inputs] == ["ptb"]
    assert (outcome.experiment_dir / "ray.log").stat().st_size > 0  # Ray's output, off the console


def test_parent_names_the_best_trial(smoke):
    outcome, client, parent, kids = smoke
    parent_tags, values = parent.data.tags, parent.data.metrics
    best_run = client.get_run(parent_tags["tunelab.best_run_id"])
    best_hist = client.get_metric_history(best_run.info.run_id, metrics.VAL_PPL)
    all_best = min(m.value for r in kids for m in client.get_metric_history(r.info.run_id, metrics.VAL_PPL))
    assert min(m.value for m in best_hist) == pytest.approx(all_best)
    assert values["best_val_ppl"] == pytest.approx(all_best)
    assert parent_tags["tunelab.best_trial_id"] == best_run.data.tags[tags.TRIAL_ID]
    assert parent_tags["tunelab.sampler"] == "tpe" and parent_tags["tunelab.scheduler"] == "asha"
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
    client = _mlflow.client_for(outcome.tracking_uri)
    exp = client.get_experiment_by_name(outcome.name).experiment_id
    for run in _mlflow.children(client, exp, outcome.parent_run_id):
        assert run.data.tags[tags.STATUS] == metrics.STATUS_DIVERGED
        assert run.data.metrics[metrics.DIVERGED] == 1.0
    assert client.get_run(outcome.parent_run_id).info.status == "FINISHED"


def test_running_the_same_name_twice_is_refused(ray_session, smoke, capsys):
    from tunelab.search.cli import main

    outcome = smoke[0]
    code = main(["run", str(SMOKE), "--storage", str(outcome.experiment_dir.parent)])
    assert code == 2
    assert "tunelab resume ptb-smoke" in capsys.readouterr().err


def _tunelab(*args, **kw):
    return [sys.executable, "-m", "tunelab", *args]


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
        client = client or _mlflow.client_for(f"sqlite:///{db}")
        state = json.loads((tmp_path / "ptb-smoke" / "tunelab.json").read_text())
        kids = _mlflow.children(client, state["experiment_id"], state["parent_run_id"])
        done = [r for r in kids if r.data.tags.get(tags.STATUS) == metrics.COMPLETED]
        if len(done) >= 2 and len(kids) >= 3:
            break
    else:
        pytest.fail("search did not progress in time")
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
    driver.wait()
    before = {r.data.tags[tags.TRIAL_ID] for r in kids}

    proc = subprocess.run(_tunelab("resume", "ptb-smoke", "--storage", str(tmp_path)),
                          capture_output=True, text=True, env=env, timeout=600, start_new_session=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    kids = _mlflow.children(client, state["experiment_id"], state["parent_run_id"])
    ids = [r.data.tags[tags.TRIAL_ID] for r in kids]
    assert len(ids) == len(set(ids)) and before <= set(ids)  # no duplicated child runs, none forgotten
    # budget.trials trials as Ray knows them; a trial started after Ray's last snapshot of its trials
    # cannot be resumed: its run is ended as an error and another trial takes its place.
    ray_ids = {t.trial_id for t in tune.ExperimentAnalysis(str(tmp_path / "ptb-smoke")).trials}
    assert len(ray_ids) == 5 and ray_ids <= set(ids)
    lost = [r for r in kids if r.data.tags[tags.TRIAL_ID] not in ray_ids]
    for r in lost:
        assert r.data.tags[tags.STATUS] == metrics.ERROR and r.info.status == "FAILED"
        assert r.data.tags[tags.ERROR] == _children.LOST_MESSAGE
    kids = [r for r in kids if r.data.tags[tags.TRIAL_ID] in ray_ids]
    # Every trial ran as told (the resumed search's new configs may include one whose lr diverges).
    statuses = [(r.info.run_name, r.info.status, r.data.tags[tags.STATUS]) for r in kids]
    assert all(s in (metrics.COMPLETED, metrics.STATUS_DIVERGED) and st == "FINISHED" for _, st, s in statuses), statuses
    for r in kids:  # each epoch logged once, resumed trials included
        steps = [m.step for m in client.get_metric_history(r.info.run_id, metrics.VAL_PPL)]
        ran = 4 if r.data.tags[tags.STATUS] == metrics.COMPLETED else len(steps)
        assert steps == list(range(1, ran + 1)), (r.info.run_name, steps)
    assert client.get_run(state["parent_run_id"]).info.status == "FINISHED"


def test_ls_lists_the_search_with_counts_and_best(smoke, capsys):
    from tunelab.search.cli import main

    outcome = smoke[0]
    assert main(["ls", "--storage", str(outcome.experiment_dir.parent)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["search", "state", "trials", *metrics.STATUSES, "best"]
    row = out[1].split()
    counts = outcome.counts()
    assert row[:3] == ["ptb-smoke", "FINISHED", "6"]
    assert [int(v) for v in row[3:3 + len(metrics.STATUSES)]] == [counts[s] for s in metrics.STATUSES]
    assert row[3 + len(metrics.STATUSES)] == f"val_ppl={outcome.best.best:.4g}"


def test_report_writes_both_files_and_logs_them_on_the_parent(smoke, tmp_path, capsys):
    from tunelab.search.cli import main

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


# --- the MLflow UI in a real browser -------------------------------------------------------------
# One `tunelab ui` and one headless Chromium (Debian's, as .ci/run installs it) for the tests below,
# on the shared smoke search. Screenshots go to the pytest temp folder (`ui-screens*`).

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def ui(smoke, tmp_path_factory):
    """`tunelab ui` on the smoke search: (the runs-table URL it printed, the server's base URL)."""
    import urllib.request

    from _procs import free_port

    outcome = smoke[0]
    port = free_port()
    log_path = tmp_path_factory.mktemp("ui") / "ui.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(_tunelab("ui", outcome.name, "--storage", str(outcome.experiment_dir.parent),
                                     "--port", str(port)), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail(f"mlflow server did not come up: {log_path.read_text()[-2000:]}")
                time.sleep(1)
        url = next(line.split(": ", 1)[1] for line in log_path.read_text().splitlines()
                   if line.startswith("runs table: "))
        yield url, base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def page(ui, tmp_path_factory):
    """A Chromium page (1400x900) and a function that saves a named screenshot of it."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium), as .ci/run does")
    from playwright.sync_api import sync_playwright

    shots = tmp_path_factory.mktemp("ui-screens")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 900})
        pg.set_default_timeout(60_000)
        pg.shot = lambda name: pg.screenshot(path=str(shots / f"{name}.png"))
        yield pg
        browser.close()


def _open(pg, url: str) -> None:
    """Go to ``url`` once the app has drawn its sidebar, with MLflow's assistant pane closed."""
    pg.goto(url)
    pg.get_by_text("Model training", exact=True).first.wait_for()
    close = pg.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close.count() and close.first.is_visible():
        close.first.click()


NAME_CELL = '[role="gridcell"][col-id="attributes.`Run Name`"]'


def _row(pg, name: str):
    """The runs table's row (all its cells, pinned ones included) of the run whose name starts with ``name``."""
    cell = pg.locator(NAME_CELL, has_text=name).first
    index = cell.locator("xpath=ancestor::*[@role='row'][1]").get_attribute("row-index")
    return pg.locator(f'[role="row"][row-index="{index}"]')


def _status_icon(pg, name: str) -> str:
    """The markup of the status icon in a run's "Created" cell (an SVG, told apart by its class)."""
    return _row(pg, name).locator('[col-id="runDateAndNestInfo"] [role="img"]').first.evaluate("e => e.outerHTML")


def test_ui_opens_the_runs_table_sorted_by_the_objective_with_its_columns(smoke, ui, page):
    outcome, client, parent, kids = smoke
    url, base = ui
    _open(page, url)
    page.get_by_role("columnheader", name="best_val_ppl").first.wait_for()
    page.shot("runs-table")
    assert "/runs" in page.url and "overview" not in page.url  # the runs table, not the GenAI overview
    headers = page.locator('[role="columnheader"]').all_inner_texts()
    for column in ("best_val_ppl", "val_ppl", *outcome.trials[0].params, "tunelab.status"):
        assert any(h.strip() == column for h in headers), (column, headers)
    names = [t.name for t in outcome.ranked()]  # trials, best first; the parent carries the best value too
    shown = [n.splitlines()[-1].split(" ")[0] for n in page.locator(NAME_CELL).all_inner_texts()]  # after its colour
    assert [n for n in shown if n.startswith("t")] == names
    stopped = next(t.name for t in outcome.trials if t.status == metrics.STOPPED_EARLY)
    completed = next(t.name for t in outcome.trials if t.status == metrics.COMPLETED)
    assert _status_icon(page, stopped) == _status_icon(page, completed)  # ASHA-stopped looks finished


def test_ui_parent_expands_to_its_trials_and_a_stopped_trial_is_finished(smoke, ui, page):
    outcome, client, parent, kids = smoke
    url, base = ui
    # MLflow nests child runs only when the table is sorted by creation time.
    _open(page, f"{base}/#/experiments/{parent.info.experiment_id}/runs?workflowType=machine_learning"
                f"&orderByKey=attributes.start_time&orderByAsc=false")
    rows = page.locator(NAME_CELL)
    rows.first.wait_for()
    assert rows.count() == 1  # the search's parent run, collapsed
    _row(page, parent.info.run_name).locator("button").first.click()
    page.wait_for_function("n => document.querySelectorAll('[role=gridcell][col-id=\"attributes.`Run Name`\"]')"
                           ".length == n", arg=1 + len(kids))
    page.shot("parent-expanded")
    stopped = next(t for t in outcome.trials if t.status == metrics.STOPPED_EARLY)
    _open(page, f"{base}/#/experiments/{parent.info.experiment_id}/runs/{stopped.run_id}?workflowType=machine_learning")
    page.get_by_text("Stopped early after epoch").first.wait_for()
    page.shot("stopped-trial")
    body = page.locator("body").inner_text()
    assert "Finished" in body and "Killed" not in body and "Failed" not in body


def test_ui_parent_progress_chart_has_one_point_per_trial(smoke, ui, page):
    outcome, client, parent, kids = smoke
    url, base = ui
    _open(page, f"{base}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}/model-metrics"
                "?workflowType=machine_learning")
    card = page.locator('[data-testid="experiment-view-compare-runs-card"]').filter(
        has=page.get_by_text("best_val_ppl", exact=True)).first
    card.locator("path.point").first.wait_for()
    page.shot("parent-progress")
    assert card.locator(".scatterlayer path.point").count() == len(outcome.trials)


def test_ui_shows_the_report_with_its_figures_in_the_artifact_viewer(smoke, ui, page, tmp_path):
    from tunelab import analysis

    outcome, client, parent, kids = smoke
    url, base = ui
    if "report/report.html" not in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}:
        analysis.report(outcome.name, outcome.tracking_uri, tmp_path / "report", parent_run=parent.info.run_id)
    _open(page, f"{base}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}/artifacts/report/"
                "report.html?workflowType=machine_learning")
    frame = page.frame_locator("iframe.mlflow-html-iframe")
    frame.get_by_role("heading", name=f"Search report: {outcome.name}").wait_for()
    images = frame.locator("figure img")
    assert images.count() >= 3
    images.last.scroll_into_view_if_needed()
    assert all(w > 0 for w in images.evaluate_all("imgs => imgs.map(i => i.naturalWidth)"))
    # the page fits the viewer: wide tables scroll inside their own box, figures shrink to the width
    assert frame.locator("html").evaluate("e => e.scrollWidth <= e.clientWidth")
    assert frame.locator("table td", has_text=outcome.best.name).count() >= 1  # t### names, not Ray's ids
    frame.get_by_role("heading", name="Trials").scroll_into_view_if_needed()
    page.shot("report")
