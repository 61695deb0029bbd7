"""Bringing MLflow and the study level with Ray's records (search/_replay.py), on the session's tiny real
search (``_tiny``): replayed into a new store, as if the tracking server had been down all along."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from _tiny import RECORDS, fresh_parent, records
from tunelab import _mlflow, spaces
from tunelab.search._parent import ParentRun
from tunelab.search._paths import PENDING_FILE, SEARCH_FILE, load_study
from tunelab.search._replay import BUDGET_STOP, end_stopped, replay
from tunelab.search._searcher import RAY_TRIAL_ATTR, STATUS_ATTR
from tunelab.trainables import metrics
from tunelab.trainables import tags

pytestmark = pytest.mark.slow
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _search(exp_dir):
    return spaces.load(exp_dir / SEARCH_FILE)


def _ids(outcome):
    """The tiny search's Ray trial ids by name (t000...)."""
    return {t.name: t.trial_id for t in outcome.trials}


def _runs(parent, outcome):
    """The child runs by the name the tiny search's trials had when it ran (replay numbers them anew)."""
    by_id = {r.data.tags[tags.TRIAL_ID]: r for r in parent.children()}
    return {name: by_id[trial_id] for name, trial_id in _ids(outcome).items()}


def _values(parent, run):
    return [m.value for m in parent.client.get_metric_history(run.info.run_id, metrics.VAL_LOSS)]


def test_replay_brings_back_every_trial_with_each_step_once_and_its_end(tiny_search, tmp_path):
    exp_dir = tiny_search.experiment_dir
    parent = fresh_parent(exp_dir, tmp_path)
    analysis = replay(exp_dir, _search(exp_dir), parent)
    assert sorted(t.trial_id for t in analysis.trials) == sorted(_ids(tiny_search).values())
    assert records(parent) == RECORDS
    runs = _runs(parent, tiny_search)
    # what the search's own callback recorded as it ran, value for value
    client = _mlflow.client_for(tiny_search.tracking_uri)
    live = ParentRun(client, client.get_run(tiny_search.parent_run_id).info.experiment_id, tiny_search.parent_run_id)
    assert records(live) == RECORDS
    assert {name: _values(parent, run) for name, run in runs.items()} == {
        name: _values(live, run) for name, run in _runs(live, tiny_search).items()}
    assert _values(parent, runs["t001"]) == pytest.approx([2.0, 1.5, 1 + 1 / 3, 1.25])  # the synthetic curve
    best = runs["t001"]
    assert best.data.params == {"x": "0.3", "y": "-0.2", "fail_at_epoch": "0", "epochs": "4", "floor": "1.0",
                                "sleep_s": "0.0", "checkpoint": "False", "seed": "0"}
    assert "RuntimeError: synthetic failure at epoch 2" in runs["t000"].data.tags[tags.ERROR]
    # the parent's progress: one step per ended trial
    trial_values = sorted(m.value for m in parent.client.get_metric_history(parent.run_id, "trial_val_loss"))
    assert trial_values == pytest.approx([1.25, 2.13, 5.13])
    progress = parent.client.get_metric_history(parent.run_id, "best_val_loss")
    assert [m.step for m in progress] == [1, 2, 3] and progress[-1].value == pytest.approx(1.25)

    replay(exp_dir, _search(exp_dir), parent)  # again: nothing twice
    assert records(parent) == RECORDS
    assert [m.step for m in parent.client.get_metric_history(parent.run_id, "best_val_loss")] == [1, 2, 3]


def test_replay_of_some_trials_leaves_the_pending_mark_and_of_all_removes_it(tiny_copy, tmp_path, tiny_search):
    parent = fresh_parent(tiny_copy, tmp_path)
    (tiny_copy / PENDING_FILE).write_text('["x"]')
    replay(tiny_copy, _search(tiny_copy), parent, only={_ids(tiny_search)["t001"]})
    assert records(parent) == [("FINISHED", metrics.COMPLETED, [1, 2, 3, 4])]
    assert (tiny_copy / PENDING_FILE).exists()
    replay(tiny_copy, _search(tiny_copy), parent)
    assert records(parent) == RECORDS
    assert not (tiny_copy / PENDING_FILE).exists()


def test_a_trial_the_budget_stopped_says_so_in_its_description(tiny_search, tmp_path):
    exp_dir = tiny_search.experiment_dir
    parent = fresh_parent(exp_dir, tmp_path)
    replay(exp_dir, _search(exp_dir), parent, budget_stopped={_ids(tiny_search)["t002"]})
    notes = {name: run.data.tags[tags.NOTE] for name, run in _runs(parent, tiny_search).items()}
    assert notes == {
        "t000": "Failed: the trial raised after epoch 1 (traceback in tag tunelab.error); best val_loss 2.13.",
        "t001": "Completed: ran its whole schedule; best val_loss 1.25.",
        "t002": f"Stopped early after epoch 1: {BUDGET_STOP}; best val_loss 5.13.",
    }


def test_end_stopped_tells_the_study_of_trials_ray_ended_and_leaves_the_others(tiny_search, tiny_copy, tmp_path):
    s = _search(tiny_search.experiment_dir)
    assert end_stopped(tiny_search.experiment_dir, s) == set()  # every trial of the study has ended
    empty = tmp_path / "empty"
    empty.mkdir()
    assert end_stopped(empty, s) == set()  # no study: the search stopped before its first suggestion

    # As a stopper that ends the whole search leaves them: Ray ended t002, its Optuna trial still RUNNING;
    # t001 is still running in Ray's last snapshot, as an interrupted driver leaves it (resume continues it).
    ids = _ids(tiny_search)
    _running_in_snapshot(tiny_copy, ids["t001"])
    study = load_study(tiny_copy, s.spec.name)
    stopped, resumable, unknown = study.ask(), study.ask(), study.ask()
    for trial, ray_id in ((stopped, ids["t002"]), (resumable, ids["t001"]), (unknown, "never_a_ray_trial")):
        trial.set_user_attr(RAY_TRIAL_ATTR, ray_id)
    assert end_stopped(tiny_copy, s) == {ids["t002"]}
    trials = {t.number: t for t in load_study(tiny_copy, s.spec.name).trials}
    told = trials[stopped.number]
    assert (told.state, told.user_attrs[STATUS_ATTR]) == (TrialState.PRUNED, metrics.STOPPED_EARLY)
    assert told.intermediate_values == pytest.approx({1: 5.13})
    assert trials[resumable.number].state == trials[unknown.number].state == TrialState.RUNNING
    assert end_stopped(tiny_copy, s) == set()  # told once


def _running_in_snapshot(exp_dir, trial_id):
    """Ray's last snapshot of the trials (its file format: a JSON state per trial), with ``trial_id`` RUNNING."""
    path = next(exp_dir.glob("experiment_state-*.json"))
    state = json.loads(path.read_text())
    for entry in state["trial_data"]:
        trial = json.loads(entry[0])
        if trial["trial_id"] == trial_id:
            assert trial["status"] == "TERMINATED"
            entry[0] = json.dumps({**trial, "status": "RUNNING"})
    path.write_text(json.dumps(state))
