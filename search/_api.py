"""``tunelab.run``: a search from Python, with a search file, a catalogue name or a dict, and a lab's
own training function if it has one."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tunelab import spaces, trainables
from tunelab.search._summary import Outcome


def run_search(search: str | os.PathLike | Mapping[str, Any], *, trainable: Callable[[dict], Any] | None = None,
               overrides: Iterable[str] | Mapping[str, Any] | None = None, name: str | None = None,
               storage: str | os.PathLike | None = None, address: str | None = None,
               verbose: bool = False) -> Outcome:
    """Run a search and return what it found.

    Args:
        search: a search file's path, a name of the catalogue (``"ptb_smoke"``), or a dict shaped
            like a search file.
        trainable: a plain function ``train(config: dict) -> None`` to search instead of a registered
            trainable (the search's ``trainable:`` may then be left out, and ``data:`` too). It
            reports with ``tunelab.report`` (or ``ray.tune.report``); returning means completed.
        overrides: ``key=value`` strings, as ``--set`` takes them, or a dict of them.
        name: the search's name (default: the file's ``name``).
        storage: the results root (default: the file's ``storage``, else ``./runs``).
        address: a Ray cluster's address (default: local Ray).
        verbose: Ray's own output on the console instead of the live view.

    Returns:
        The search's ``Outcome``: ``name``, ``best_config``, ``best_value``, ``trials`` (one
        ``TrialSummary`` each: name, status, params, best), ``experiment_dir``, ``tracking_uri``, and
        ``state``: FINISHED (it ran its budget), INTERRUPTED (Ctrl-C, SIGTERM or a full disk ended it
        first, ``reason`` says which; ``tunelab.search.resume`` goes on) or FAILED.

    Raises:
        tunelab.spaces.SpecError: bad input (one line naming the field); nothing is started.
        tunelab.search.SearchExistsError: a search of that name has results in the storage already.
    """
    from tunelab.search._run import run

    if isinstance(overrides, Mapping):
        overrides = [f"{k}={_value(v)}" for k, v in overrides.items()]
    sets = list(overrides or [])
    if name is not None:
        sets.append(f"name={name}")
    if storage is not None:
        sets.append(f"storage={os.fspath(storage)}")
    entry = None
    if trainable is not None:
        entry = trainables.Entry.of_function(getattr(trainable, "__name__", "train"), trainable)
    return run(spaces.load(search, sets, entry=entry), address=address, verbose=verbose)


def _value(v: Any) -> str:
    """An override's value as ``--set`` text (YAML: lists and dicts in flow style)."""
    import yaml

    return v if isinstance(v, str) else yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()
