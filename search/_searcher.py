"""A Ray Tune searcher that drives an Optuna study through ask and tell.

Ray's own ``OptunaSearch`` gets two things wrong for this product, so this one replaces it:

* When ASHA stops a trial, ``OptunaSearch`` tells Optuna the trial COMPLETED with its low-fidelity
  value, and TPE then learns from truncated curves as if they were final. Here every report is an
  intermediate value of the Optuna trial, and a trial that did not run its whole schedule is told
  PRUNED (TPE ranks pruned trials by how far they got and their last value).
* A config the trainable's ``check`` rejects is told to Optuna as infeasible (``set_constraint`` with a
  positive violation; Optuna 5's TPE puts such trials in its "bad" group) and replaced by a fresh
  suggestion before any Ray trial exists, so it never costs a trial and never counts against
  ``budget.trials``.

The study lives beside Ray's results, so ``tunelab resume`` and the analysis can reopen it, in an
Optuna journal file: an append-only log that costs about a tenth of SQLite per trial (asks, suggests,
reports and tells are many small writes), which matters when trials last seconds.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search import Searcher

from tunelab import _private
from tunelab.trainables import metrics

log = logging.getLogger(__name__)

STATUS_ATTR = "tunelab_status"
RAY_TRIAL_ATTR = "ray_trial_id"
REASON_ATTR = "infeasible_reason"
POINT_ATTR = "tunelab_point"  # the index of the warm-start point a trial was asked for
GRID_ATTR = "tunelab_grid"  # the index of the grid point a trial was asked for
# On the study: why the searcher stopped proposing before the budget (the space ran out of feasible configs).
EXHAUSTED_ATTR = "tunelab_exhausted"
# Consecutive infeasible suggestions after which the space is declared unusable.
MAX_INFEASIBLE_IN_A_ROW = 200


def open_storage(storage: str | Path) -> str | optuna.storages.BaseStorage:
    """An Optuna storage: a URL (``sqlite:///...``) as is, anything else a journal file's path.

    A driver killed in the middle of a write can leave the journal's last line cut short; Optuna
    would refuse the file once a line follows it, so that line (an unfinished write) is dropped.
    """
    if "://" in str(storage):
        return str(storage)
    _private.repair_journal(Path(storage))
    return JournalStorage(JournalFileBackend(os.fspath(storage)))


def tell_end(study: optuna.Study, trial: optuna.Trial, status: str, result: Mapping[str, Any] | None,
             metric: str) -> None:
    """Tell the study how a trial ended (``status``, one of ``metrics.STATUSES``; ``result``, its last report)."""
    trial.set_user_attr(STATUS_ATTR, status)
    value = None if not result else result.get(metric)
    worst = math.inf if study.direction == optuna.study.StudyDirection.MINIMIZE else -math.inf
    if status == metrics.COMPLETED and value is not None and math.isfinite(value):
        study.tell(trial, float(value))
    elif status == metrics.STATUS_DIVERGED:
        study.tell(trial, worst)  # a real outcome: this region is bad
    elif status == metrics.STATUS_OOM:
        trial.set_constraint("fits_memory", 1.0)
        study.tell(trial, state=TrialState.PRUNED)
    elif status == metrics.STOPPED_EARLY:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)


def end_stopped(study: optuna.Study, ended: Mapping[str, tuple[Mapping[str, Any] | None, bool]], metric: str) -> int:
    """Tell the study how trials ended that Ray stopped without telling the searcher.

    When a stopper ends the whole experiment (``budget.total_flops``, ``budget.time_s``), Ray marks the
    running trials TERMINATED and tells neither the searcher nor the callbacks. ``ended`` maps those Ray
    trial ids to (last report, raised); their Optuna trials, still RUNNING, are told here. Returns how many.
    """
    told = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        ray_id = t.user_attrs.get(RAY_TRIAL_ATTR)
        if ray_id in ended:
            result, error = ended[ray_id]
            step = int((result or {}).get("training_iteration", 0))
            handle = _private.trial_handle(study, t.number)
            if result and metric in result and step not in t.intermediate_values and math.isfinite(result[metric]):
                handle.report(float(result[metric]), step)
            tell_end(study, handle, metrics.final_status(result, error), result, metric)
            told += 1
    return told


def _ray_trials(exp_dir: Path) -> set[str] | None:
    """The ids of the trials Ray saved in experiment folder ``exp_dir`` (None: none readable there)."""
    from ray import tune

    try:
        return {t.trial_id for t in tune.ExperimentAnalysis(str(exp_dir)).trials}
    except (ValueError, OSError):
        return None


def first_feasible(space: Callable[[optuna.Trial], dict[str, Any]], base_config: Mapping[str, Any],
                   check: Callable[[dict[str, Any]], str | None], draws: int = MAX_INFEASIBLE_IN_A_ROW,
                   seed: int = 0) -> str | None:
    """Whether a space holds any feasible config, known before launching: None as soon as one of
    ``draws`` configs drawn at random passes ``check``, else the reason the first was rejected."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory" on the console
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    finally:
        optuna.logging.set_verbosity(verbosity)
    first = None
    for _ in range(draws):
        trial = study.ask()
        reason = check({**base_config, **space(trial)})
        if reason is None:
            return None
        first = first or reason
        study.tell(trial, state=TrialState.FAIL)
    return first


class OptunaSearcher(Searcher):
    """Ask/tell bridge between Ray Tune and an Optuna study.

    Args:
        space: define-by-run function ``optuna.Trial -> params``.
        make_sampler: ``restart -> sampler``: builds the Optuna sampler; called again after a restore
            with ``restart`` the number of trials in the study, so that a sampler whose state is its
            random generator's does not propose the configs it proposed before the restore again.
        storage: where the study lives: a journal file's path, or an Optuna storage URL.
        study_name: the study's name in that storage.
        metric, mode: what is optimised.
        base_config: the constant part of every config, for ``check``.
        check: ``config -> reason | None``; a reason makes the suggestion infeasible.
        grid_points: parameter combinations tried in turn, one per trial (``grid`` parameters).
        points_to_evaluate: configs enqueued first (warm start).
        max_infeasible: consecutive infeasible suggestions after which the space is declared unusable.
        max_concurrent: at most this many trials running at once (0: no limit). The limit is the
            searcher's own, not Ray's ``ConcurrencyLimiter``: after a restore, the trials it counts as
            running are checked against Ray's saved trials (``_reconcile``), which a wrapper's saved
            count is not, and a count that disagrees with Ray would stop the search for good.
    """

    def __init__(
        self,
        space: Callable[[optuna.Trial], dict[str, Any]],
        make_sampler: Callable[[], optuna.samplers.BaseSampler],
        storage: str | Path,
        study_name: str,
        metric: str,
        mode: str,
        base_config: Mapping[str, Any],
        check: Callable[[dict[str, Any]], str | None],
        grid_points: list[dict[str, Any]] = (),
        points_to_evaluate: list[dict[str, Any]] = (),
        max_infeasible: int = MAX_INFEASIBLE_IN_A_ROW,
        max_concurrent: int = 0,
    ):
        super().__init__(metric=metric, mode=mode)
        self._space = space
        self._make_sampler = make_sampler
        self._storage = storage
        self._study_name = study_name
        self._base = dict(base_config)
        self._check = check
        self._grid = list(grid_points)
        self._grid_next = 0
        self._points = list(points_to_evaluate)
        self._point_next = 0
        self._max_infeasible = max_infeasible
        self._max_concurrent = max_concurrent
        self._trials: dict[str, int] = {}  # Ray trial id -> Optuna trial number
        self._handles: dict[str, optuna.Trial] = {}  # Ray trial id -> the handle ask() gave (not pickled)
        self._reported: dict[str, int] = {}  # Ray trial id -> last reported step
        self._study: optuna.Study | None = None

    # --- study ---------------------------------------------------------------------------------
    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            direction = "minimize" if self.mode == "min" else "maximize"
            self._study = optuna.create_study(
                storage=open_storage(self._storage), study_name=self._study_name, direction=direction,
                sampler=self._make_sampler(0), load_if_exists=True,
            )
        return self._study

    def _trial(self, trial_id: str) -> optuna.Trial:
        if trial_id not in self._handles:  # asked before a restore
            self._handles[trial_id] = _private.trial_handle(self.study, self._trials[trial_id])
        return self._handles[trial_id]

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        return True  # metric and mode come from the search file; the space is ours

    # --- suggest -------------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """A feasible config for Ray trial ``trial_id``; ``Searcher.FINISHED`` (the search ends when its
        running trials have, and the study's ``EXHAUSTED_ATTR`` says why) when ``max_infeasible``
        suggestions in a row were infeasible; None while ``max_concurrent`` trials run."""
        if self._max_concurrent and len(self._trials) >= self._max_concurrent:
            return None
        for _ in range(self._max_infeasible):
            attrs = self._enqueue_next()
            trial = self.study.ask()
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            params = self._space(trial)
            reason = self._check({**self._base, **params})
            if POINT_ATTR in attrs:
                self._point_next += 1  # a known point is tried once, feasible or not
            if reason is None:
                trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)
                self._trials[trial_id] = trial.number
                self._handles[trial_id] = trial
                if GRID_ATTR in attrs:
                    self._grid_next += 1
                return params
            log.info("infeasible config %s: %s", params, reason)
            trial.set_user_attr(STATUS_ATTR, metrics.INFEASIBLE)
            trial.set_user_attr(REASON_ATTR, reason)
            trial.set_constraint("feasible", 1.0)
            self.study.tell(trial, state=TrialState.PRUNED)
        self.study.set_user_attr(EXHAUSTED_ATTR, (
            f"the sampler proposed {self._max_infeasible} infeasible configs in a row (the last: {reason}); "
            "the search ended without the rest of its budget: loosen the space or its constraints"))
        return Searcher.FINISHED

    def _enqueue_next(self) -> dict[str, int]:
        """Enqueue the next warm-start or grid point, if any; returns the user attrs that say which."""
        if self._point_next < len(self._points):
            point = dict(self._points[self._point_next])
            if self._grid:
                point = {**self._grid[self._grid_next % len(self._grid)], **point}
            self.study.enqueue_trial(point, skip_if_exists=False)
            return {POINT_ATTR: self._point_next}
        if self._grid:
            self.study.enqueue_trial(self._grid[self._grid_next % len(self._grid)], skip_if_exists=False)
            return {GRID_ATTR: self._grid_next}
        return {}

    # --- results -------------------------------------------------------------------------------
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._report(trial_id, result)

    def _report(self, trial_id: str, result: Mapping[str, Any] | None) -> None:
        if not result or trial_id not in self._trials or self.metric not in result:
            return
        step = int(result.get("training_iteration", 0))
        value = float(result[self.metric])
        if step <= self._reported.get(trial_id, -1) or math.isnan(value):
            return
        self._trial(trial_id).report(value, step)
        self._reported[trial_id] = step

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self._trials:
            return
        # The result that made the scheduler stop the trial never reached on_trial_result.
        self._report(trial_id, result)
        status = metrics.final_status(result, error) if (result or error) else metrics.ERROR
        tell_end(self.study, self._trial(trial_id), status, result, self.metric)
        del self._trials[trial_id]
        self._handles.pop(trial_id, None)
        self._reported.pop(trial_id, None)

    # --- persistence (Ray saves the searcher into the experiment folder) -------------------------
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_study"] = None  # the storage's handles do not pickle; its path reopens it
        state["_handles"] = {}
        return state

    def save(self, checkpoint_path: str) -> None:
        import cloudpickle

        with open(checkpoint_path, "wb") as f:
            cloudpickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        import cloudpickle

        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(cloudpickle.load(f))
        self._study = None
        self._handles = {}
        study = self.study
        study.sampler = self._make_sampler(len(study.get_trials(deepcopy=False)))
        self._reconcile(_ray_trials(Path(checkpoint_path).parent))

    def _reconcile(self, ray_trials: set[str] | None = None) -> None:
        """Make this snapshot of the searcher agree with the study, which was written after it.

        Ray saves the searcher and the experiment state every few seconds, the study at every tell. A
        driver killed in between leaves two kinds of mismatch: a trial asked whose Ray trial was never
        recorded stays RUNNING in the study (it is ended as FAIL); a trial told finished that Ray's
        snapshot still holds as running is resumed by Ray, and its outcome is already in the study (it
        is forgotten here, so it is not told twice). Trials asked after the snapshot also moved the
        warm-start and grid points on: the next ones are taken from the study, so none is asked twice.
        A trial this snapshot holds as running that Ray's saved trials (``ray_trials``, when known) do
        not hold is lost: Ray will not run it again, so it is ended as FAIL.
        """
        trials = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        if ray_trials is not None:
            for ray_id in [r for r in self._trials if r not in ray_trials]:
                self._reported.pop(ray_id, None)
                del self._trials[ray_id]
        for attr, field in ((POINT_ATTR, "_point_next"), (GRID_ATTR, "_grid_next")):
            done = [t.user_attrs[attr] + 1 for t in trials.values() if attr in t.user_attrs
                    and (attr == POINT_ATTR or RAY_TRIAL_ATTR in t.user_attrs)]
            setattr(self, field, max([getattr(self, field), *done]))
        for ray_id, number in list(self._trials.items()):
            if number in trials and trials[number].state.is_finished():
                del self._trials[ray_id]
                self._reported.pop(ray_id, None)
        known = set(self._trials.values())
        for t in trials.values():
            if t.state == TrialState.RUNNING and t.number not in known:
                self.study.tell(t.number, state=TrialState.FAIL)
