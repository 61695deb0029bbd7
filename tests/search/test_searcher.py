"""Searcher decisions with made-up results: what Optuna is told for each way a trial ends."""

from __future__ import annotations

import math
import cloudpickle

import optuna
import pytest
from optuna.trial import TrialState

from tunelab import spaces
from tunelab.search._samplers import make_sampler
from ray.tune.search import Searcher

from tunelab.search._searcher import EXHAUSTED_ATTR, REASON_ATTR, STATUS_ATTR, OptunaSearcher, first_feasible
from tunelab.spaces._schema import Param
from tunelab.trainables import metrics

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _searcher(tmp_path, check=lambda cfg: None, grid=(), points=(), max_infeasible=200, storage="optuna.log",
              max_concurrent=0, **params):
    params = params or {"lr": {"loguniform": [0.01, 1.0]}, "cell": {"choice": ["lstm", "gru"]}}
    space = spaces.CompiledSpace({k: Param(**v) for k, v in params.items()}, fixed={})
    return OptunaSearcher(
        space=space, make_sampler=lambda restart=0: optuna.samplers.RandomSampler(seed=restart),
        storage=storage if "://" in storage else tmp_path / storage, study_name="s", metric="val_ppl", mode="min",
        base_config={"epochs": 4}, check=check, grid_points=list(grid), points_to_evaluate=list(points),
        max_infeasible=max_infeasible, max_concurrent=max_concurrent,
    )


def _result(step, value, **extra):
    return {"training_iteration": step, "val_ppl": value, **extra}


def test_stopped_trial_is_pruned_with_its_intermediate_values(tmp_path):
    s = _searcher(tmp_path)
    s.suggest("a")
    s.on_trial_result("a", _result(1, 300.0))
    # ASHA's STOP decision: this result never reaches on_trial_result, only on_trial_complete, marked
    # by the driver as the result at which Ray stopped the trial (search/_ends.py).
    s.on_trial_complete("a", _result(2, 250.0, done=True, **{metrics.STOPPED: 1}))
    (t,) = s.study.trials
    assert t.state == TrialState.PRUNED
    assert t.intermediate_values == {1: 300.0, 2: 250.0}
    assert t.user_attrs[STATUS_ATTR] == metrics.STOPPED_EARLY


def test_finished_trial_is_complete_with_its_final_value(tmp_path):
    s = _searcher(tmp_path)
    s.suggest("a")
    for step, v in enumerate([300.0, 200.0, 150.0], start=1):
        s.on_trial_result("a", _result(step, v))
    s.on_trial_complete("a", _result(4, 140.0, finished=1, done=True))
    (t,) = s.study.trials
    assert t.state == TrialState.COMPLETE and t.value == 140.0
    assert t.intermediate_values == {1: 300.0, 2: 200.0, 3: 150.0, 4: 140.0}


def test_a_trial_that_returned_without_reporting_finished_is_complete(tmp_path):
    s = _searcher(tmp_path)
    s.suggest("a")
    for step, v in enumerate([300.0, 200.0], start=1):
        s.on_trial_result("a", _result(step, v))
    s.on_trial_complete("a", _result(2, 200.0, done=True))  # Ray's `done` on the last result: it returned
    (t,) = s.study.trials
    assert t.state == TrialState.COMPLETE and t.value == 200.0
    assert t.user_attrs[STATUS_ATTR] == metrics.COMPLETED


def test_diverged_trial_is_complete_with_the_worst_value_and_errors_fail(tmp_path):
    s = _searcher(tmp_path)
    s.suggest("d")
    s.suggest("e")
    s.suggest("o")
    s.on_trial_complete("d", _result(1, math.nan, diverged=1))
    s.on_trial_complete("e", None, error=True)
    s.on_trial_complete("o", _result(1, 500.0, oom=1))
    d, e, o = s.study.trials
    assert d.state == TrialState.COMPLETE and d.value == math.inf
    assert e.state == TrialState.FAIL and e.user_attrs[STATUS_ATTR] == metrics.ERROR
    assert o.state == TrialState.PRUNED and o.constraints == {"fits_memory": 1.0}


