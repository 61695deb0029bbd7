"""Bring MLflow and the Optuna study up to what Ray recorded in the experiment folder.

Ray's experiment folder is the record a search can always trust: every report of every trial is in
its ``result.json``, and its snapshot of the trials says which ended how. Two things can fall behind
it, and are brought level here:

- MLflow, when the tracking server was unreachable for a while (``replay``: missing child runs, missing
  steps, end statuses; never anything twice);
- the study, when a stopper ended the whole experiment (``end_stopped``: Ray marks the running trials
  TERMINATED without telling the searcher or the callbacks).
"""

from __future__ import annotations

from pathlib import Path

from optuna.trial import TrialState
from ray import tune

from tunelab import spaces
from tunelab.search._children import MLflowTracker
from tunelab.search._ends import RAY_ENDED
from tunelab.search._parent import ParentRun
from tunelab.search._paths import PENDING_FILE, find_study
from tunelab.search._searcher import RAY_TRIAL_ATTR, end_stopped as tell_stopped


# Why the trials that a stopper ended with the whole search stopped (their child runs' descriptions).
BUDGET_STOP = "the search's budget (total FLOPs or time) ran out"


def replay(exp_dir: Path, search: spaces.Search, parent: ParentRun,
           only: set[str] | None = None, budget_stopped: set[str] = frozenset()) -> tune.ExperimentAnalysis:
    """Bring every trial's child run (or those of the trial ids ``only``) up to what Ray recorded in the
    experiment folder; the trials in ``budget_stopped`` were stopped with the whole search."""
    analysis = tune.ExperimentAnalysis(str(exp_dir))
    # The children go where the parent is: the store the search ran with, which ``resume`` and ``sync``
    # read from its state file. The search file's own URI may be relative (its default, under a
    # relative ``storage``), so from another folder it names another store.
    tracker = MLflowTracker(parent.client.tracking_uri, parent.experiment_id, parent.run_id,
                            sampled_keys=list(search.space.params), metric=search.spec.metric,
                            mode=search.spec.mode, time_attr=search.spec.scheduler.time_attr)
    tracker.setup()
    for trial in analysis.trials:
        if only is None or trial.trial_id in only:
            tracker.replay(trial, why_stopped=BUDGET_STOP if trial.trial_id in budget_stopped else None)
    if only is None:
        (exp_dir / PENDING_FILE).unlink(missing_ok=True)
    return analysis


def end_stopped(exp_dir: Path, search: spaces.Search) -> set[str]:
    """Tell the study about the trials Ray stopped with the whole experiment, and return their ids.

    A stopper that ends the experiment (``budget.total_flops``, ``budget.time_s``) makes Ray mark the
    running trials TERMINATED without telling the searcher or the callbacks, so their Optuna trials stay
    RUNNING and their runs open. Ray's last snapshot tells them apart from the trials of an interrupted
    driver (still RUNNING there), which ``tunelab resume`` continues and which are left alone.
    """
    study = find_study(exp_dir, search.spec.name)
    if study is None:
        return set()
    running = {t.user_attrs.get(RAY_TRIAL_ATTR) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if not running:
        return set()
    ended = {t.trial_id: (t.last_result, t.status == "ERROR") for t in tune.ExperimentAnalysis(str(exp_dir)).trials
             if t.trial_id in running and t.status in RAY_ENDED}
    tell_stopped(study, ended, search.spec.metric)
    return set(ended)
