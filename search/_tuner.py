"""Tuner assembly: a validated search file -> a ``ray.tune.Tuner`` (new, or restored from its folder).

The Optuna searcher (which keeps the concurrency limit), the scheduler, the budget stoppers, the MLflow
callback, the failure and checkpoint policy, and the trainable with its data in the object store.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule
from ray.tune.search import BasicVariantGenerator
from ray.tune.stopper import CombinedStopper

from tunelab import _private, spaces
from tunelab.search import _console, _population
from tunelab.search._budget import FlopBudgetStopper
from tunelab.search._children import MLflowTracker
from tunelab.search._ends import EndMarker, InterruptWatch, ObjectiveCheck
from tunelab.search._paths import PENDING_FILE, study_storage
from tunelab.search._samplers import make_sampler
from tunelab.search._searcher import OptunaSearcher

# Trials here checkpoint every epoch, often seconds apart; Ray's warning about frequent experiment
# snapshots would repeat after every report.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Ray Tune's settings for a tunelab search, in force while it runs (``fit``) and not after, so that a
# user's own Ray Tune code in the same process keeps Ray's defaults:
# - a report without the objective ends the search through ``_ends.ObjectiveCheck`` (one line naming
#   what was reported), not through Ray's check, which raises from inside its loop;
# - Ray's result loggers are the ones ``_run_config`` names, its JSON and CSV files (which resume, sync
#   and Ray's ExperimentAnalysis read), and not TensorBoard event files, which nothing here reads
#   (MLflow is the record) and whose logger's import alone costs a search 1.5 s at its start.
# - Ctrl-C is ``_ends.Interruption``'s (SIGINT and SIGTERM alike), which hands it to Ray's loop.
_FIT_ENV = {"TUNE_DISABLE_STRICT_METRIC_CHECKING": "1", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
            "TUNE_DISABLE_SIGINT_HANDLER": "1"}


def fit(tuner: tune.Tuner, search: spaces.Search) -> tune.ResultGrid:
    """``tuner.fit()`` under tunelab's Ray Tune settings (``_FIT_ENV``), restored afterwards.

    Ray starts as many trials at once as a ``ConcurrencyLimiter`` around the searcher allows, and one
    at a time for any other searcher; tunelab's searcher keeps ``budget.max_concurrent`` itself
    (``OptunaSearcher``), so Ray is told the same number (``TUNE_MAX_PENDING_TRIALS_PG``).
    """
    env = {**_FIT_ENV, "TUNE_MAX_PENDING_TRIALS_PG": str(search.spec.budget.max_concurrent)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return tuner.fit()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

def init_ray(address: str | None) -> bool:
    """Start (or connect to) Ray unless this process has; True if it did.

    A Ray this process starts for itself runs without its dashboard: tunelab's console and MLflow show
    the search, and the dashboard's processes cost a small machine a second or two of every search's
    start (a cluster's Ray, reached through ``address``, keeps its own).
    """
    if ray.is_initialized():
        return False
    local = (address or os.environ.get("RAY_ADDRESS") or "local") == "local"
    # Nor does it export metrics: Ray's Prometheus exporter, which nothing of tunelab reads, listens on
    # every interface of the machine without a login (Ray's own gRPC ports ask for its token). A
    # cluster's Ray keeps the settings it was started with.
    extra = {"include_dashboard": False, "_system_config": {"enable_metrics_collection": False}} if local else {}
    ray.init(address=address, configure_logging=False, **extra)
    return True


def shutdown_ray() -> None:
    ray.shutdown()


def new_tuner(search: spaces.Search, data: Any, exp_dir: Path, exp_id: str, parent: str, *,
              verbose: bool = False, inputs: list | None = None,
              check: ObjectiveCheck | None = None, population: _population.Population | None = None) -> tune.Tuner:
    """A Tuner for a search launched from the beginning.

    Args:
        verbose: Ray's own progress output instead of the live view (``_console``).
        inputs: dataset inputs for every child run.
        check: the stopper that ends the search when a report lacks its objective (made here if None;
            pass one to read its ``problem`` after the fit).
        population: a pbt/pb2 search's initial members (``_population.draw``; drawn here if None).
    """
    check = check or objective_check(search)
    if is_population(search.spec) and population is None:
        population = _population.draw(search)
    return tune.Tuner(
        _trainable(search, data),
        param_space=search.base_config,
        tune_config=_tune_config(search, exp_dir, population),
        run_config=_run_config(search, exp_dir, exp_id, parent, verbose, inputs or [], check),
    )


def objective_check(search: spaces.Search) -> ObjectiveCheck:
    spec = search.spec
    return ObjectiveCheck(spec.metric, spec.scheduler.time_attr if spec.scheduler.name != "fifo" else None)


def restored_tuner(search: spaces.Search, data: Any, exp_dir: Path) -> tune.Tuner:
    """The Tuner of an interrupted search, from its folder: finished trials kept, the others resumed."""
    return tune.Tuner.restore(str(exp_dir), trainable=_trainable(search, data), resume_unfinished=True,
                              resume_errored=True)


def _trainable(search: spaces.Search, data: Any):
    fn = search.entry.trainable
    if data is not None:  # the corpus goes into the object store once; every trial on a node reads that copy
        fn = tune.with_parameters(fn, data=data)
    return tune.with_resources(fn, search.resources)


def is_population(spec: spaces.Spec) -> bool:
    """Whether the search trains a population (pbt, pb2) rather than sampling trial after trial."""
    return spec.scheduler.name in spaces.POPULATION_SCHEDULERS


def _tune_config(search: spaces.Search, exp_dir: Path,
                 population: _population.Population | None = None) -> tune.TuneConfig:
    spec = search.spec
    if population is not None:
        # Ray refuses PBT beside a search algorithm: its members are drawn already, and Ray's basic
        # generator runs exactly those configs, one trial each.
        return tune.TuneConfig(
            search_alg=BasicVariantGenerator(points_to_evaluate=[dict(m) for m in population.members],
                                             max_concurrent=spec.budget.max_concurrent),
            scheduler=_population.scheduler(search),
            num_samples=len(population.members),
            time_budget_s=spec.budget.time_s,
            reuse_actors=search.entry.reuse_workers,
        )
    searcher = OptunaSearcher(
        space=search.space,
        make_sampler=functools.partial(make_sampler, search),
        storage=study_storage(exp_dir),
        study_name=spec.name,
        metric=spec.metric,
        mode=spec.mode,
        base_config=search.base_config,
        check=functools.partial(search.entry.check, constraints=dict(spec.constraints)),
        grid_points=search.space.grid_points() if spec.sampler.name != "grid" else [],
        points_to_evaluate=spec.points_to_evaluate,
        max_concurrent=spec.budget.max_concurrent,
    )
    return tune.TuneConfig(
        search_alg=searcher,
        scheduler=_scheduler(spec),
        num_samples=spec.budget.trials,
        metric=spec.metric,
        mode=spec.mode,
        time_budget_s=spec.budget.time_s,
        # One worker process for many trials where the trainable allows it (``Entry.reuse_workers``):
        # a new Ray worker per trial (a Python start and Ray's imports) is most of what an instant
        # trial costs. Ray reuses a worker only after a trial that did not raise; a failed trial's
        # retry gets a fresh one.
        reuse_actors=search.entry.reuse_workers,
    )


def _scheduler(spec: spaces.Spec):
    """An early-stopping scheduler (pbt and pb2: ``_population.scheduler``)."""
    s = spec.scheduler
    if s.name == "asha":
        return ASHAScheduler(time_attr=s.time_attr, max_t=s.max_t, grace_period=s.grace_period,
                             reduction_factor=s.reduction_factor, brackets=s.brackets)
    if s.name == "hyperband":
        return HyperBandScheduler(time_attr=s.time_attr, max_t=s.max_t, reduction_factor=s.reduction_factor)
    if s.name == "median":
        return MedianStoppingRule(time_attr=s.time_attr, grace_period=s.grace_period)
    return FIFOScheduler()


def _max_t(spec: spaces.Spec) -> float | None:
    """The scheduler's max_t, for schedulers that stop trials there."""
    return spec.scheduler.max_t if spec.scheduler.name in ("asha", "hyperband") else None


def _run_config(search: spaces.Search, exp_dir: Path, exp_id: str, parent: str, verbose: bool,
                inputs: list, check: ObjectiveCheck) -> tune.RunConfig:
    spec = search.spec
    stop = check
    if spec.budget.total_flops is not None:
        stop = CombinedStopper(check, FlopBudgetStopper(spec.budget.total_flops, exp_dir / "flops_spent.json"))
    sampled = list(search.space.params)
    population = is_population(spec)
    tracker = MLflowTracker(search.tracking_uri, exp_id, parent, sampled_keys=sampled,
                            pending_file=exp_dir / PENDING_FILE, metric=spec.metric, mode=spec.mode,
                            time_attr=spec.scheduler.time_attr, inputs=inputs,
                            mutations=spec.scheduler.mutations if population else (),
                            lineage_file=exp_dir / _private.LINEAGE_FILE if population else None)
    max_t = _max_t(spec)
    # The marker first: the others read how a trial ended from the result it marks.
    callbacks = [EndMarker(spec.scheduler.time_attr, max_t), InterruptWatch(), tracker]
    if not verbose:  # the tracker before the view: it names a trial (t003) before the view shows it
        header = (f"{spec.name}: {spec.budget.trials} trials, {spec.budget.max_concurrent} at a time; "
                  f"Ray's output: {exp_dir / _console.RAY_LOG}")
        callbacks.append(_console.LiveConsole(spec.metric, spec.mode, sampled, spec.budget.trials,
                                              spec.scheduler.time_attr, max_t, label=tracker.trial_label,
                                              header=header))
    return tune.RunConfig(
        name=spec.name,
        storage_path=str(search.storage),
        stop=stop,
        callbacks=[*callbacks, JsonLoggerCallback(), CSVLoggerCallback()],
        failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures),
        # Ray always keeps the latest checkpoint (to resume); num_to_keep=1 by score adds the best. A
        # population keeps a few more: the checkpoint a member exploits is copied when PBT hands it over
        # (``_private.ray_population_scheduler``), and must not have been deleted by then (Ray warns below 3).
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=3 if population else 1, checkpoint_score_attribute=spec.metric,
            checkpoint_score_order=spec.mode,
        ),
    )
