"""Launch a search: ``run(search)`` is what ``tunelab run`` calls and what tests call directly.

``run`` reads as its four steps. *Prepare*: everything that can refuse the search, before anything
is written (the folder is free and claimed by this process alone, the space holds a feasible config,
the data loads, the warm start's source reads, MLflow answers). *Record*: the search's folder, the
MLflow parent run (``_parent``), the study seeded with the warm start. *Launch*: the Tuner
(``_tuner``). *Finish*: the summary, MLflow brought level, the records closed (``_summary.finish``),
however the fit ends: its budget run, a signal, a fault.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from tunelab import _mlflow, spaces
from tunelab.search import _console, _inputs, _population, _tuner, _ui, _warmstart
from tunelab.search._ends import Interruption, MissingObjective
from tunelab.search._errors import SearchFailed, SearchRunningError
from tunelab.search._parent import ParentRun
from tunelab.search._paths import (RESERVE_FILE, SEARCH_FILE, STATE_FILE, claim, experiment_dir, find_study,
                                   study_storage, write_state)
from tunelab.search._searcher import EXHAUSTED_ATTR, MAX_INFEASIBLE_IN_A_ROW, first_feasible
from tunelab.search._summary import Outcome, finish

__all__ = ["run", "fit_and_finish", "SearchExistsError", "SearchFailed", "SearchRunningError"]


class SearchExistsError(ValueError):
    """A search of that name already has results; resume it or choose another name."""


def run(search: spaces.Search, *, address: str | None = None, verbose: bool = False) -> Outcome:
    """Run a search from the beginning.

    Args:
        search: a loaded search file (``spaces.load``).
        address: Ray cluster address; None starts (or reuses) a local Ray.
        verbose: Ray's own progress output on the console (else the live view, and Ray's output in
            the search folder's ``ray.log``).

    Returns:
        The search's ``Outcome``; its ``state`` says whether it ran its budget (FINISHED), was
        interrupted (INTERRUPTED: by a signal, or a fault such as a full disk; resumable) or could not
        go on (FAILED).

    Raises:
        SearchExistsError: the experiment folder already holds a search of that name.
        SearchRunningError: another process runs a search of that name now; nothing is written.
        spaces.SpecError: the space has no feasible config, the data or the tracking server cannot be
            used; nothing is started or written.
        MissingObjective: a trial's report lacked the objective; the search was ended and closed.
    """
    exp_dir = experiment_dir(search)
    with claim(exp_dir, search.spec.name):
        # prepare: everything that can refuse the search, before anything is written
        _refuse_existing(search, exp_dir)
        _refuse_infeasible(search)
        data = _inputs.load_data(search)
        inputs = _inputs.dataset_inputs(data)  # the datasets, as MLflow records them on every run
        warm = _warmstart.prepare(search)  # the earlier search warm_start names, if any
        population = _draw_population(search, warm)
        client, experiment_id = _experiment(search)
        with _console.ray_output(verbose) as ray_log:
            # record: the MLflow parent run, the search's folder, its study seeded with the warm start
            parent = _record(search, exp_dir, client, experiment_id, inputs, warm, ray_log)
            # launch, then finish however the fit ends
            started = _tuner.init_ray(address)
            check = _tuner.objective_check(search)
            tuner = _tuner.new_tuner(search, data, exp_dir, parent.experiment_id, parent.run_id, verbose=verbose,
                                     inputs=inputs, check=check, population=population)
            outcome = fit_and_finish(tuner, search, exp_dir, parent, check, stop_ray=started)
    if check.problem is not None:
        raise MissingObjective(f"{search.file}: {check.problem}; the search was stopped")
    return outcome


def _refuse_existing(search: spaces.Search, exp_dir: Path) -> None:
    if (exp_dir / STATE_FILE).exists():
        raise SearchExistsError(
            f"a search named {search.spec.name!r} already exists in {search.storage}; "
            f"resume it with `tunelab resume {search.spec.name}` or choose another --name"
        )


def _refuse_infeasible(search: spaces.Search) -> None:
    """Refuse a space none of whose configs the trainable accepts, before launching anything."""
    reason = first_feasible(search.space, search.base_config,
                            lambda config: search.entry.check(config, dict(search.spec.constraints)))
    if reason is not None:
        raise spaces.SpecError(search.file, "constraints",
                               f"no config of the space is feasible: none of {MAX_INFEASIBLE_IN_A_ROW} drawn at "
                               "random passed the "
                               f"trainable's check (the first: {reason}); loosen the space or its constraints")


def _draw_population(search: spaces.Search, warm) -> _population.Population | None:
    """A pbt/pb2 search's members: the warm start's best configs first, then the sampler's draws."""
    if not _tuner.is_population(search.spec):
        return None
    return _population.draw(search, warm.trials if warm is not None else ())