def test_infeasible_configs_are_told_infeasible_and_replaced(tmp_path):
    s = _searcher(tmp_path, check=lambda cfg: "gru too big" if cfg["cell"] == "gru" else None)
    configs = [s.suggest(str(i)) for i in range(6)]
    assert all(c["cell"] == "lstm" for c in configs)
    infeasible = [t for t in s.study.trials if t.user_attrs.get(STATUS_ATTR) == metrics.INFEASIBLE]
    assert infeasible, "random sampling over two cells must have proposed gru"
    for t in infeasible:
        assert t.state == TrialState.PRUNED and t.constraints == {"feasible": 1.0}
        assert t.params["cell"] == "gru" and t.user_attrs[REASON_ATTR] == "gru too big"
    running = s.study.get_trials(states=(TrialState.RUNNING,))
    assert len(running) == 6  # only feasible ones became trials


def test_a_space_that_runs_out_of_feasible_configs_ends_the_search_and_says_why(tmp_path):
    s = _searcher(tmp_path, check=lambda cfg: "never", max_infeasible=10)
    assert s.suggest("a") == Searcher.FINISHED
    assert len(s.study.trials) == 10
    assert s.study.user_attrs[EXHAUSTED_ATTR].startswith("the sampler proposed 10 infeasible configs in a row "
                                                         "(the last: never)")


def test_first_feasible_finds_a_feasible_config_or_says_why_there_is_none():
    space = spaces.CompiledSpace({"lr": Param(loguniform=[0.01, 1.0])}, fixed={})
    assert first_feasible(space, {}, lambda cfg: None if cfg["lr"] > 0.9 else "too small") is None
    assert first_feasible(space, {}, lambda cfg: f"lr={cfg['lr']:.2f} too small", draws=20).startswith("lr=")


def test_grid_points_each_tried_once_before_repeating(tmp_path):
    grid = [{"cell": c} for c in ("lstm", "gru")]
    s = _searcher(tmp_path, grid=grid)
    cells = [s.suggest(str(i))["cell"] for i in range(4)]
    assert cells == ["lstm", "gru", "lstm", "gru"]


def test_the_grid_sampler_runs_every_point_with_every_seed(tmp_path):
    # seed: {grid: [0, 1]} beside another grid parameter: each (model, seed) once; telling the last
    # point used to raise (Optuna's grid sampler stops the study, which only works inside optimize()).
    path = tmp_path / "g.yaml"
    path.write_text("name: g\ntrainable: arith\nmetric: val_acc\nmode: max\n"
                    "space: {model: {grid: [gpt, lstm]}, seed: {grid: [0, 1]}}\n"
                    "sampler: {name: grid}\nscheduler: {name: fifo}\nbudget: {trials: 4}\n")
    search = spaces.load(path)
    s = OptunaSearcher(
        space=search.space, make_sampler=lambda restart=0: make_sampler(search, restart), storage=tmp_path / "optuna.log",
        study_name="g", metric="val_acc", mode="max", base_config=search.base_config, check=lambda cfg: None,
    )
    configs = [s.suggest(str(i)) for i in range(2)]  # two at a time, as max_concurrent 2 runs them
    for i in range(2):
        s.on_trial_complete(str(i), {"training_iteration": 1, "val_acc": 0.5, "finished": 1})
        configs.append(s.suggest(str(i + 2)))
    for i in range(2, 4):
        s.on_trial_complete(str(i), {"training_iteration": 1, "val_acc": 0.5, "finished": 1})
    assert sorted((c["model"], c["seed"]) for c in configs) == [("gpt", 0), ("gpt", 1), ("lstm", 0), ("lstm", 1)]
    assert [t.state for t in s.study.trials] == [TrialState.COMPLETE] * 4


def test_points_to_evaluate_come_first(tmp_path):
    s = _searcher(tmp_path, points=[{"lr": 0.5, "cell": "gru"}, {"lr": 0.02, "cell": "lstm"}])
    assert s.suggest("a") == {"lr": 0.5, "cell": "gru"}
    assert s.suggest("b") == {"lr": 0.02, "cell": "lstm"}


