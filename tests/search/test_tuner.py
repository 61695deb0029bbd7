"""Tuner assembly (search/_tuner.py): what a search file turns into, without running it. Schedulers are
fed made-up results for unstarted trials, as Ray's own scheduler tests do."""

from __future__ import annotations

import json
import os

import pytest
from ray.tune.experiment import Trial
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import FIFOScheduler, HyperBandScheduler, MedianStoppingRule, TrialScheduler

from tunelab import spaces
from tunelab.search import _console, _tuner
from tunelab.search._children import MLflowTracker
from tunelab.search._ends import EndMarker, InterruptWatch
from tunelab.search._paths import PENDING_FILE, experiment_dir
from tunelab.search._searcher import OptunaSearcher

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def _scheduler(search, n_trials):
    """The search's scheduler, told the objective, with ``n_trials`` unstarted trials added."""
    scheduler = _tuner._scheduler(search.spec)
    scheduler.set_search_properties(search.spec.metric, search.spec.mode)
    trials = [Trial("__fake", stub=True) for _ in range(n_trials)]
    for t in trials:
        scheduler.on_trial_add(None, t)
    return scheduler, trials


def _loss(epoch, value):
    return {"epoch": epoch, "val_loss": value}


def test_asha_stops_at_its_rungs_by_the_file_s_grace_period_reduction_factor_and_max_t(synthetic):
    # synthetic_load.yaml: ASHA on epoch, max_t 4, grace period 1, reduction factor 2
    asha, (a, b, c) = _scheduler(synthetic(), 3)
    assert asha.on_trial_result(None, a, _loss(1, 2.0)) == CONTINUE
    assert asha.on_trial_result(None, b, _loss(1, 3.0)) == STOP  # below the median of rung 1
    assert asha.on_trial_result(None, c, _loss(1, 1.0)) == CONTINUE
    assert asha.on_trial_result(None, c, _loss(2, 0.9)) == CONTINUE
    assert asha.on_trial_result(None, c, _loss(4, 0.5)) == STOP  # max_t
    later, (a, b) = _scheduler(synthetic("scheduler.grace_period=2", "scheduler.max_t=8"), 2)
    assert later.on_trial_result(None, a, _loss(1, 2.0)) == CONTINUE
    assert later.on_trial_result(None, b, _loss(1, 3.0)) == CONTINUE  # no rung before the grace period
    assert later.on_trial_result(None, a, _loss(4, 1.0)) == CONTINUE
    assert later.on_trial_result(None, a, _loss(8, 0.8)) == STOP


def test_hyperband_median_and_fifo_and_the_max_t_of_each_scheduler(synthetic):
    # Ray's own attributes: neither exposes its settings, and the median rule asks Ray's controller
    # for the live trials, so it cannot be fed results without one
    hyperband = _tuner._scheduler(synthetic("scheduler.name=hyperband").spec)
    assert isinstance(hyperband, HyperBandScheduler)
    assert (hyperband._time_attr, hyperband._max_t_attr, hyperband._eta) == ("epoch", 4, 2)
    median = _tuner._scheduler(synthetic("scheduler.name=median", "scheduler.grace_period=3").spec)
    assert isinstance(median, MedianStoppingRule) and (median._time_attr, median._grace_period) == ("epoch", 3)
    assert type(_tuner._scheduler(synthetic("scheduler.name=fifo").spec)) is FIFOScheduler
    assert {name: _tuner._max_t(synthetic(f"scheduler.name={name}").spec)
            for name in ("asha", "hyperband", "median", "fifo")} == {"asha": 4, "hyperband": 4, "median": None,
                                                                     "fifo": None}


def test_the_objective_check_needs_the_progress_attribute_only_of_a_scheduler_that_reads_it(synthetic):
    fifo, asha = (_tuner.objective_check(synthetic(f"scheduler.name={name}")) for name in ("fifo", "asha"))
    assert (fifo.metric, fifo.time_attr, asha.metric, asha.time_attr) == ("val_loss", None, "val_loss", "epoch")
    assert not fifo("t", {"val_loss": 1.0, "training_iteration": 1})
    assert asha("t", {"val_loss": 1.0, "training_iteration": 1})
    assert asha.problem == "the trainable reported no 'epoch' (scheduler.time_attr); it reported: val_loss"


# --- TuneConfig ---------------------------------------------------------------------------------


def _tune_config(search):
    exp_dir = experiment_dir(search)
    exp_dir.mkdir(parents=True, exist_ok=True)
    return _tuner._tune_config(search, exp_dir)


def test_the_tune_config_carries_the_budget_the_objective_and_the_searcher_s_concurrency(synthetic):
    config = _tune_config(synthetic("budget.trials=7", "budget.max_concurrent=2", "budget.time_s=30"))
    assert (config.num_samples, config.metric, config.mode, config.time_budget_s) == (7, "val_loss", "min", 30)
    assert config.reuse_actors is True  # synthetic's trials leave nothing behind in their worker
    assert isinstance(config.scheduler, type(_tuner._scheduler(synthetic().spec)))
    searcher = config.search_alg
    assert isinstance(searcher, OptunaSearcher) and (searcher.metric, searcher.mode) == ("val_loss", "min")
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert set(first) == set(second) == {"x", "y"}
    assert searcher.suggest("c") is None  # two running: budget.max_concurrent


def test_a_torch_family_gets_a_fresh_worker_per_trial(tmp_path):
    assert _tuner._tune_config(spaces.load("ptb_smoke"), tmp_path).reuse_actors is False


