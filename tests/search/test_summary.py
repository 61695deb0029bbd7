"""The end of a search (search/_summary.py) with made-up results: Ray's results as small stand-ins
(the attributes ``summarize`` reads), a real Optuna study and, for ``finish``, a real MLflow store."""

from __future__ import annotations

import dataclasses
import math
import types

import optuna
import pandas as pd
import pytest
from mlflow.entities import Run, RunData, RunInfo, RunTag
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tunelab import _mlflow
from tunelab.search._ends import Interruption
from tunelab.search._parent import ParentRun, describe
from tunelab.search._paths import experiment_dir, study_storage
from tunelab.search._searcher import REASON_ATTR, STATUS_ATTR, open_storage
from tunelab.search._summary import Outcome, TrialSummary, finish, summarize, unfinished
from tunelab.trainables import metrics
from tunelab.trainables import tags

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclasses.dataclass
class _Result:
    """What ``summarize`` reads of a ``ray.tune.Result``."""

    metrics: dict | None
    metrics_dataframe: pd.DataFrame | None
    config: dict | None
    path: str | None
    error: BaseException | None = None


def _result(trial_id, values, folder, error=None, **config):
    """A trial that reported ``values`` of val_loss, one per iteration."""
    df = pd.DataFrame({"training_iteration": range(1, len(values) + 1), metrics.VAL_LOSS: values})
    last = {"trial_id": trial_id, "training_iteration": len(values), metrics.VAL_LOSS: values[-1]} if values else {}
    return _Result(last, df if values else None, {"epochs": 4, **config}, f"/runs/s/{folder}", error)


def _outcome(trials, mode="min", infeasible=0, **kw):
    return Outcome("s", None, "sqlite:///x", "parent", "val_loss", mode, trials, infeasible, None, **kw)


def _t(trial_id, best, status=metrics.COMPLETED, **params):
    return TrialSummary(trial_id, status, params, best, 4)


