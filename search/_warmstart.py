"""Warm start: an earlier search's finished trials seed a new search's study before its first suggestion.

The search file's ``warm_start`` names the earlier search by its results folder (``{search: NAME,
storage: DIR}``: its Optuna study, the journal beside Ray's results) or by its MLflow experiment
(``{experiment: NAME, tracking: URI}``: its child runs' params, metric histories and ``tunelab.status``
tags, and the infeasible configs its parent runs list in ``report/infeasible.json``).

Each finished trial becomes an Optuna ``FrozenTrial`` in the new search's space, added with
``Study.add_trials``: its parameters (with the new space's distributions), its final value, its
intermediate values (step = training iteration, as the searcher reports them), and its state as the
searcher would have told it (``_searcher.tell_end``): completed -> COMPLETE; diverged -> COMPLETE with
the worst value; stopped early -> PRUNED; out of memory -> PRUNED with the ``fits_memory`` constraint
violated; infeasible -> PRUNED with ``feasible`` violated, if this search's ``check`` still rejects
it. A trial is taken only when the new space would have proposed exactly its values: every parameter
the new space samples for it (conditions included) is there and lies inside its distribution. Failed
and unfinished trials are skipped. Parameters the new search no longer samples are dropped.

Added trials carry the user attribute ``warm_start`` (where they came from) and no ``tunelab_status``,
so the new search's own counts (``n_infeasible``, the summary) leave them out.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from tunelab import _mlflow, spaces
from tunelab.search._paths import SEARCH_FILE, STUDY_FILE
from tunelab.search._searcher import REASON_ATTR, open_storage
from tunelab.trainables import metrics
from tunelab.trainables import tags

SOURCE_ATTR = "warm_start"  # user attribute of every added trial: where it came from
# Why a trial of the earlier search was not taken (the parent run's tag lists the counts).
OUTSIDE = "outside the space"
UNFINISHED = "failed or unfinished"
NOW_FEASIBLE = "feasible under this search's constraints"
_EPS = 1e-9  # relative tolerance for a float on a stepped grid


@dataclasses.dataclass
class WarmStart:
    """What an earlier search gives a new one.

    Attributes:
        source: where the trials came from, in words ("search NAME in DIR", "experiment NAME at URI").
        trials: the trials to add, in the earlier search's order.
        skipped: how many trials were left out, by reason.
    """

    source: str
    trials: list[FrozenTrial]
    skipped: dict[str, int]

    @property
    def taken(self) -> int:
        return len(self.trials)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def describe(self) -> str:
        why = ", ".join(f"{n} {reason}" for reason, n in self.skipped.items() if n)
        return f"{self.source}: {self.taken} trials taken, {self.n_skipped} skipped" + (f" ({why})" if why else "")


def prepare(search: spaces.Search) -> WarmStart | None:
    """Read the earlier search that ``search``'s ``warm_start`` names; writes nothing.

    Args:
        search: the new search.

    Returns:
        None when the file has no ``warm_start``.

    Raises:
        spaces.SpecError: the earlier search cannot be found or read, or optimised something else.
    """
    ws = search.spec.warm_start
    if ws is None:
        return None
    if ws.search is not None:
        root = Path(ws.storage).expanduser().resolve() if ws.storage else search.storage
        return _from_folder(search, root / ws.search)
    return _from_mlflow(search, ws.experiment, ws.tracking or search.tracking_uri)


def seed(warm: WarmStart | None, storage: str, spec: spaces.Spec) -> None:
    """Add the earlier trials to the new search's study (created in ``storage``, a journal path); the
    parent run notes how many were taken and skipped, and from where (``WarmStart.describe``)."""
    if warm is None:
        return
    study = optuna.create_study(storage=open_storage(storage), study_name=spec.name, load_if_exists=True,
                                direction="minimize" if spec.mode == "min" else "maximize")
    study.add_trials(warm.trials)


# --- the earlier search's results folder: its Optuna study ------------------------------------------
def _from_folder(search: spaces.Search, folder: Path) -> WarmStart:
    spec = search.spec
    path = folder / STUDY_FILE
    resolved = folder / SEARCH_FILE
    if not path.exists() or not resolved.exists():
        raise spaces.SpecError(search.file, "warm_start.search",
                               f"no search named {folder.name!r} under {folder.parent} (no {STUDY_FILE} there)")
    earlier = yaml.safe_load(resolved.read_text()) or {}
    _same_trainable(search, "warm_start.search", earlier.get("trainable"), folder.name)
    if (earlier.get("metric"), earlier.get("mode")) != (spec.metric, spec.mode):
        raise spaces.SpecError(
            search.file, "warm_start.search",
            f"search {folder.name!r} optimised {earlier.get('metric')} ({earlier.get('mode')}), this one "
            f"{spec.metric} ({spec.mode}); its study's values do not apply: warm-start from its MLflow "
            f"experiment instead (warm_start: {{experiment: {folder.name}}}), whose runs keep every metric")
    try:  # read as it is (the earlier search may still be writing it): a line cut short is skipped
        study = optuna.load_study(study_name=None, storage=JournalStorage(JournalFileBackend(str(path))))
    except Exception as exc:
        raise spaces.SpecError(search.file, "warm_start.search",
                               f"cannot read the study in {path}: {str(exc).splitlines()[0]}") from None
    source = f"search {folder.name} in {folder.parent}"
    out, skipped = [], collections.Counter()
    for t in study.get_trials(deepcopy=False):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            skipped[UNFINISHED] += 1
            continue
        reason, trial = _to_trial(search, source, t.params, t.state, t.value, t.intermediate_values,
                                  t.constraints, t.constraints.get("feasible", 0.0) > 0)
        if trial is None:
            skipped[reason] += 1
        else:
            out.append(trial)
    return WarmStart(source, out, dict(skipped))


# --- the earlier search's MLflow experiment: its child runs -------------------------------------------
def _from_mlflow(search: spaces.Search, experiment: str, uri: str) -> WarmStart:
    field = "warm_start.experiment"
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():  # the client would create it
        raise spaces.SpecError(search.file, "warm_start.tracking", f"no MLflow database at {uri[len('sqlite:///'):]}")
    try:
        client = _mlflow.client_for(uri)
        exp = client.get_experiment_by_name(experiment)
        runs = _mlflow.all_runs(client, exp.experiment_id) if exp is not None else []
    except _mlflow.TrackingError as exc:
        raise spaces.SpecError(search.file, "warm_start.tracking", str(exc)) from None
    except Exception as exc:  # the client raises many types for "cannot reach the server"
        raise spaces.SpecError(search.file, "warm_start.tracking",
                               f"cannot use MLflow at {uri}: {_mlflow.first_line(exc)}") from None
    if exp is None:
        raise spaces.SpecError(search.file, field, f"no MLflow experiment named {experiment!r} at {uri}")
    parents = [r for r in runs if tags.PARENT not in r.data.tags]
    kids = [r for r in runs if tags.PARENT in r.data.tags]
    if not kids:
        raise spaces.SpecError(search.file, field, f"experiment {experiment!r} at {uri} has no trial runs")
    for p in parents:
        _same_trainable(search, field, p.data.tags.get(tags.TRAINABLE), experiment)
    source = f"experiment {experiment} at {uri}"
    metric = search.spec.metric
    worst = math.inf if search.spec.mode == "min" else -math.inf
    out, skipped = [], collections.Counter()
    for run in sorted(kids, key=lambda r: r.info.start_time or 0):
        status = run.data.tags.get(tags.STATUS)
        if status not in (metrics.COMPLETED, metrics.STATUS_DIVERGED, metrics.STOPPED_EARLY, metrics.STATUS_OOM):
            skipped[UNFINISHED] += 1
            continue
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, metric)
                   if m.value is not None and math.isfinite(m.value) and abs(m.value) < 1.7e308}
        # Optuna gives a PRUNED trial its last intermediate value as its value; so does this.
        state, value, constraints = TrialState.PRUNED, history[max(history)] if history else None, {}
        if status == metrics.COMPLETED and history:
            state, value = TrialState.COMPLETE, history[max(history)]
        elif status == metrics.STATUS_DIVERGED:
            state, value = TrialState.COMPLETE, worst
        elif status == metrics.STATUS_OOM:
            constraints = {"fits_memory": 1.0}
        elif status == metrics.COMPLETED:  # completed without a value of the metric: nothing to learn
            skipped[UNFINISHED] += 1
            continue
        reason, trial = _to_trial(search, source, dict(run.data.params), state, value, history, constraints, False)
        if trial is None:
            skipped[reason] += 1
        else:
            out.append(trial)
    for p in parents:  # infeasible configs never ran: the parent lists them
        for row in _infeasible_rows(client, p.info.run_id):
            reason, trial = _to_trial(search, source, row.get("params") or {}, TrialState.PRUNED, None, {},
                                      {"feasible": 1.0}, True)
            if trial is None:
                skipped[reason] += 1
            else:
                out.append(trial)
    return WarmStart(source, out, dict(skipped))


def _infeasible_rows(client, parent_run_id: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(parent_run_id, "report/infeasible.json", tmp)
        except Exception:  # a search without infeasible configs has no such artifact
            return []
        return json.loads(Path(path).read_text())


def _same_trainable(search: spaces.Search, field: str, trainable: str | None, name: str) -> None:
    if trainable is not None and trainable != search.spec.trainable:
        raise spaces.SpecError(search.file, field, f"{name!r} searched trainable {trainable!r}, this search "
                               f"{search.spec.trainable!r}; their parameters do not compare")


# --- one earlier trial -> one trial of the new space ---------------------------------------------------
def _to_trial(search: spaces.Search, source: str, params: Mapping[str, Any], state: TrialState,
              value: float | None, intermediate: Mapping[int, float], constraints: Mapping[str, float],
              infeasible: bool) -> tuple[str, FrozenTrial | None]:
    """(why not, None) or ("", the trial) for one earlier trial's values and outcome."""
    fitted = fit(search.space, params)
    if fitted is None:
        return OUTSIDE, None
    values, dists = fitted
    if infeasible and search.entry.check({**search.base_config, **values}, dict(search.spec.constraints)) is None:
        return NOW_FEASIBLE, None
    attrs = {SOURCE_ATTR: source}
    if infeasible:
        attrs[REASON_ATTR] = "infeasible in the earlier search"
    trial = optuna.trial.create_trial(
        state=state, value=value, params=values, distributions=dists,
        intermediate_values={int(k): float(v) for k, v in intermediate.items()}, user_attrs=attrs,
        constraints=dict(constraints) or None,
    )
    return "", trial


