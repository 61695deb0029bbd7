"""Transfer: re-run the best finished configs of an earlier search, with overrides and more seeds.

What every search ends with: its winners trained again with more epochs, more seeds or a wider model
(µP's width transfer). ``transfer`` reads the earlier search from its results folder (its resolved
search file and its Optuna study, as ``resume`` and the warm start find them), builds a new search
file (``transfer_spec``) whose ``points_to_evaluate`` are the K best configs, each once per seed, and
runs it as ``tunelab run`` runs any search. The new parent run names the earlier one (tag
``tunelab.transfer_from``) and says in its description what was transferred.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from optuna.trial import TrialState

from tunelab import _mlflow, spaces, trainables
from tunelab.search._paths import SEARCH_FILE, find_study, read_state
from tunelab.search._warmstart import SOURCE_ATTR
from tunelab.trainables import tags

if TYPE_CHECKING:
    from tunelab.search._summary import Outcome

log = logging.getLogger(__name__)

SEED = "seed"  # the trainable parameter that ``seeds`` varies
CLI = "tunelab transfer"  # how refusals of the arguments name their source


@dataclasses.dataclass(frozen=True)
class Source:
    """The earlier search, as its folder holds it.

    Attributes:
        name: its name (its folder under the results root).
        folder: its results folder.
        spec: its resolved search file (``search.yaml``), as a mapping.
        state: what ``tunelab run`` recorded (``tunelab.json``): tracking URI, experiment, parent run.
        finished: its COMPLETE trials with a finite value, in the order they were asked: (params, value).
    """

    name: str
    folder: Path
    spec: dict[str, Any]
    state: dict[str, Any]
    finished: list[tuple[dict[str, Any], float]]

    @property
    def parent_run_id(self) -> str:
        return self.state["parent_run_id"]

    def best(self, top: int) -> list[dict[str, Any]]:
        """The params of its ``top`` best finished trials, best first (ties: the earlier trial)."""
        sign = -1.0 if self.spec.get("mode", "min") == "max" else 1.0
        ranked = sorted(range(len(self.finished)), key=lambda i: (sign * self.finished[i][1], i))
        return [dict(self.finished[i][0]) for i in ranked[:top]]


def read_source(name: str, storage: str | Path = "runs") -> Source:
    """Read search ``name`` under ``storage``: its resolved search file and its finished trials.

    Trials a warm start added to its study (run by another search) are not its own and are left out;
    so are diverged trials (COMPLETE with an infinite value).

    Raises:
        spaces.SpecError: no search of that name, or it has no finished trial.
    """
    root = Path(storage).expanduser().resolve()
    state = read_state(root, name)
    folder = root / name
    resolved = folder / SEARCH_FILE
    if not resolved.exists():
        raise spaces.SpecError(str(root), "name", f"no search named {name!r} under {root} (no {SEARCH_FILE} there)")
    spec = yaml.safe_load(resolved.read_text()) or {}
    study = find_study(folder, spec.get("name") or name)  # None: it stopped before its first suggestion
    trials = study.get_trials(deepcopy=False) if study is not None else []
    finished = [(dict(t.params), float(t.value)) for t in trials
                if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
                and SOURCE_ATTR not in t.user_attrs]
    if not finished:
        raise spaces.SpecError(str(folder), "name", f"search {name!r} has no finished (COMPLETE) trial to transfer")
    return Source(name, folder, spec, state, finished)


def transfer_spec(source: Source, *, top: int = 3, seeds: int = 1, overrides: Sequence[str] = (),
                  new_name: str | None = None) -> dict[str, Any]:
    """The new search's file, as a mapping: the ``top`` best configs of ``source``, each run once per
    seed, with ``overrides`` applied.

    - ``trainable``, ``metric``, ``mode``, ``data``, ``resources``, ``budget.max_concurrent`` and
      ``fixed`` are the source's; ``tracking`` is the store its parent run is in; ``storage`` its
      results root; ``scheduler`` FIFO (every trial runs to its end); ``sampler`` random with the
      source's seed (every trial is a given point: nothing is sampled). Its ``constraints`` are not
      carried: a transfer often goes past the size the earlier search was held to (``--set
      constraints.NAME=...`` gives one back).
    - ``space`` is the source's (a ``grid`` parameter becomes a ``choice`` of the same values: the
      points, not a grid, say what runs); ``points_to_evaluate`` the top configs' values of it, each
      repeated for every seed; ``budget.trials`` their number.
    - With ``seeds`` > 1 the trainable's ``seed`` parameter leaves ``fixed`` for ``space`` as a
      ``choice`` of the source's seed + 0 .. seeds-1 (a config's own seed, if the source searched it),
      and each point names its seed.
    - ``overrides`` are ``--set key=value`` arguments, read as ``tunelab run`` reads them
      (``spaces.apply_override``): a parameter they set is fixed and leaves ``space`` and the points.

    Args:
        source: the earlier search (``read_source``).
        top: how many of its best finished configs (fewer if it finished fewer).
        seeds: how many seeds each config runs with.
        overrides: ``key=value`` strings.
        new_name: the new search's name (default ``NAME-transfer``).

    Raises:
        spaces.SpecError: ``top`` or ``seeds`` below 1; ``seeds`` > 1 for a trainable without a ``seed``
            parameter, or with ``seed`` set by an override. A parameter the trainable does not know is
            refused when the mapping is loaded (``spaces.load``), as ``tunelab run --set`` refuses it.
    """
    if top < 1:
        raise spaces.SpecError(CLI, "--top", f"at least 1 expected (got {top})")
    if seeds < 1:
        raise spaces.SpecError(CLI, "--seeds", f"at least 1 expected (got {seeds})")
    src = source.spec
    fixed = dict(src.get("fixed") or {})
    space = {k: _as_choice(p) for k, p in (src.get("space") or {}).items()}
    best = source.best(top)
    points = [{k: v for k, v in params.items() if k in space} for params in best]
    if seeds > 1:
        _refuse_seeds(source, seeds, overrides)
        start = fixed.pop(SEED, None)
        if start is None:
            start = _entry(source).defaults().get(SEED) or 0
        points = [{**p, SEED: p.get(SEED, start) + i} for p in points for i in range(seeds)]
        space[SEED] = {"choice": sorted({p[SEED] for p in points})}
    spec: dict[str, Any] = {
        "name": new_name or f"{source.name}-transfer",
        "trainable": src.get("trainable"),
        "metric": src.get("metric", "val_ppl"),
        "mode": src.get("mode", "min"),
        "fixed": fixed,
        "space": space,
        "points_to_evaluate": points,
        "sampler": {"name": "random", "seed": (src.get("sampler") or {}).get("seed", 0)},
        "scheduler": {"name": "fifo", **_time_attr(src)},
        "budget": {"trials": len(points), "max_concurrent": (src.get("budget") or {}).get("max_concurrent", 2)},
        "data": dict(src.get("data") or {}),
        "storage": str(source.folder.parent),
        "tracking": {"uri": source.state["tracking_uri"]},
    }
    if src.get("resources"):
        spec["resources"] = dict(src["resources"])
    for item in overrides:
        spaces.apply_override(CLI, spec, item)
    return spec


def transfer(name: str, storage: str | Path = "runs", *, top: int = 3, seeds: int = 1, overrides: Iterable[str] = (),
             new_name: str | None = None, address: str | None = None, verbose: bool = False) -> Outcome:
    """Run the ``top`` best finished configs of search ``name`` again, ``seeds`` times each, with
    ``overrides``, as a new search (``transfer_spec``) in the same results root and MLflow store.

    Args:
        name: the earlier search (its folder under ``storage``).
        storage: the results root it was run with.
        top: how many of its best finished configs.
        seeds: how many seeds each config runs with (the trainable's ``seed`` parameter).
        overrides: ``key=value`` strings, as ``tunelab run --set`` takes them (``epochs=20``).
        new_name: the new search's name (default ``NAME-transfer``).
        address: Ray cluster address; None starts (or reuses) a local Ray.
        verbose: Ray's own output on the console.

    Returns:
        The new search's ``Outcome``. Its parent run carries ``tunelab.transfer_from`` (the earlier
        search's parent run id) and a description that says what was transferred.

    Raises:
        spaces.SpecError: no such search, no finished trial, bad ``top`` / ``seeds``, an override the
            trainable refuses; nothing is started.
        SearchExistsError: the new name is taken (resume that search or choose another ``new_name``).
    """
    from tunelab.search._run import run

    overrides = tuple(overrides)
    source = read_source(name, storage)
    spec = transfer_spec(source, top=top, seeds=seeds, overrides=overrides, new_name=new_name)
    search = _load(spec, overrides)
    outcome = run(search, address=address, verbose=verbose)
    _link(outcome, source, min(top, len(source.finished)), seeds, overrides)
    return outcome


def _load(spec: dict[str, Any], overrides: Sequence[str]) -> spaces.Search:
    """``spaces.load`` of the new search; its refusals name the command, and an unknown parameter the
    ``--set`` that gave it. The overrides are in ``spec`` already; given again (to the same effect) they
    are recorded as the search's own, on its parent run's ``tunelab.overrides``."""
    try:
        return spaces.load(spec, overrides)
    except spaces.SpecError as exc:
        field = exc.field
        keys = {item.partition("=")[0].strip() for item in overrides}
        if field.startswith("fixed.") and field.removeprefix("fixed.") in keys:
            field = f"--set {field.removeprefix('fixed.')}"
        raise spaces.SpecError(CLI, field, exc.message) from None


def _link(outcome: Outcome, source: Source, top: int, seeds: int, overrides: Sequence[str]) -> None:
    """Name the earlier search on the new parent run, once it has ended.

    Written after ``run`` rather than passed into it: ``run`` stays the one path every search takes,
    and its parent run's description is rewritten when the search closes, so a line added before would
    be lost. A resumed transfer rewrites the description again; the tag stays.
    """
    experiment = source.state.get("experiment_id", "")
    what = (f"**Transfer** of search **{source.name}** (parent run [{source.parent_run_id}]"
            f"(#/experiments/{experiment}/runs/{source.parent_run_id})): its {top} best finished "
            f"config{'s' if top > 1 else ''} × {seeds} seed{'s' if seeds > 1 else ''}, "
            + (f"with {' '.join(f'`{o}`' for o in overrides)}." if overrides else "as they were."))
    try:
        client = _mlflow.client_for(outcome.tracking_uri)
        note = client.get_run(outcome.parent_run_id).data.tags.get(tags.NOTE, "")
        client.set_tag(outcome.parent_run_id, tags.TRANSFER_FROM, source.parent_run_id)
        client.set_tag(outcome.parent_run_id, tags.NOTE, f"{what}\n\n{note}" if note else what)
    except Exception as exc:  # noqa: BLE001 - the client raises many types for "cannot reach the server"
        log.warning("could not name the earlier search %s on the parent run %s: %s", source.name,
                    outcome.parent_run_id, _mlflow.first_line(exc))


def _as_choice(param: dict[str, Any]) -> dict[str, Any]:
    if isinstance(param, dict) and "grid" in param:
        return {**{k: v for k, v in param.items() if k != "grid"}, "choice": param["grid"]}
    return param


def _time_attr(src: dict[str, Any]) -> dict[str, Any]:
    attr = (src.get("scheduler") or {}).get("time_attr")
    return {"time_attr": attr} if attr else {}


def _entry(source: Source) -> trainables.Entry:
    entry = trainables.REGISTRY.get(source.spec.get("trainable"))
    if entry is None:
        raise spaces.SpecError(str(source.folder), "trainable", f"search {source.name!r} ran trainable "
                               f"{source.spec.get('trainable')!r}, which is not registered here; expected one of: "
                               f"{', '.join(sorted(trainables.REGISTRY))}")
    return entry


def _refuse_seeds(source: Source, seeds: int, overrides: Sequence[str]) -> None:
    entry = _entry(source)
    if SEED not in entry.parameters:
        raise spaces.SpecError(CLI, "--seeds", f"trainable {entry.name!r} has no {SEED!r} parameter, so "
                               f"{seeds} seeds would run the same config {seeds} times; expected --seeds 1")
    if any(item.partition("=")[0].strip() == SEED for item in overrides):
        raise spaces.SpecError(CLI, "--seeds", f"--set {SEED}=... fixes the seed that --seeds {seeds} varies; "
                               "give one of them")
