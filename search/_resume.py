"""Pick a search up again from its folder: ``resume`` (its driver stopped) and ``sync`` (MLflow was down)."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from ray import tune

from tunelab import _mlflow, spaces
from tunelab.search import _console, _inputs, _replay, _tuner
from tunelab.search._children import end_lost_runs
from tunelab.search._parent import ParentRun
from tunelab.search._paths import SEARCH_FILE, STATE_FILE, claim, read_state
from tunelab.search._summary import Outcome, summarize, unfinished

log = logging.getLogger(__name__)


def resume(name: str, storage: str | Path = "runs", *, address: str | None = None, verbose: bool = False) -> Outcome:
    """Resume a search whose driver stopped: finished trials are kept, unfinished ones continue from
    their checkpoints, and the search still runs ``budget.trials`` trials in all.

    Args:
        name: the search's name (its folder under ``storage``).
        storage: the results root it was run with.
        address: Ray cluster address; None starts a local Ray.
        verbose: Ray's own output on the console (else in the search folder's ``ray.log``).

    Raises:
        spaces.SpecError: no such search, or MLflow cannot be used.
        SearchRunningError: another process runs it now.
    """
    state = read_state(Path(storage), name)
    exp_dir = Path(storage).expanduser().resolve() / name
    with claim(exp_dir, name):
        return _resume(state, exp_dir, address, verbose)


def _resume(state: dict, exp_dir: Path, address: str | None, verbose: bool) -> Outcome:
    from tunelab.search._run import fit_and_finish

    search = _reload(exp_dir, state)
    data = _inputs.load_data(search)
    try:  # fails early if tracking is unreachable or refuses the login
        client = _mlflow.client_for(state["tracking_uri"])
        _mlflow.get_run(client, state["parent_run_id"])
    except _mlflow.TrackingError as exc:
        raise spaces.SpecError(str(exp_dir / STATE_FILE), "tracking_uri", str(exc)) from None
    try:
        known = {t.trial_id for t in tune.ExperimentAnalysis(str(exp_dir)).trials}
    except ValueError as exc:  # stopped before Ray saved anything, or what it saved was cut short
        raise spaces.SpecError(str(exp_dir), "name", f"cannot resume {exp_dir.name!r}: Ray's saved state of it is "
                               f"missing or unreadable ({_mlflow.first_line(exc)}); run it again under another "
                               "--name") from None
    parent = ParentRun(client, state["experiment_id"], state["parent_run_id"])
    parent.reopen()
    lost = end_lost_runs(client, parent.experiment_id, parent.run_id, known)
    if lost:
        log.warning("trials %s started after Ray's last snapshot and cannot be resumed; their runs are ended "
                    "as errors and other trials take their place", ", ".join(lost))
    with _console.ray_output(verbose) as ray_log:
        if ray_log is not None:
            ray_log.open(exp_dir / _console.RAY_LOG)
        started = _tuner.init_ray(address)
        tuner = _tuner.restored_tuner(search, data, exp_dir)
        return fit_and_finish(tuner, search, exp_dir, parent, stop_ray=started)


def sync(name: str, storage: str | Path = "runs") -> Outcome:
    """Replay what Ray recorded of search ``name`` into MLflow, for when the server was down.

    Every trial gets its child run (created if MLflow never saw the trial), the reports MLflow lacks
    (steps after the last one it has, so running it twice adds nothing) and, for ended trials, its
    status; the parent run gets its summary once every trial has ended.

    Raises:
        spaces.SpecError: no such search, or MLflow still unreachable.
    """
    root = Path(storage).expanduser().resolve()
    state = read_state(root, name)
    exp_dir = root / name
    with claim(exp_dir, name):
        return _sync(state, exp_dir)


def _sync(state: dict, exp_dir: Path) -> Outcome:
    search = _reload(exp_dir, state)
    client = _mlflow.client_for(state["tracking_uri"])
    parent = ParentRun(client, state["experiment_id"], state["parent_run_id"])
    try:
        closed = parent.is_closed()
    except Exception as exc:  # the client raises many types for "cannot reach the server"
        raise spaces.SpecError(str(exp_dir / STATE_FILE), "tracking_uri",
                               f"cannot use MLflow at {state['tracking_uri']}: {_mlflow.first_line(exc)}") from None
    analysis = _replay.replay(exp_dir, search, parent)
    caught = unfinished(analysis.trials)
    outcome, infeasible = summarize(tune.ResultGrid(analysis), search, exp_dir, parent.run_id, caught)
    if not closed and not caught:
        parent.close(outcome, infeasible)
    return outcome


def _reload(exp_dir: Path, state: dict) -> spaces.Search:
    """The search as its folder records it, where it ran: its results root is the folder's parent and
    its store the one its state names, whatever the current folder (a search file without ``storage``
    names ``./runs``, and its default store with it, relative to where it is read); a relative path
    in its ``data`` section is read from the folder it was launched in (``data.dir: data/ptb``)."""
    search = spaces.load(exp_dir / SEARCH_FILE, _data_where_launched(exp_dir, state))
    search.spec.storage = str(exp_dir.parent)
    search.spec.tracking.uri = state["tracking_uri"]
    return search


def _data_where_launched(exp_dir: Path, state: dict) -> list[str]:
    """``--set data.KEY=PATH`` for each relative path in the recorded ``data`` section that names a
    file or folder under the launch folder (``state["cwd"]``): the trainables' loaders read relative
    paths from the current folder, and ``resume`` may run from another one. Which ``data`` keys are
    paths is the trainable's business (``dir``, ``tokens`` ...), so a value counts as one when it
    exists there."""
    launched = state.get("cwd")
    data = (yaml.safe_load((exp_dir / SEARCH_FILE).read_text()) or {}).get("data") or {}
    if launched is None or not isinstance(data, dict):
        return []
    out = []
    for key, value in data.items():
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            anchored = Path(launched) / value
            if anchored.exists():
                out.append(f"data.{key}={anchored}")
    return out
