"""Search file -> running Ray Tune experiment, and back again on resume.

``run(search)`` is what ``tunelab run`` calls and what tests call directly: it validates everything it
can before writing anything, opens the MLflow parent run, assembles the ``Tuner`` (Optuna searcher
behind a concurrency limit, scheduler, budget stoppers, the MLflow callback, failure and checkpoint
policy) and fits it. ``resume(name)`` restores the same experiment from its folder.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import optuna
import ray
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule
from ray.tune.search import ConcurrencyLimiter

import spaces
import trainables
from search import _tracking, _warmstart
from search._budget import FlopBudgetStopper
from search._samplers import make_sampler
from search._searcher import RAY_TRIAL_ATTR, REASON_ATTR, STATUS_ATTR, OptunaSearcher, end_stopped, open_storage
from trainables import metrics

log = logging.getLogger(__name__)
# Trials here checkpoint every epoch, often seconds apart; Ray's warning about frequent experiment
# snapshots would repeat after every report.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

STATE_FILE = "tunelab.json"  # per search: where its parent run is, to resume and list it
SEARCH_FILE = "search.yaml"  # the resolved search file, as run
STUDY_FILE = "optuna_journal.log"  # the Optuna study (journal storage)
PENDING_FILE = "mlflow_pending.json"  # present while MLflow lacks records of some trials


@dataclasses.dataclass
class TrialSummary:
    trial_id: str
    status: str
    params: dict[str, Any]
    best: float | None
    iterations: int


@dataclasses.dataclass
class Outcome:
    """What a finished (or budget-stopped) search leaves behind."""

    name: str
    experiment_dir: Path
    tracking_uri: str
    parent_run_id: str
    metric: str
    mode: str
    trials: list[TrialSummary]
    infeasible: int
    best: TrialSummary | None
    tracking_pending: bool = False  # MLflow was unreachable at the end: `tunelab sync` completes it

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in metrics.STATUSES}
        for t in self.trials:
            out[t.status] += 1
        out[metrics.INFEASIBLE] = self.infeasible
        return out

    def table(self) -> str:
        """A short Markdown table of the trials, best first."""
        keys = sorted({k for t in self.trials for k in t.params})
        sign = 1 if self.mode == "min" else -1
        rows = sorted(self.trials, key=lambda t: sign * t.best if t.best is not None else math.inf)
        head = ["trial", "status", *keys, f"best {self.metric}", "iters"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for t in rows:
            vals = [_fmt(t.params.get(k, "")) for k in keys]
            best = "" if t.best is None else f"{t.best:.4g}"
            lines.append("| " + " | ".join([t.trial_id, t.status, *vals, best, str(t.iterations)]) + " |")
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class SearchExistsError(ValueError):
    """A search of that name already has results; resume it or choose another name."""


def experiment_dir(search: spaces.Search) -> Path:
    return search.storage / search.spec.name


def run(search: spaces.Search, *, address: str | None = None) -> Outcome:
    """Run a search from the beginning.

    Args:
        search: a loaded search file (``spaces.load``).
        address: Ray cluster address; None starts (or reuses) a local Ray.

    Raises:
        SearchExistsError: the experiment folder already holds a search of that name.
        trainables.DataError, search.TrackingError: before anything is started or written.
    """
    exp_dir = experiment_dir(search)
    if (exp_dir / STATE_FILE).exists():
        raise SearchExistsError(
            f"a search named {search.spec.name!r} already exists in {search.storage}; "
            f"resume it with `tunelab resume {search.spec.name}` or choose another --name"
        )
    data = _load_data(search)  # before anything is written
    warm = _warmstart.prepare(search, STUDY_FILE, SEARCH_FILE)  # the earlier search warm_start names, if any
    try:
        client = _tracking.client_for(search.tracking_uri)
        exp_id = _tracking.ensure_experiment(client, search.spec.name, search.storage / "mlartifacts")
    except _tracking.TrackingError as exc:
        raise spaces.SpecError(search.file, "tracking.uri", str(exc)) from None
    exp_dir.mkdir(parents=True, exist_ok=True)
    parent = _open_parent(client, exp_id, search, exp_dir)
    _warmstart.seed(warm, study_storage(exp_dir), search.spec, client, parent)  # before the first suggestion
    (exp_dir / SEARCH_FILE).write_text(search.resolved_yaml())
    (exp_dir / STATE_FILE).write_text(json.dumps({
        "name": search.spec.name, "file": search.file, "tracking_uri": search.tracking_uri,
        "experiment_id": exp_id, "parent_run_id": parent, "spec_hash": search.spec_hash,
    }, indent=2))
    _init_ray(address)
    tuner = tune.Tuner(
        _trainable(search, data),
        param_space=search.base_config,
        tune_config=_tune_config(search, exp_dir),
        run_config=_run_config(search, exp_dir, exp_id, parent),
    )
    return _fit(tuner, search, exp_dir, client, parent)


def resume(name: str, storage: str | Path = "runs", *, address: str | None = None) -> Outcome:
    """Resume a search whose driver stopped: finished trials are kept, unfinished ones continue from
    their checkpoints, and the search still runs ``budget.trials`` trials in all.

    Args:
        name: the search's name (its folder under ``storage``).
        storage: the results root it was run with.
        address: Ray cluster address; None starts a local Ray.
    """
    exp_dir = Path(storage).expanduser().resolve() / name
    state_path = exp_dir / STATE_FILE
    if not state_path.exists():
        raise spaces.SpecError(str(exp_dir), "name", f"no search named {name!r} under {exp_dir.parent}")
    state = json.loads(state_path.read_text())
    search = spaces.load(exp_dir / SEARCH_FILE)
    data = _load_data(search)
    try:  # fails early if tracking is unreachable or refuses the login
        client = _tracking.client_for(state["tracking_uri"])
        _tracking.get_run(client, state["parent_run_id"])
    except _tracking.TrackingError as exc:
        raise spaces.SpecError(str(state_path), "tracking_uri", str(exc)) from None
    client.update_run(state["parent_run_id"], status="RUNNING")
    known = {t.trial_id for t in tune.ExperimentAnalysis(str(exp_dir)).trials}
    lost = _tracking.end_lost_runs(client, state["experiment_id"], state["parent_run_id"], known)
    if lost:
        log.warning("trials %s started after Ray's last snapshot and cannot be resumed; their runs are ended "
                    "as errors and other trials take their place", ", ".join(lost))
    _init_ray(address)
    tuner = tune.Tuner.restore(
        str(exp_dir), trainable=_trainable(search, data), resume_unfinished=True, resume_errored=True,
    )
    return _fit(tuner, search, exp_dir, client, state["parent_run_id"])


def _load_data(search: spaces.Search) -> Any:
    try:
        return search.entry.load_data(search.spec.data.model_dump())
    except trainables.DataError as exc:
        raise spaces.SpecError(search.file, "data", str(exc)) from None


def _init_ray(address: str | None) -> None:
    if not ray.is_initialized():
        ray.init(address=address, configure_logging=False)


def _trainable(search: spaces.Search, data: Any):
    # The corpus goes into the object store once; every trial on a node reads that one copy.
    fn = tune.with_parameters(search.entry.trainable, data=data)
    return tune.with_resources(fn, search.resources)


def study_storage(exp_dir: Path) -> str:
    return str(exp_dir / STUDY_FILE)


def load_study(exp_dir: Path, name: str | None = None) -> optuna.Study:
    """The Optuna study of the search in ``exp_dir`` (named like its folder unless ``name``)."""
    return optuna.load_study(study_name=name or exp_dir.name, storage=open_storage(study_storage(exp_dir)))


def _tune_config(search: spaces.Search, exp_dir: Path) -> tune.TuneConfig:
    spec = search.spec
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
    )
    return tune.TuneConfig(
        search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.budget.max_concurrent),
        scheduler=_scheduler(spec),
        num_samples=spec.budget.trials,
        metric=spec.metric,
        mode=spec.mode,
        time_budget_s=spec.budget.time_s,
    )


def _scheduler(spec: spaces.Spec):
    s = spec.scheduler
    if s.name == "asha":
        return ASHAScheduler(time_attr=s.time_attr, max_t=s.max_t, grace_period=s.grace_period,
                             reduction_factor=s.reduction_factor, brackets=s.brackets)
    if s.name == "hyperband":
        return HyperBandScheduler(time_attr=s.time_attr, max_t=s.max_t, reduction_factor=s.reduction_factor)
    if s.name == "median":
        return MedianStoppingRule(time_attr=s.time_attr, grace_period=s.grace_period)
    return FIFOScheduler()


def _run_config(search: spaces.Search, exp_dir: Path, exp_id: str, parent: str) -> tune.RunConfig:
    spec = search.spec
    stop = None
    if spec.budget.total_flops is not None:
        stop = FlopBudgetStopper(spec.budget.total_flops, exp_dir / "flops_spent.json")
    tracker = _tracking.MLflowTracker(search.tracking_uri, exp_id, parent, sampled_keys=list(search.space.params),
                                      pending_file=exp_dir / PENDING_FILE)
    return tune.RunConfig(
        name=spec.name,
        storage_path=str(search.storage),
        stop=stop,
        callbacks=[tracker],
        failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures),
        # Ray always keeps the latest checkpoint (to resume); num_to_keep=1 by score adds the best.
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=1, checkpoint_score_attribute=spec.metric, checkpoint_score_order=spec.mode,
        ),
    )


def _open_parent(client, exp_id: str, search: spaces.Search, exp_dir: Path) -> str:
    spec = search.spec
    tags = {
        "tunelab.spec_hash": search.spec_hash,
        "tunelab.trainable": spec.trainable,
        "tunelab.sampler": spec.sampler.name,
        "tunelab.scheduler": spec.scheduler.name,
        "tunelab.storage": str(exp_dir),
        "tunelab.overrides": " ".join(search.overrides),
    }
    commit = _tracking.git_commit(Path(__file__).resolve().parent)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    run = client.create_run(exp_id, run_name=f"{spec.name} (search)", tags=tags)
    run_id = run.info.run_id
    client.log_text(run_id, search.text, f"search/{Path(search.file).name}")
    client.log_text(run_id, search.resolved_yaml(), "search/resolved.yaml")
    client.log_batch(run_id, params=[
        _tracking.Param(k, str(v)) for k, v in {
            "metric": spec.metric, "mode": spec.mode, "trials": spec.budget.trials,
            "max_concurrent": spec.budget.max_concurrent, "total_flops": spec.budget.total_flops,
            "time_s": spec.budget.time_s, **{f"fixed.{k}": v for k, v in spec.fixed.items()},
        }.items()
    ])
    return run_id


def _fit(tuner: tune.Tuner, search: spaces.Search, exp_dir: Path, client, parent: str) -> Outcome:
    grid = tuner.fit()
    stopped = _end_stopped(exp_dir, search)
    outcome, infeasible = _summarize(grid, search, exp_dir, parent)
    try:
        if stopped or (exp_dir / PENDING_FILE).exists():  # runs left open, or the server was down a while
            _replay(exp_dir, search, client.get_run(parent).info.experiment_id, parent,
                    only=None if (exp_dir / PENDING_FILE).exists() else stopped)
        _close_parent(client, parent, outcome, infeasible)
    except Exception as exc:  # the tracking server is down: the results are safe in the folder
        log.warning("could not close the parent run in MLflow (%s); run `tunelab sync %s` once it is back",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__, outcome.name)
        outcome.tracking_pending = True
    return outcome


def sync(name: str, storage: str | Path = "runs") -> Outcome:
    """Replay what Ray recorded of search ``name`` into MLflow, for when the server was down.

    Every trial gets its child run (created if MLflow never saw the trial), the reports MLflow lacks
    (steps after the last one it has, so running it twice adds nothing) and, for ended trials, its
    status; the parent run gets its summary once every trial has ended.

    Raises:
        spaces.SpecError: no such search, or MLflow still unreachable.
    """
    from search import _catalog

    root = Path(storage).expanduser().resolve()
    state = _catalog.state(root, name)
    exp_dir = root / name
    search = spaces.load(exp_dir / SEARCH_FILE)
    uri, parent = state["tracking_uri"], state["parent_run_id"]
    client = _tracking.client_for(uri)
    try:
        parent_run = client.get_run(parent)
    except Exception as exc:
        raise spaces.SpecError(str(exp_dir / STATE_FILE), "tracking_uri",
                               f"cannot use MLflow at {uri}: {str(exc).splitlines()[0]}") from None
    analysis = _replay(exp_dir, search, state["experiment_id"], parent)
    outcome, infeasible = _summarize(tune.ResultGrid(analysis), search, exp_dir, parent)
    closed = parent_run.info.status == "FINISHED" and f"tunelab.n_{metrics.COMPLETED}" in parent_run.data.tags
    if not closed and all(t.status in ("TERMINATED", "ERROR") for t in analysis.trials):
        _close_parent(client, parent, outcome, infeasible)
    return outcome


def _replay(exp_dir: Path, search: spaces.Search, experiment_id: str, parent: str,
            only: set[str] | None = None) -> tune.ExperimentAnalysis:
    """Bring every trial's child run (or those of the trial ids ``only``) up to what Ray recorded in the
    experiment folder."""
    analysis = tune.ExperimentAnalysis(str(exp_dir))
    tracker = _tracking.MLflowTracker(search.tracking_uri, experiment_id, parent,
                                      sampled_keys=list(search.space.params))
    tracker.setup()
    for trial in analysis.trials:
        if only is None or trial.trial_id in only:
            tracker.replay(trial)
    if only is None:
        (exp_dir / PENDING_FILE).unlink(missing_ok=True)
    return analysis


def _end_stopped(exp_dir: Path, search: spaces.Search) -> set[str]:
    """Tell the study about the trials Ray stopped with the whole experiment, and return their ids.

    A stopper that ends the experiment (``budget.total_flops``, ``budget.time_s``) makes Ray mark the
    running trials TERMINATED without telling the searcher or the callbacks, so their Optuna trials stay
    RUNNING and their runs open. Ray's last snapshot tells them apart from the trials of an interrupted
    driver (still RUNNING there), which ``tunelab resume`` continues and which are left alone.
    """
    study = load_study(exp_dir, search.spec.name)
    running = {t.user_attrs.get(RAY_TRIAL_ATTR) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if not running:
        return set()
    ended = {t.trial_id: (t.last_result, t.status == "ERROR") for t in tune.ExperimentAnalysis(str(exp_dir)).trials
             if t.trial_id in running and t.status in ("TERMINATED", "ERROR")}
    end_stopped(study, ended, search.spec.metric)
    return set(ended)


def _summarize(grid, search: spaces.Search, exp_dir: Path, parent: str) -> tuple[Outcome, list]:
    spec = search.spec
    trials = []
    for result in grid:
        last = result.metrics or {}
        df = result.metrics_dataframe
        best = None
        if df is not None and spec.metric in df:
            col = df[spec.metric].dropna()
            if len(col):
                best = float(col.min() if spec.mode == "min" else col.max())
        status = metrics.final_status(last, error=result.error is not None)
        params = {k: result.config.get(k) for k in search.space.params if k in result.config}
        trials.append(TrialSummary(last.get("trial_id", "?"), status, params, best,
                                   int(last.get("training_iteration", 0))))
    study = load_study(exp_dir, spec.name)
    infeasible = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(STATUS_ATTR) == metrics.INFEASIBLE]
    scored = [t for t in trials if t.best is not None and math.isfinite(t.best)]
    sign = 1 if spec.mode == "min" else -1
    best = min(scored, key=lambda t: sign * t.best) if scored else None
    outcome = Outcome(spec.name, exp_dir, search.tracking_uri, parent, spec.metric, spec.mode, trials,
                      len(infeasible), best)
    return outcome, infeasible


def _close_parent(client, parent: str, outcome: Outcome, infeasible: list) -> None:
    tags = [_tracking.RunTag(f"tunelab.n_{k}", str(v)) for k, v in outcome.counts().items()]
    values = {f"n_{k}": v for k, v in outcome.counts().items()}
    if outcome.best is not None:
        exp_id = client.get_run(parent).info.experiment_id
        runs = {r.data.tags.get(_tracking.TRIAL_ID_TAG): r.info.run_id
                for r in _tracking.children(client, exp_id, parent)}
        tags += [_tracking.RunTag("tunelab.best_trial_id", outcome.best.trial_id),
                 _tracking.RunTag("tunelab.best_run_id", runs.get(outcome.best.trial_id, ""))]
        values[f"best_{outcome.metric}"] = outcome.best.best
    client.log_batch(parent, metrics=[_tracking.Metric(k, float(v), 0, 0) for k, v in values.items()], tags=tags)
    client.log_text(parent, outcome.table() + "\n", "report/summary.md")
    if infeasible:
        rows = [{"params": t.params, "reason": t.user_attrs.get(REASON_ATTR)} for t in infeasible]
        client.log_text(parent, json.dumps(rows, indent=1, default=str), "report/infeasible.json")
    client.set_terminated(parent, "FINISHED")
