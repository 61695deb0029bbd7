"""The search's parent run (search/_parent.py) in a real MLflow store, with made-up outcomes and trials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.entities import Dataset, DatasetInput
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tunelab import _mlflow
from tunelab.search import _parent
from tunelab.search._parent import ParentRun, Progress, describe
from tunelab.search._paths import experiment_dir
from tunelab.search._searcher import REASON_ATTR
from tunelab.search._summary import Outcome, TrialSummary
from tunelab.search._warmstart import OUTSIDE, UNFINISHED, WarmStart
from tunelab.trainables import metrics
from tunelab.trainables import tags


@pytest.fixture
def opened(synthetic, experiment):
    """(search, parent run) of a new search: synthetic_load.yaml with x sampled on a log scale."""
    client, exp_id = experiment
    s = synthetic("space.x={loguniform: [0.01, 1.0]}", "budget.trials=5")
    return s, ParentRun.open(client, exp_id, s, experiment_dir(s), [])


def _child(parent, trial_id, name, status=metrics.COMPLETED):
    """A trial's child run; ended as its status says, RUNNING while "running"."""
    run = parent.client.create_run(parent.experiment_id, run_name=name,
                                   tags={tags.PARENT: parent.run_id, tags.TRIAL_ID: trial_id, tags.STATUS: status})
    if status != "running":
        parent.client.set_terminated(run.info.run_id, _mlflow.run_status(status))
    return run.info.run_id


def _outcome(s, parent, trials, infeasible=0, state=metrics.FINISHED_STATE, reason=None):
    scored = [t for t in trials if t.best is not None]
    best = min(scored, key=lambda t: t.best) if scored else None
    return Outcome(s.spec.name, experiment_dir(s), s.tracking_uri, parent.run_id, "val_loss", "min", trials, infeasible,
                   best, about=describe(s), state=state, reason=reason)


def _trial(trial_id, status, best=None, iterations=4):
    return TrialSummary(trial_id, status, {"x": 0.1}, best, iterations)


def _run(parent):
    return parent.client.get_run(parent.run_id)


def _download(parent, path, tmp_path) -> str:
    return Path(parent.client.download_artifacts(parent.run_id, path, str(tmp_path))).read_text()


def _history(parent, key, run_id=None):
    return [(m.step, m.value) for m in parent.client.get_metric_history(run_id or parent.run_id, key)]


# --- open ---------------------------------------------------------------------------------------


def test_open_records_what_the_search_is_its_file_budget_and_data(synthetic, experiment, tmp_path):
    client, exp_id = experiment
    s = synthetic("space.x={loguniform: [0.01, 1.0]}", "budget.trials=5")
    data = DatasetInput(Dataset("toy", "d1g35t", "local", "{}"))
    parent = ParentRun.open(client, exp_id, s, experiment_dir(s), [data])
    run = _run(parent)
    assert (run.info.run_name, run.info.status, run.info.experiment_id) == ("synthetic-load (search)", "RUNNING",
                                                                            exp_id)
    assert {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.") or k == tags.NOTE} == {
        tags.NOTE: describe(s) + "\n\n*Running*: the trials' table follows when the search ends.",
        tags.SPEC_HASH: s.spec_hash, tags.TRAINABLE: "synthetic", tags.SAMPLER: "tpe", tags.SCHEDULER: "asha",
        tags.STORAGE: str(experiment_dir(s)), tags.OVERRIDES: " ".join(s.overrides), tags.LOG_PARAMS: "x",
    }
    commit = _mlflow.git_commit(Path(_parent.__file__).resolve().parent)
    assert commit and run.data.tags["mlflow.source.git.commit"] == commit  # this checkout's
    assert run.data.params == {"metric": "val_loss", "mode": "min", "trials": "5", "max_concurrent": "2",
                               "total_flops": "None", "time_s": "None", "gpu": "0.0", "fixed.epochs": "4"}
    assert _download(parent, "search/synthetic_load.yaml", tmp_path) == s.text
    assert _download(parent, "search/resolved.yaml", tmp_path) == s.resolved_yaml()
    assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["toy"]
    assert not parent.is_closed()