def fit(space: spaces.CompiledSpace, params: Mapping[str, Any]) -> tuple[dict, dict[str, BaseDistribution]] | None:
    """The values ``space`` would sample for an earlier trial's ``params`` with its distributions, or None.

    The space itself is run against the values (an Optuna ``FixedTrial``), so its conditions decide
    which parameters exist; each must be among ``params`` (MLflow's strings are read as the parameter's
    type) and lie inside its distribution.
    """
    typed = {}
    for name, p in space.params.items():
        if name in params:
            v = _typed(params[name], p)
            if v is _MISSING:
                return None
            typed[name] = v
    trial = optuna.trial.FixedTrial(typed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FixedTrial warns of values out of range: checked below
            space(trial)
    except ValueError:  # a parameter the new space samples is missing, or a choice it does not offer
        return None
    if not all(_inside(trial.distributions[n], v) for n, v in trial.params.items()):
        return None
    return dict(trial.params), dict(trial.distributions)


_MISSING = object()


def _typed(value: Any, p) -> Any:
    """A parameter's value as the space's type (MLflow keeps params as strings)."""
    if p.kind in ("choice", "grid"):
        if value in p.values and not isinstance(value, str):
            return value
        for choice in p.values:  # MLflow's "lstm", "2", "True", "None" against the choices themselves
            if choice == value or str(choice) == str(value):
                return choice
        return _MISSING
    try:
        if p.kind in ("int", "logint"):
            number = float(value)
            return int(number) if number.is_integer() else _MISSING
        return float(value)
    except (TypeError, ValueError):
        return _MISSING


def _inside(dist: BaseDistribution, value: Any) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return True  # to_internal_repr refused any value not among the choices
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        if not dist.low <= value <= dist.high:
            return False
        if dist.step is not None:
            k = (value - dist.low) / dist.step
            return abs(k - round(k)) <= _EPS * max(1.0, abs(k))
        return True
    return False