def test_a_restored_searcher_does_not_propose_the_configs_it_proposed_before(tmp_path):
    """The sampler is rebuilt after a restore: reseeded from the study's size, it draws a new stream;
    warm-start and grid points asked after the last snapshot are not asked again."""
    grid = [{"cell": c} for c in ("lstm", "gru")]
    points = [{"lr": 0.5}, {"lr": 0.02}]
    s = _searcher(tmp_path, grid=grid, points=points)
    s.save(str(tmp_path / "state.pkl"))  # Ray's snapshot, before any trial
    asked = [s.suggest(str(i)) for i in range(4)]
    for i in range(4):
        s.on_trial_complete(str(i), _result(4, 100.0 + i, finished=1))
    fresh = _searcher(tmp_path, grid=grid, points=points)
    fresh.restore(str(tmp_path / "state.pkl"))  # the driver died after the 4 trials, before a snapshot
    again = [fresh.suggest(str(i)) for i in range(4, 8)]
    assert [c["lr"] for c in asked[:2]] == [0.5, 0.02]
    assert [c["cell"] for c in asked + again] == ["lstm", "lstm", "lstm", "gru", "lstm", "gru", "lstm", "gru"]
    lrs = [c["lr"] for c in asked + again]
    assert len(set(lrs)) == 8, lrs


@pytest.mark.parametrize("storage", ["optuna.log", "sqlite:///{tmp_path}/optuna.db"])
def test_save_and_restore_keeps_running_trials(tmp_path, storage):
    storage = storage.format(tmp_path=tmp_path)
    s = _searcher(tmp_path, storage=storage)
    s.suggest("a")
    s.on_trial_result("a", _result(1, 300.0))
    cloudpickle.dumps(s)  # Ray pickles the searcher into tuner.pkl
    s.save(str(tmp_path / "state.pkl"))
    s.suggest("orphan")  # asked after the last save, then the driver dies
    fresh = _searcher(tmp_path, storage=storage)
    fresh.restore(str(tmp_path / "state.pkl"))
    fresh.on_trial_result("a", _result(2, 200.0))
    fresh.on_trial_complete("a", _result(3, 180.0, finished=1))
    a, orphan = fresh.study.trials
    assert a.state == TrialState.COMPLETE and a.intermediate_values == {1: 300.0, 2: 200.0, 3: 180.0}
    assert orphan.state == TrialState.FAIL


def test_a_trial_told_after_the_last_save_is_not_told_twice(tmp_path):
    # The driver saved the searcher, then trial "a" finished and was told, then the driver was killed
    # before Ray's next snapshot: the resumed search runs "a" again from its checkpoint.
    s = _searcher(tmp_path)
    s.suggest("a")
    s.on_trial_result("a", _result(1, 300.0))
    s.save(str(tmp_path / "state.pkl"))
    s.on_trial_complete("a", _result(2, 250.0, finished=1))
    fresh = _searcher(tmp_path)
    fresh.restore(str(tmp_path / "state.pkl"))
    fresh.on_trial_result("a", _result(2, 260.0))
    fresh.on_trial_complete("a", _result(2, 260.0, finished=1))
    (a,) = fresh.study.trials
    assert a.state == TrialState.COMPLETE and a.value == 250.0
    assert a.intermediate_values == {1: 300.0, 2: 250.0}


def test_a_journal_cut_short_by_a_killed_driver_reopens(tmp_path):
    s = _searcher(tmp_path)
    s.suggest("a")
    s.on_trial_complete("a", _result(4, 140.0, finished=1))
    s.save(str(tmp_path / "state.pkl"))
    with open(tmp_path / "optuna.log", "ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "x", "trial_id": 1, "ste')  # killed mid-write
    fresh = _searcher(tmp_path)
    fresh.restore(str(tmp_path / "state.pkl"))
    fresh.suggest("b")
    fresh.on_trial_complete("b", _result(4, 150.0, finished=1))
    assert [(t.state, t.value) for t in fresh.study.trials] == [(TrialState.COMPLETE, 140.0),
                                                               (TrialState.COMPLETE, 150.0)]
    assert (tmp_path / "optuna.log").read_bytes().endswith(b"\n")


def test_at_most_max_concurrent_trials_run_at_once(tmp_path):
    s = _searcher(tmp_path, max_concurrent=2)
    assert s.suggest("a") and s.suggest("b")
    assert s.suggest("c") is None
    s.on_trial_complete("a", _result(4, 100.0, finished=1))
    assert s.suggest("c")