def test_open_with_a_warm_start_says_where_its_trials_came_from(synthetic, experiment):
    client, exp_id = experiment
    s = synthetic()
    taken = create_trial(state=TrialState.COMPLETE, value=1.3, params={"x": 0.2},
                         distributions={"x": FloatDistribution(-1.0, 1.0)})
    warm = WarmStart("search a in /runs", [taken], {OUTSIDE: 2, UNFINISHED: 1})
    run = _run(ParentRun.open(client, exp_id, s, experiment_dir(s), [], warm))
    assert run.data.tags[tags.WARM_START] == ("search a in /runs: 1 trials taken, 3 skipped "
                                              "(2 outside the space, 1 failed or unfinished)")
    assert (run.data.params["warm_start.taken"], run.data.params["warm_start.skipped"]) == ("1", "3")
    assert tags.LOG_PARAMS in run.data.tags and run.data.tags[tags.LOG_PARAMS] == ""  # x and y are uniform


@pytest.mark.parametrize("args, text", [
    ([], "**synthetic-load**: `synthetic` trials over `x`, `y`; minimise `val_loss`. Sampler TPE, scheduler ASHA on "
         "`epoch`. Budget: 200 trials, 2 at a time."),
    (["scheduler.name=fifo", "budget.total_flops=2.5e12", "budget.time_s=90", "space={}", "mode=max",
      "sampler.name=random"],
     "**synthetic-load**: `synthetic` trials over nothing (fixed config); maximise `val_loss`. Sampler RANDOM, "
     "scheduler no early stopping. Budget: 200 trials, 2 at a time; 2.5e+12 FLOPs in all; 90 s."),
])
def test_describe_says_what_is_searched_how_and_on_what_budget(synthetic, args, text):
    assert describe(synthetic(*args)) == text


# --- close --------------------------------------------------------------------------------------


def test_close_writes_counts_best_trial_note_and_files_and_ends_the_run(opened, tmp_path):
    s, parent = opened
    ids = {t: _child(parent, t, f"t00{i} x=0.1", status)
           for i, (t, status) in enumerate([("a", metrics.STOPPED_EARLY), ("b", metrics.COMPLETED),
                                            ("c", metrics.ERROR)])}
    outcome = _outcome(s, parent, [_trial("a", metrics.STOPPED_EARLY, 2.0, 1), _trial("b", metrics.COMPLETED, 1.2),
                                   _trial("c", metrics.ERROR, None, 0)], infeasible=2)
    dist = {"x": FloatDistribution(-1.0, 1.0)}
    infeasible = [create_trial(state=TrialState.PRUNED, params={"x": x}, distributions=dist,
                               user_attrs={REASON_ATTR: why}) for x, why in ((0.5, "too big"), (-0.5, "too small"))]
    parent.close(outcome, infeasible)
    run = _run(parent)
    counts = {metrics.COMPLETED: 1, metrics.STOPPED_EARLY: 1, metrics.STATUS_DIVERGED: 0, metrics.STATUS_OOM: 0,
              metrics.INFEASIBLE: 2, metrics.ERROR: 1, metrics.INTERRUPTED: 0}
    assert {k: v for k, v in run.data.tags.items() if k.startswith("tunelab.n_")} == {
        tags.count(k): str(v) for k, v in counts.items()}
    assert run.data.tags[tags.STATE] == metrics.FINISHED_STATE and tags.STATE_REASON not in run.data.tags
    # the trials got their runs' names on the way (none had one)
    assert [t.name for t in outcome.trials] == ["t000", "t001", "t002"]
    assert (run.data.tags[tags.BEST_TRIAL], run.data.tags[tags.BEST_TRIAL_ID], run.data.tags[tags.BEST_RUN_ID]) == (
        "t001", "b", ids["b"])
    assert run.data.tags[tags.NOTE] == outcome.note(parent.experiment_id)
    # the counts at the step of the trials ended so far: three (the infeasible never ran)
    assert {k: _history(parent, f"n_{k}") for k in counts} == {k: [(3, float(v))] for k, v in counts.items()}
    assert run.info.status == "FINISHED" and parent.is_closed()
    assert _download(parent, "report/summary.md", tmp_path) == outcome.table() + "\n"
    assert json.loads(_download(parent, "report/infeasible.json", tmp_path)) == [
        {"params": {"x": 0.5}, "reason": "too big"}, {"params": {"x": -0.5}, "reason": "too small"}]


