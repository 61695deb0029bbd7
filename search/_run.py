"""Launch a search: ``run(search)`` is what ``tunelab run`` calls and what tests call directly.

It validates everything it can before writing anything (the search's folder is free and claimed by
this process alone, the space holds a feasible config, the data loads, MLflow answers), opens the
MLflow parent run, records the search in its folder, assembles the Tuner (``_tuner``), fits it and
closes the search (``_summary.finish``), however the fit ends: its budget run, a signal, a fault.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from tunelab import spaces
from tunelab.search import _console, _inputs, _tracking, _tuner, _ui, _warmstart
from tunelab.search._ends import Interruption, MissingObjective
from tunelab.search._errors import SearchFailed, SearchRunningError
from tunelab.search._paths import (RESERVE_FILE, SEARCH_FILE, STATE_FILE, claim, experiment_dir, load_study,
                                   study_storage, write_state)
from tunelab.search._searcher import EXHAUSTED_ATTR, MAX_INFEASIBLE_IN_A_ROW, first_feasible
from tunelab.search._summary import Outcome, close_anyhow, describe, finish
from tunelab.trainables import tags
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
        if (exp_dir / STATE_FILE).exists():
            raise SearchExistsError(
                f"a search named {search.spec.name!r} already exists in {search.storage}; "
                f"resume it with `tunelab resume {search.spec.name}` or choose another --name"
            )
        _check_feasible(search)
        data = _tuner.load_data(search)  # before anything is written
        warm = _warmstart.prepare(search)  # the earlier search warm_start names, if any
        with _console.ray_output(verbose) as ray_log:
            return _launch(search, data, warm, exp_dir, address, verbose, ray_log)


def _check_feasible(search: spaces.Search) -> None:
    """Refuse a space none of whose configs the trainable accepts, before launching anything."""
    reason = first_feasible(search.space, search.base_config,
                            lambda config: search.entry.check(config, dict(search.spec.constraints)))
    if reason is not None:
        raise spaces.SpecError(search.file, "constraints",
                               f"no config of the space is feasible: none of {MAX_INFEASIBLE_IN_A_ROW} drawn at "
                               "random passed the "
                               f"trainable's check (the first: {reason}); loosen the space or its constraints")


def _launch(search: spaces.Search, data, warm, exp_dir: Path, address: str | None, verbose: bool,
            ray_log: _console.RayLog | None) -> Outcome:
    try:
        client = _tracking.client_for(search.tracking_uri)
        exp_id = _tracking.ensure_experiment(client, search.spec.name, search.storage / "mlartifacts")
    except _tracking.TrackingError as exc:
        raise spaces.SpecError(search.file, "tracking.uri", str(exc)) from None
    exp_dir.mkdir(parents=True, exist_ok=True)
    if ray_log is not None:
        ray_log.open(exp_dir / _console.RAY_LOG)
    _ui.save_view(client, exp_id, search.spec.metric, search.spec.mode, search.space.params)
    inputs = _inputs.dataset_inputs(data)
    parent = _open_parent(client, exp_id, search, exp_dir, inputs)
    _warmstart.seed(warm, study_storage(exp_dir), search.spec, client, parent)  # before the first suggestion
    (exp_dir / SEARCH_FILE).write_text(search.resolved_yaml())
    write_state(exp_dir, {
        "name": search.spec.name, "file": search.file, "tracking_uri": search.tracking_uri,
        "experiment_id": exp_id, "parent_run_id": parent, "spec_hash": search.spec_hash,
    })
    started = _tuner.init_ray(address)
    check = _tuner.objective_check(search)
    tuner = _tuner.new_tuner(search, data, exp_dir, exp_id, parent, verbose=verbose, inputs=inputs, check=check)
    outcome = fit_and_finish(tuner, search, exp_dir, client, parent, check, stop_ray=started)
    if check.problem is not None:
        raise MissingObjective(f"{search.file}: {check.problem}; the search was stopped")
    return outcome


def fit_and_finish(tuner, search: spaces.Search, exp_dir: Path, client, parent: str, check=None, *,
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
            interruption.fault_seen(f"could not write the search's results: {_tracking.first_line(exc)}")
            interruption.aborted = True
        interruption.closing = True  # the records are closed whatever signal comes now
        failure = check.problem if check is not None else None
        failure = failure or _exhausted(exp_dir, search)
        try:
            outcome = finish(grid, search, exp_dir, client, parent, interruption, failure)
        except Exception as exc:  # noqa: BLE001 - Ray's saved state unreadable (cut short by a full disk)...
            why = f"{interruption.reason + '; ' if interruption.reason else ''}the search could not be summed " \
                  f"up: {_tracking.first_line(exc)}"
            with contextlib.suppress(Exception):
                close_anyhow(client, client.get_run(parent).info.experiment_id, parent, search.spec.name, why)
            raise SearchFailed(f"{why} (its runs are closed as interrupted; what Ray saved is in {exp_dir})") from None
        finally:
            if stop_ray:
                _tuner.shutdown_ray()
        return outcome


def _exhausted(exp_dir: Path, search: spaces.Search) -> str | None:
    """Why the searcher stopped proposing before the budget, if it did."""
    try:
        return load_study(exp_dir, search.spec.name).user_attrs.get(EXHAUSTED_ATTR)
    except KeyError:  # no study: the search stopped before its first suggestion
        return None


def _open_parent(client, exp_id: str, search: spaces.Search, exp_dir: Path, inputs: list) -> str:
    spec = search.spec
    run_tags = {
        tags.NOTE: describe(search) + "\n\n*Running*: the trials' table follows when the search ends.",
        tags.SPEC_HASH: search.spec_hash,
        tags.TRAINABLE: spec.trainable,
        tags.SAMPLER: spec.sampler.name,
        tags.SCHEDULER: spec.scheduler.name,
        tags.STORAGE: str(exp_dir),
        tags.OVERRIDES: " ".join(search.overrides),
        tags.LOG_PARAMS: ",".join(k for k, p in search.space.params.items() if p.kind.startswith("log")),
    }
    commit = _tracking.git_commit(Path(__file__).resolve().parent)
    if commit:
        run_tags["mlflow.source.git.commit"] = commit
    run = client.create_run(exp_id, run_name=f"{spec.name} (search)", tags=run_tags)
    run_id = run.info.run_id
    client.log_text(run_id, search.text, f"search/{Path(search.file).name}")
    client.log_text(run_id, search.resolved_yaml(), "search/resolved.yaml")
    if inputs:
        client.log_inputs(run_id, datasets=inputs)
    client.log_batch(run_id, params=[
        _tracking.Param(k, str(v)) for k, v in {
            "metric": spec.metric, "mode": spec.mode, "trials": spec.budget.trials,
            "max_concurrent": spec.budget.max_concurrent, "total_flops": spec.budget.total_flops,
            "time_s": spec.budget.time_s, **{f"fixed.{k}": v for k, v in spec.fixed.items()},
        }.items()
    ])
    return run_id