def test_grid_points_come_in_turn_unless_optuna_s_grid_sampler_walks_them(synthetic, tmp_path):
    searcher = _tune_config(synthetic("space.x={grid: [0.1, 0.2]}", "budget.max_concurrent=3")).search_alg
    assert [searcher.suggest(t)["x"] for t in "abc"] == [0.1, 0.2, 0.1]
    grid = synthetic("space.x={grid: [0.1, 0.2]}", "space.y={choice: [0.0]}", "sampler.name=grid", "budget.trials=2")
    assert _tuner._tune_config(grid, tmp_path).search_alg._grid == []


# --- RunConfig ----------------------------------------------------------------------------------


def _run_config(search, verbose=False, check=None):
    exp_dir = experiment_dir(search)
    check = check or _tuner.objective_check(search)
    return exp_dir, check, _tuner._run_config(search, exp_dir, "7", "parent-run", verbose, [], check)


def test_the_run_config_orders_its_callbacks_marker_first_tracker_before_the_view(synthetic):
    s = synthetic("budget.max_failures=3")
    exp_dir, check, config = _run_config(s)
    marker, watch, tracker, view, json_logger, csv_logger = config.callbacks
    assert [type(c) for c in config.callbacks] == [EndMarker, InterruptWatch, MLflowTracker, _console.LiveConsole,
                                                   JsonLoggerCallback, CSVLoggerCallback]
    assert (marker.time_attr, marker.max_t) == ("epoch", 4)
    assert (tracker.tracking_uri, tracker.experiment_id, tracker.parent_run_id, tracker.sampled_keys) == (
        s.tracking_uri, "7", "parent-run", ("x", "y"))
    assert (tracker.pending_file, tracker.metric, tracker.mode, tracker.time_attr) == (
        exp_dir / PENDING_FILE, "val_loss", "min", "epoch")
    assert view.label == tracker.trial_label  # the view names a trial as its run is named
    assert (view.trials, view.max_t, view.sampled_keys) == (200, 4, ("x", "y"))
    assert view.header == f"synthetic-load: 200 trials, 2 at a time; Ray's output: {exp_dir / 'ray.log'}"
    assert (config.name, config.storage_path, config.stop) == ("synthetic-load", str(s.storage), check)
    assert config.failure_config.max_failures == 3
    kept = config.checkpoint_config
    assert (kept.num_to_keep, kept.checkpoint_score_attribute, kept.checkpoint_score_order) == (1, "val_loss", "min")


def test_verbose_leaves_the_view_out_and_fifo_marks_every_stop(synthetic):
    _, _, config = _run_config(synthetic("scheduler.name=fifo"), verbose=True)
    assert [type(c) for c in config.callbacks] == [EndMarker, InterruptWatch, MLflowTracker, JsonLoggerCallback,
                                                   CSVLoggerCallback]
    assert config.callbacks[0].max_t is None


def test_a_flop_budget_stops_the_search_beside_the_objective_check(synthetic):
    exp_dir, check, config = _run_config(synthetic("budget.total_flops=1e9"))
    exp_dir.mkdir(parents=True)
    stop = config.stop
    assert stop is not check
    assert not stop("a", {"val_loss": 2.0, "epoch": 1, "flops": 6e8})
    assert not stop.stop_all()
    assert stop("b", {"val_loss": 2.0, "epoch": 1, "flops": 5e8})  # 1.1e9 spent in all
    assert stop.stop_all()
    assert json.loads((exp_dir / "flops_spent.json").read_text()) == {"a": 6e8, "b": 5e8}
    assert check.problem is None

    _, check, config = _run_config(synthetic("budget.total_flops=1e9", "storage=" + str(exp_dir.parent / "other")))
    assert config.stop("a", {"loss": 2.0, "epoch": 1}) and config.stop.stop_all()  # no objective: the check's stop
    assert check.problem.startswith("the trainable reported no 'val_loss' (the search's metric)")


# --- fit -------------------------------------------------------------------------------------


class _Tuner:
    """Stands in for a Tuner: ``fit`` records the environment it ran in, and raises ``error`` if set."""

    def __init__(self, error: BaseException | None = None):
        self.error, self.seen = error, None

    def fit(self):
        self.seen = {k: os.environ.get(k) for k in FIT_KEYS}
        if self.error is not None:
            raise self.error
        return "grid"


FIT_KEYS = (*_tuner._FIT_ENV, "TUNE_MAX_PENDING_TRIALS_PG")


@pytest.mark.parametrize("error", [None, OSError("disk full")])
def test_fit_sets_ray_tune_s_settings_only_while_it_runs(synthetic, monkeypatch, error):
    for key in FIT_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TUNE_DISABLE_SIGINT_HANDLER", "0")  # the user's own
    tuner = _Tuner(error)
    s = synthetic("budget.max_concurrent=3")
    if error is None:
        assert _tuner.fit(tuner, s) == "grid"
    else:
        with pytest.raises(OSError, match="disk full"):
            _tuner.fit(tuner, s)
    assert tuner.seen == {"TUNE_DISABLE_STRICT_METRIC_CHECKING": "1", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
                          "TUNE_DISABLE_SIGINT_HANDLER": "1", "TUNE_MAX_PENDING_TRIALS_PG": "3"}
    assert {k: os.environ.get(k) for k in FIT_KEYS} == {
        "TUNE_DISABLE_STRICT_METRIC_CHECKING": None, "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": None,
        "TUNE_DISABLE_SIGINT_HANDLER": "0", "TUNE_MAX_PENDING_TRIALS_PG": None}