@pytest.mark.parametrize("state, reason, status", [(metrics.FINISHED_STATE, None, "FINISHED"),
                                                   (metrics.INTERRUPTED_STATE, "SIGINT", "KILLED"),
                                                   (metrics.FAILED, "the sampler ran dry", "FAILED")])
def test_the_run_ends_as_mlflow_says_the_search_ended(opened, state, reason, status, tmp_path):
    s, parent = opened
    _child(parent, "a", "t000 x=0.1")
    parent.close(_outcome(s, parent, [_trial("a", metrics.COMPLETED, 1.0)], state=state, reason=reason), [])
    run = _run(parent)
    assert (run.info.status, run.data.tags[tags.STATE], run.data.tags.get(tags.STATE_REASON)) == (status, state, reason)
    assert parent.is_closed() == (state == metrics.FINISHED_STATE)
    assert "report/infeasible.json" not in {a.path for a in parent.client.list_artifacts(parent.run_id, "report")}


def test_an_interrupted_close_ends_the_caught_trials_runs_killed_and_leaves_the_others(opened):
    s, parent = opened
    caught = _child(parent, "a", "t000 x=0.1", "running")
    done = _child(parent, "b", "t001 x=0.1")
    other = _child(parent, "c", "t002 x=0.1", "running")  # running, but not one the interruption caught
    outcome = _outcome(s, parent, [_trial("a", metrics.INTERRUPTED, 2.0, 1), _trial("b", metrics.COMPLETED, 1.5)],
                       state=metrics.INTERRUPTED_STATE, reason="SIGTERM")
    parent.close(outcome, [])
    runs = {r.info.run_id: r for r in parent.children()}
    assert (runs[caught].info.status, runs[caught].data.tags[tags.STATUS]) == ("KILLED", metrics.INTERRUPTED)
    assert runs[caught].data.tags[tags.NOTE] == ("Interrupted (SIGTERM) while it ran; `tunelab resume synthetic-load` "
                                                 "runs it on from its last checkpoint.")
    assert (runs[done].info.status, runs[done].data.tags[tags.STATUS]) == ("FINISHED", metrics.COMPLETED)
    assert (runs[other].info.status, runs[other].data.tags[tags.STATUS]) == ("RUNNING", "running")
    assert _history(parent, f"n_{metrics.INTERRUPTED}") == [(1, 1.0)]  # one trial ended; the caught one has not


def test_a_resumed_search_s_last_summary_is_the_one_mlflow_shows(opened):
    s, parent = opened
    _child(parent, "a", "t000 x=0.1", "running")
    _child(parent, "b", "t001 x=0.1")
    parent.close(_outcome(s, parent, [_trial("a", metrics.INTERRUPTED, 2.0, 1), _trial("b", metrics.COMPLETED, 1.5)],
                          state=metrics.INTERRUPTED_STATE, reason="SIGINT"), [])
    parent.reopen()
    a = next(r for r in parent.children() if r.data.tags[tags.TRIAL_ID] == "a")
    parent.client.set_tag(a.info.run_id, tags.STATUS, metrics.COMPLETED)  # the resumed trial ends
    parent.client.set_terminated(a.info.run_id, "FINISHED")
    parent.close(_outcome(s, parent, [_trial("a", metrics.COMPLETED, 1.1), _trial("b", metrics.COMPLETED, 1.5)]), [])
    run = _run(parent)
    assert run.data.metrics[f"n_{metrics.COMPLETED}"] == 2 and run.data.metrics[f"n_{metrics.INTERRUPTED}"] == 0
    assert _history(parent, f"n_{metrics.COMPLETED}") == [(1, 1.0), (2, 2.0)]
    assert (run.info.status, run.data.tags[tags.STATE], run.data.tags[tags.count(metrics.COMPLETED)]) == (
        "FINISHED", metrics.FINISHED_STATE, "2")
    assert tags.STATE_REASON not in run.data.tags and run.data.tags[tags.BEST_TRIAL_ID] == "a"


# --- reopen, close_anyhow -----------------------------------------------------------------------


