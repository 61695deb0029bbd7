"""Launch a search: ``run(search)`` is what ``tunelab run`` calls and what tests call directly.

It validates everything it can before writing anything (the search's folder is free, the data loads,
MLflow answers), opens the MLflow parent run, records the search in its folder, assembles the Tuner
(``_tuner``), fits it and closes the search (``_summary.finish``).
"""

from __future__ import annotations

from pathlib import Path

from tunelab import spaces
from tunelab.search import _console, _inputs, _tracking, _tuner, _ui, _warmstart
from tunelab.search._ends import MissingObjective
from tunelab.search._paths import SEARCH_FILE, STATE_FILE, experiment_dir, study_storage, write_state
from tunelab.search._summary import Outcome, describe, finish


class SearchExistsError(ValueError):
    """A search of that name already has results; resume it or choose another name."""


def run(search: spaces.Search, *, address: str | None = None, verbose: bool = False) -> Outcome:
    """Run a search from the beginning.

    Args:
        search: a loaded search file (``spaces.load``).
        address: Ray cluster address; None starts (or reuses) a local Ray.
        verbose: Ray's own progress output on the console (else the live view, and Ray's output in
            the search folder's ``ray.log``).

    Raises:
        SearchExistsError: the experiment folder already holds a search of that name.
        spaces.SpecError: the data or the tracking server cannot be used; nothing is started or written.
        MissingObjective: a trial's report lacked the objective; the search was ended and closed.
    """
    exp_dir = experiment_dir(search)
    if (exp_dir / STATE_FILE).exists():
        raise SearchExistsError(
            f"a search named {search.spec.name!r} already exists in {search.storage}; "
            f"resume it with `tunelab resume {search.spec.name}` or choose another --name"
        )
    data = _tuner.load_data(search)  # before anything is written
    warm = _warmstart.prepare(search)  # the earlier search warm_start names, if any
    with _console.ray_output(verbose) as ray_log:
        return _launch(search, data, warm, exp_dir, address, verbose, ray_log)


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
    outcome = finish(_tuner.fit(tuner), search, exp_dir, client, parent)
    if started:  # now, so that the trials' last lines, which Ray flushes when it stops, go to ray.log
        _tuner.shutdown_ray()
    if check.problem is not None:
        raise MissingObjective(f"{search.file}: {check.problem}; the search was stopped")
    return outcome


def _open_parent(client, exp_id: str, search: spaces.Search, exp_dir: Path, inputs: list) -> str:
    spec = search.spec
    tags = {
        _tracking.NOTE_TAG: describe(search) + "\n\n*Running*: the trials' table follows when the search ends.",
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