def _study(exp_dir, name):
    """The search's study, with two infeasible trials and one the searcher told COMPLETE."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(storage=open_storage(study_storage(exp_dir)), study_name=name)
    dist = {"x": FloatDistribution(-1.0, 1.0)}

    def trial(state, x, status, **attrs):
        return create_trial(state=state, value=1.0 if state == TrialState.COMPLETE else None, params={"x": x},
                            distributions=dist, user_attrs={STATUS_ATTR: status, **attrs})

    study.add_trials([trial(TrialState.PRUNED, 0.5, metrics.INFEASIBLE, **{REASON_ATTR: "too big"}),
                      trial(TrialState.COMPLETE, 0.1, metrics.COMPLETED),
                      trial(TrialState.PRUNED, -0.5, metrics.INFEASIBLE, **{REASON_ATTR: "too small"})])
    return study


# --- Outcome ---------------------------------------------------------------------------------------


def test_counts_hold_every_status_in_order_and_the_infeasible_of_the_study():
    trials = [_t("a", 1.0), _t("b", 2.0), _t("c", None, metrics.ERROR), _t("d", None, metrics.INTERRUPTED)]
    counts = _outcome(trials, infeasible=3).counts()
    assert list(counts) == list(metrics.STATUSES)
    assert counts == {metrics.COMPLETED: 2, metrics.STOPPED_EARLY: 0, metrics.STATUS_DIVERGED: 0, metrics.STATUS_OOM: 0,
                      metrics.INFEASIBLE: 3, metrics.ERROR: 1, metrics.INTERRUPTED: 1}
    assert [t.trial_id for t in _outcome(trials).errors] == ["c"]


@pytest.mark.parametrize("mode, order", [("min", ["c", "e", "a", "b", "d", "f"]),
                                         ("max", ["a", "e", "c", "b", "d", "f"])])
def test_ranked_puts_the_best_first_and_trials_without_a_finite_value_last_in_their_order(mode, order):
    trials = [_t("a", 3.0), _t("b", None), _t("c", 1.0), _t("d", math.inf), _t("e", 2.0), _t("f", math.nan)]
    assert [t.trial_id for t in _outcome(trials, mode).ranked()] == order


def test_table_rows_are_ranked_with_every_sampled_key_links_and_a_row_limit():
    trials = [TrialSummary("id_a", metrics.STOPPED_EARLY, {"lr": 0.000123456, "cell": "gru"}, 250.123456, 2,
                           name="t000", run_id="r0"),
              TrialSummary("id_b", metrics.COMPLETED, {"lr": 0.5, "layers": 2}, 120.0, 4, name="t001"),
              TrialSummary("id_c", metrics.ERROR, {"lr": 1.0}, None, 0)]
    outcome = _outcome(trials)
    assert outcome.table() == "\n".join([
        "| trial | status | cell | layers | lr | best val_loss | iters |",
        "|---|---|---|---|---|---|---|",
        "| t001 | completed |  | 2 | 0.5 | 120 | 4 |",
        "| t000 | stopped_early | gru |  | 0.0001235 | 250.1 | 2 |",
        "| id_c | error |  |  | 1 |  | 0 |",
    ])
    linked = outcome.table(top=2, link="#/runs/").splitlines()
    assert len(linked) == 4  # the header, its rule and two trials
    assert linked[2].startswith("| t001 | completed")  # no run id, no link
    assert linked[3].startswith("| [t000](#/runs/r0) | stopped_early")


def test_the_note_says_the_outcome_the_counts_and_links_the_best_trial():
    best = TrialSummary("id_b", metrics.COMPLETED, {"x": 0.30000001, "cell": "lstm"}, 1.2500004, 4, name="t001",
                        run_id="r1")
    trials = [TrialSummary("id_a", metrics.STOPPED_EARLY, {"x": -0.5, "cell": "gru"}, 2.5, 1, name="t000", run_id="r0"),
              best]
    outcome = _outcome(trials, infeasible=2, about="**s**: what it was.")
    outcome.best = best
    lines = outcome.note("7").splitlines()
    assert lines[:3] == ["**s**: what it was.", "",
                         "**Outcome**: 2 trials (1 completed, 1 stopped early, 2 infeasible). Best val_loss: **1.25**, "
                         "trial [t001](#/experiments/7/runs/r1) (x=0.3 cell=lstm)."]
    assert lines[3] == "" and "\n".join(lines[4:]) == outcome.table(top=10, link="#/experiments/7/runs/")

    outcome.state, outcome.reason, best.run_id = metrics.INTERRUPTED_STATE, "SIGTERM", ""
    assert outcome.note("7").splitlines()[2] == (
        "**INTERRUPTED** (SIGTERM). **Outcome**: 2 trials (1 completed, 1 stopped early, 2 infeasible). "
        "Best val_loss: **1.25**, trial t001 (x=0.3 cell=lstm).")  # no run: no link
    outcome.best = None
    assert outcome.note("7").splitlines()[2].endswith("2 infeasible).")


def _run(run_id, trial_id, name):
    info = RunInfo(run_id, "1", "me", "FINISHED", 0, None, "active", run_name=name)
    return Run(info, RunData(tags=[RunTag(tags.TRIAL_ID, trial_id)] if trial_id else []))


def test_trials_are_named_as_their_child_runs():
    outcome = _outcome([_t("a", 1.0), _t("b", 2.0), _t("c", 3.0), _t("d", 4.0)])
    outcome.name_trials([_run("r_a", "a", "t003 x=0.1 y=2"), _run("r_b", "b", ""), _run("r_c", "c", None),
                         _run("r_x", None, "t009 x=1")])
    assert [(t.name, t.run_id) for t in outcome.trials] == [("t003", "r_a"), ("b", "r_b"), ("c", "r_c"), ("", "")]
    assert _outcome([]).best_config is None and _outcome([]).best_value is None


# --- summarize ----------------------------------------------------------------------------------


def test_summarize_keeps_each_trial_s_best_and_the_search_s_best_by_mode(synthetic):
    s = synthetic()
    exp_dir = experiment_dir(s)
    _study(exp_dir, s.spec.name)
    grid = [_result("a", [3.0, 2.0, 2.5], "train_a_1", x=0.1, y=0.2),
            _result("b", [1.5, float("nan")], "train_b_2", x=0.3, y=-0.2),
            _result("c", [], "train_c_3", error=RuntimeError("Traceback ...\n  line\nRuntimeError: boom\n"), x=0.9),
            _Result({"trial_id": "d", "training_iteration": 2}, pd.DataFrame({"epoch": [1, 2]}), None,
                    "/runs/s/train_d"),
            _result("e", [math.inf], "train_e_5", x=-1.0, y=1.0)]
    outcome, infeasible = summarize(grid, s, exp_dir, "parent-id")
    got = [(t.trial_id, t.status, t.best, t.iterations, t.params, t.error) for t in outcome.trials]
    assert got == [("a", metrics.STOPPED_EARLY, 2.0, 3, {"x": 0.1, "y": 0.2}, None),
                   ("b", metrics.STOPPED_EARLY, 1.5, 2, {"x": 0.3, "y": -0.2}, None),
                   ("?", metrics.ERROR, None, 0, {"x": 0.9}, "RuntimeError: boom"),
                   ("d", metrics.STOPPED_EARLY, None, 2, {}, None),  # no objective column, no config
                   ("e", metrics.STOPPED_EARLY, math.inf, 1, {"x": -1.0, "y": 1.0}, None)]
    assert outcome.trials[0].config == {"epochs": 4, "x": 0.1, "y": 0.2}
    assert outcome.best.trial_id == "b" and outcome.best_value == 1.5
    assert (outcome.name, outcome.experiment_dir, outcome.parent_run_id) == ("synthetic-load", exp_dir, "parent-id")
    assert (outcome.tracking_uri, outcome.about, outcome.state) == (s.tracking_uri, describe(s), metrics.FINISHED_STATE)
    # the study's infeasible trials: counted, and returned for the parent's report
    assert outcome.infeasible == 2 and outcome.counts()[metrics.INFEASIBLE] == 2
    assert [(t.params, t.user_attrs[REASON_ATTR]) for t in infeasible] == [({"x": 0.5}, "too big"),
                                                                         ({"x": -0.5}, "too small")]

    outcome, _ = summarize(grid, synthetic("mode=max"), exp_dir, "parent-id")
    assert [t.best for t in outcome.trials] == [3.0, 1.5, None, None, math.inf]
    assert outcome.best.trial_id == "a"  # not the infinite one


def test_summarize_calls_the_trials_an_interruption_caught_interrupted_by_their_folder(synthetic):
    s = synthetic()
    exp_dir = experiment_dir(s)
    _study(exp_dir, s.spec.name)
    ran = _result("a", [2.0, 1.9], "train_a_1", x=0.1, y=0.2)
    ran.metrics["finished"] = 0
    never = _Result({}, None, {"epochs": 4, "x": 0.5, "y": 0.5}, "/runs/s/train_b_2")  # waited, never reported
    done = _result("c", [1.0], "train_c_3", x=0.3, y=-0.2)
    done.metrics["finished"] = 1
    outcome, _ = summarize([ran, never, done], s, exp_dir, "p", {"train_a_1": "a", "train_b_2": "b"})
    assert [(t.trial_id, t.status, t.best) for t in outcome.trials] == [
        ("a", metrics.INTERRUPTED, 1.9), ("b", metrics.INTERRUPTED, None), ("c", metrics.COMPLETED, 1.0)]


def test_unfinished_trials_are_the_ones_ray_has_not_ended_by_folder_name():
    trials = [types.SimpleNamespace(trial_id=i, status=status, path=f"/runs/s/train_{i}")
              for i, status in [("a", "TERMINATED"), ("b", "RUNNING"), ("c", "ERROR"), ("d", "PENDING"),
                                ("e", "PAUSED")]]
    assert unfinished(trials) == {"train_b": "b", "train_d": "d", "train_e": "e"}
    assert unfinished([]) == {}


# --- finish -------------------------------------------------------------------------------------


@pytest.fixture
def opened(synthetic, experiment):
    """A search of two trials that reported, its study and its MLflow parent run with a child run each."""
    client, exp_id = experiment
    s = synthetic()
    exp_dir = experiment_dir(s)
    _study(exp_dir, s.spec.name)
    parent = ParentRun.open(client, exp_id, s, exp_dir, [])
    for trial_id, name in (("a", "t000 x=0.1"), ("b", "t001 x=0.3")):
        run = client.create_run(exp_id, run_name=name, tags={tags.PARENT: parent.run_id, tags.TRIAL_ID: trial_id})
        client.set_terminated(run.info.run_id, "FINISHED")
    grid = [_result("a", [2.0], "train_a_1", x=0.1, y=0.2), _result("b", [1.5, 1.2], "train_b_2", x=0.3, y=-0.2)]
    grid[1].metrics["finished"] = 1
    return s, exp_dir, parent, grid


def test_finish_closes_the_parent_with_the_trials_named_as_their_runs(opened):
    s, exp_dir, parent, grid = opened
    outcome = finish(grid, s, exp_dir, parent)
    assert (outcome.state, outcome.reason, outcome.tracking_pending) == (metrics.FINISHED_STATE, None, False)
    assert [(t.name, t.status) for t in outcome.trials] == [("t000", metrics.STOPPED_EARLY),
                                                            ("t001", metrics.COMPLETED)]
    run = parent.client.get_run(parent.run_id)
    assert run.info.status == "FINISHED" and run.data.tags[tags.STATE] == metrics.FINISHED_STATE
    assert run.data.tags[tags.BEST_TRIAL] == "t001" and parent.is_closed()


def test_finish_with_a_failure_or_an_interruption_says_so_on_the_outcome_and_the_parent(opened):
    s, exp_dir, parent, grid = opened
    outcome = finish(grid, s, exp_dir, parent, failure="the sampler ran dry")
    assert (outcome.state, outcome.reason) == (metrics.FAILED, "the sampler ran dry")
    assert parent.client.get_run(parent.run_id).info.status == "FAILED"

    cut = Interruption()
    cut.fault_seen("the disk is full: no room")
    cut.aborted = True
    outcome = finish(grid, s, exp_dir, parent, cut)
    assert (outcome.state, outcome.reason, outcome.fault) == (metrics.INTERRUPTED_STATE, "the disk is full: no room",
                                                              True)
    run = parent.client.get_run(parent.run_id)
    assert run.info.status == "KILLED" and run.data.tags[tags.STATE_REASON] == "the disk is full: no room"

    asked = Interruption()
    asked.signal = "SIGINT"  # came as the last trial ended: never handed to Ray, the budget was run
    assert finish(grid, s, exp_dir, parent, asked).state == metrics.FINISHED_STATE


def test_finish_with_mlflow_unreachable_keeps_the_outcome_and_says_sync_completes_it(opened, monkeypatch):
    s, exp_dir, parent, grid = opened
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    gone = ParentRun(_mlflow.client_for("http://127.0.0.1:9"), parent.experiment_id, parent.run_id)  # nothing listens
    outcome = finish(grid, s, exp_dir, gone)
    assert outcome.tracking_pending and outcome.best.trial_id == "b" and outcome.state == metrics.FINISHED_STATE
    assert not parent.is_closed()