def test_reopen_makes_the_parent_and_the_interrupted_trials_running_again(opened):
    s, parent = opened
    caught = _child(parent, "a", "t000 x=0.1", "running")
    done = _child(parent, "b", "t001 x=0.1", metrics.ERROR)
    parent.close(_outcome(s, parent, [_trial("a", metrics.INTERRUPTED), _trial("b", metrics.ERROR)],
                          state=metrics.INTERRUPTED_STATE, reason="SIGINT"), [])
    parent.reopen()
    run = _run(parent)
    assert (run.info.status, run.data.tags[tags.STATE], tags.STATE_REASON in run.data.tags) == (
        "RUNNING", metrics.RUNNING, False)
    runs = {r.info.run_id: r for r in parent.children()}
    assert (runs[caught].info.status, runs[caught].data.tags[tags.STATUS]) == ("RUNNING", "running")
    assert (runs[done].info.status, runs[done].data.tags[tags.STATUS]) == ("FAILED", metrics.ERROR)
    assert not parent.is_closed()
    parent.reopen()  # no reason to remove: no error
    assert _run(parent).data.tags[tags.STATE] == metrics.RUNNING


def test_is_closed_needs_the_summary_not_only_a_finished_run(opened):
    s, parent = opened
    parent.client.set_terminated(parent.run_id, "FINISHED")
    assert not parent.is_closed()


def test_close_anyhow_ends_the_parent_and_the_running_trials_interrupted(opened):
    s, parent = opened
    running = _child(parent, "a", "t000 x=0.1", "running")
    done = _child(parent, "b", "t001 x=0.1")
    parent.close_anyhow("SIGINT; the search could not be summed up: no state")
    run = _run(parent)
    assert (run.info.status, run.data.tags[tags.STATE], run.data.tags[tags.STATE_REASON]) == (
        "KILLED", metrics.INTERRUPTED_STATE, "SIGINT; the search could not be summed up: no state")
    runs = {r.info.run_id: r for r in parent.children()}
    assert (runs[running].info.status, runs[running].data.tags[tags.STATUS]) == ("KILLED", metrics.INTERRUPTED)
    assert (runs[done].info.status, runs[done].data.tags[tags.STATUS]) == ("FINISHED", metrics.COMPLETED)


# --- Progress -----------------------------------------------------------------------------------


def test_progress_keeps_the_running_best_by_mode_and_sums_what_the_ended_trials_spent(opened):
    s, parent = opened
    client = parent.client
    progress = Progress.read(client, parent.run_id, "val_acc", "max")
    assert (progress.ended, progress.best, progress.flops, progress.trial_s) == (0, None, 0.0, 0.0)
    ends = [(None, {metrics.FLOPS: 1e9, metrics.WALL_S: 2.0}),  # never reported its objective
            (0.5, {metrics.FLOPS: 3e9, metrics.WALL_S: 1.5}), (0.4, None), (0.9, {metrics.WALL_S: 0.5})]
    for best, last in ends:
        progress.trial_ended(client, best, last)
    assert _history(parent, "best_val_acc") == [(2, 0.5), (3, 0.5), (4, 0.9)]
    assert _history(parent, "trial_val_acc") == [(2, 0.5), (3, 0.4), (4, 0.9)]
    assert _history(parent, metrics.SEARCH_FLOPS) == [(1, 1e9), (2, 4e9), (3, 4e9), (4, 4e9)]
    assert _history(parent, metrics.SEARCH_TRIAL_S) == [(1, 2.0), (2, 3.5), (3, 3.5), (4, 4.0)]

    again = Progress.read(client, parent.run_id, "val_acc", "max")  # a restarted driver
    assert (again.ended, again.best, again.flops, again.trial_s) == (4, 0.9, 4e9, 4.0)
    again.trial_ended(client, 0.7, {metrics.FLOPS: 1e9})
    assert _history(parent, "best_val_acc")[-1] == (5, 0.9) and _history(parent, metrics.SEARCH_FLOPS)[-1] == (5, 5e9)

    lower = Progress(parent.run_id, "val_loss", "min")
    for best in (2.0, 3.0, 1.0):
        lower.trial_ended(client, best, {})
    assert _history(parent, "best_val_loss") == [(1, 2.0), (2, 2.0), (3, 1.0)]