def _experiment(search: spaces.Search):
    """The MLflow client and the search's experiment (made if new); refuses a store it cannot use."""
    try:
        client = _mlflow.client_for(search.tracking_uri)
        return client, _mlflow.ensure_experiment(client, search.spec.name, search.storage / "mlartifacts")
    except _mlflow.TrackingError as exc:
        raise spaces.SpecError(search.file, "tracking.uri", str(exc)) from None


def _record(search: spaces.Search, exp_dir: Path, client, experiment_id: str, inputs: list, warm,
            ray_log: _console.RayLog | None) -> ParentRun:
    """Write what the search starts from: its folder (Ray's log, the resolved file, the state that
    ``resume`` reads), the MLflow view and parent run, the study's warm-start trials."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    if ray_log is not None:
        ray_log.open(exp_dir / _console.RAY_LOG)
    _ui.save_view(client, experiment_id, search.spec.metric, search.spec.mode, search.space.params)
    parent = ParentRun.open(client, experiment_id, search, exp_dir, inputs, warm)
    _warmstart.seed(warm, study_storage(exp_dir), search.spec)  # before the first suggestion
    (exp_dir / SEARCH_FILE).write_text(search.resolved_yaml())
    write_state(exp_dir, {
        "name": search.spec.name, "file": search.file, "tracking_uri": search.tracking_uri,
        "experiment_id": experiment_id, "parent_run_id": parent.run_id, "spec_hash": search.spec_hash,
        "cwd": os.getcwd(),  # where the file's relative data paths were read from (resume reads them there)
    })
    return parent


def fit_and_finish(tuner, search: spaces.Search, exp_dir: Path, parent: ParentRun, check=None, *,
                   stop_ray: bool) -> Outcome:
    """Fit the Tuner and close the search, however the fit ends.

    Ctrl-C or SIGTERM ends it as Ray Tune ends a search on Ctrl-C (a second one at once), a trial that
    finds the disk full ends it the same way, and an error writing the results ends it where it is;
    each leaves the search INTERRUPTED, its records closed, resumable. ``stop_ray``: stop the local
    Ray this search started, once the fit is over (its trials' last lines, which Ray flushes when it
    stops, go to ray.log).
    """
    interruption = Interruption(reserve=exp_dir / RESERVE_FILE)
    with interruption.catching():
        grid = None
        try:
            grid = _tuner.fit(tuner, search)
        except KeyboardInterrupt:  # a second signal: Ray's loop was left at once
            interruption.signal, interruption.aborted = interruption.signal or "SIGINT", True
        except OSError as exc:  # the driver's own writes (Ray's experiment state) failed
            interruption.fault_seen(f"could not write the search's results: {_mlflow.first_line(exc)}")
            interruption.aborted = True
        interruption.closing = True  # the records are closed whatever signal comes now
        failure = check.problem if check is not None else None
        failure = failure or _exhausted(exp_dir, search)
        try:
            outcome = finish(grid, search, exp_dir, parent, interruption, failure)
        except Exception as exc:  # noqa: BLE001 - Ray's saved state unreadable (cut short by a full disk)...
            why = f"{interruption.reason + '; ' if interruption.reason else ''}the search could not be summed " \
                  f"up: {_mlflow.first_line(exc)}"
            with contextlib.suppress(Exception):
                parent.close_anyhow(why)
            raise SearchFailed(f"{why} (its runs are closed as interrupted; what Ray saved is in {exp_dir})") from None
        finally:
            if stop_ray:
                _tuner.shutdown_ray()
        return outcome


def _exhausted(exp_dir: Path, search: spaces.Search) -> str | None:
    """Why the searcher stopped proposing before the budget, if it did."""
    study = find_study(exp_dir, search.spec.name)
    return None if study is None else study.user_attrs.get(EXHAUSTED_ATTR)
