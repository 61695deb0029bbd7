"""Read a search file, apply ``--set`` overrides, validate it against its trainable.

Everything a search file can get wrong is found here, before Ray, MLflow or the data are touched, and
reported as one ``SpecError`` naming the file, the field and what was expected.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pydantic
import yaml

from tunelab import trainables
from tunelab.spaces._errors import SpecError
from tunelab.spaces._paths import CATALOGUE
from tunelab.spaces._schema import POPULATION_SCHEDULERS, Sampler, Spec
from tunelab.spaces._space import CompiledSpace
from tunelab.trainables import metrics



class _Loader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where ``1e-3`` is a string; search files mean the YAML 1.2 float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)

class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, second: int):
        super().__init__(f"{key!r} given twice")
        self.key, self.first, self.second = key, first, second


def _mapping_once(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """A mapping whose keys are each given once: YAML lets a later key silently win over an earlier one
    (a second ``mode:`` or ``budget:`` block), which in a search file is always a mistake."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise _DuplicateKey(key, seen[key], line)
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_once)

# Attributes a scheduler can measure progress in, besides the metrics themselves.
_PROGRESS_ATTRS = ("training_iteration", "time_total_s")


@dataclasses.dataclass(frozen=True)
class Search:
    """A validated search file, ready to become a Tuner.

    Attributes:
        file: the path as given (a catalogue name: the catalogue file's path; a dict: ``<dict>``).
        text: the file's text as read (logged with the search so it can be re-run).
        spec: the validated spec, overrides applied.
        overrides: the ``--set`` arguments applied, in order.
        base_config: defaults < fixed < overrides: what every trial gets before sampling.
        space: the compiled define-by-run space.
        entry: the trainable (the registry's entry named by ``trainable:``, or the one given to ``load``).
    """

    file: str
    text: str
    spec: Spec
    overrides: tuple[str, ...]
    base_config: dict[str, Any]
    space: CompiledSpace
    entry: trainables.Entry

    @property
    def spec_hash(self) -> str:
        """Content hash of the resolved spec: equal hashes, equal searches."""
        blob = self.spec.model_dump_json() + repr(sorted(self.base_config.items()))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def storage(self) -> Path:
        return Path(self.spec.storage or "runs").expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        return self.spec.tracking.uri or f"sqlite:///{self.storage / 'mlflow.db'}"

    @property
    def resources(self) -> dict[str, float]:
        res = self.spec.resources
        return dict(res.model_dump()) if res is not None else dict(self.entry.resources)

    def resolved_yaml(self) -> str:
        """The spec with overrides applied, as YAML: running it reproduces the search."""
        # Only what the file and the overrides set (defaults fill in again when it is loaded): a search
        # file the way a person writes one, not every unused distribution kind as null.
        return yaml.safe_dump(self.spec.model_dump(mode="json", exclude_unset=True), sort_keys=False)


def find(name: str | os.PathLike) -> Path:
    """The search file ``name`` means: a file of that path if there is one, else the catalogue's
    ``spaces/NAME.yaml`` (``ptb_smoke`` or ``ptb_smoke.yaml``).

    Raises:
        SpecError: neither exists; the message lists the catalogue.
    """
    path = Path(name).expanduser()
    if path.exists():
        return path
    if len(path.parts) == 1:
        shipped = CATALOGUE / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
        if shipped.exists():
            return shipped
    raise SpecError(str(name), "", f"no such file, nor a search of the catalogue ({', '.join(catalogue())}; "
                    "`tunelab spaces` lists them)")


def catalogue() -> list[str]:
    """The names of the shipped search files (``tunelab run NAME`` runs one)."""
    return sorted(p.stem for p in CATALOGUE.glob("*.yaml"))


def load(path: str | os.PathLike | Mapping[str, Any], overrides: Iterable[str] = (),
         entry: trainables.Entry | None = None) -> Search:
    """Read and validate a search file.

    Args:
        path: the YAML search file, a name of the catalogue (``ptb_smoke``), or a dict shaped like
            a search file.
        overrides: ``key=value`` strings; ``key`` is a dotted field (``budget.trials``) or a trainable
            parameter, which is then fixed (it wins over the sampled value and leaves ``space``).
        entry: the trainable to search, instead of the registry's entry that ``trainable:`` names
            (which may then be left out).

    Raises:
        SpecError: with one line naming the file, the field and what was expected.
    """
    if isinstance(path, Mapping):
        file, raw = "<dict>", copy.deepcopy(dict(path))
        text = yaml.safe_dump(raw, sort_keys=False)
    else:
        file = str(path)
        found = find(path)
        file = file if found == Path(path).expanduser() else str(found)
        try:
            text = found.read_text()
        except OSError as exc:
            raise SpecError(file, "", f"cannot read the search file ({exc.strerror})") from None
        raw = parse_yaml(file, text)
    if not isinstance(raw, dict):
        raise SpecError(file, "", f"expected a mapping of search fields, got {type(raw).__name__}")
    if entry is not None:
        raw["trainable"] = entry.name
    overrides = tuple(overrides)
    for item in overrides:
        apply_override(file, raw, item)
    try:
        spec = Spec.model_validate(raw)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        got = f" (got {err['input']!r})" if not isinstance(err.get("input"), dict) else ""
        raise SpecError(file, field, f"{_clean(err['msg'])}{got}") from None
    entry = entry or _registered(file, spec)
    base = _validate(file, spec, entry)
    if spec.configs:
        space = CompiledSpace.of_configs(spec.configs, spec.fixed)
    else:
        space = CompiledSpace(_ordered(file, spec), spec.fixed)
    return Search(file, text, spec, overrides, base, space, entry)


def parse_yaml(file: str, text: str) -> Any:
    """A search file's YAML; a syntax error or a key given twice is a SpecError naming the line."""
    try:
        return yaml.load(text, Loader=_Loader)
    except _DuplicateKey as exc:
        raise SpecError(file, str(exc.key), f"given twice (lines {exc.first} and {exc.second}); "
                        "expected each key once") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(file, "", f"YAML syntax error{where}: {getattr(exc, 'problem', None) or exc}") from None


def _clean(msg: str) -> str:
    return msg.removeprefix("Value error, ")


def _parse_value(text: str) -> Any:
    return yaml.load(text, Loader=_Loader) if text.strip() else ""


def apply_override(file: str, raw: dict, item: str) -> None:
    """Apply one ``--set key=value`` to a search file's raw mapping, in place, as ``load`` does: a
    dotted field (``budget.trials=4``) is set; a bare name is a trainable parameter, fixed, and leaves
    ``space``, every point of ``points_to_evaluate`` and every one of ``configs``. The value is read as YAML (``1e-3`` a float).

    Raises:
        SpecError: not ``key=value``, or a part of the key is not a mapping.
    """
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(file, f"--set {item}", "expected key=value")
    path = key.split(".")
    if path[0] not in Spec.model_fields:
        path = ["fixed", *path]  # a bare name is a trainable parameter
    node = raw
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SpecError(file, f"--set {key}", f"{part} is not a mapping")
        node = child
    node[path[-1]] = _parse_value(value)
    if path[0] == "fixed" and len(path) == 2:  # --set wins over sampled and over warm-start points
        if isinstance(raw.get("space"), dict):
            raw["space"].pop(path[1], None)
        for point in [*(raw.get("points_to_evaluate") or []), *(raw.get("configs") or [])]:
            if isinstance(point, dict):
                point.pop(path[1], None)


def _registered(file: str, spec: Spec) -> trainables.Entry:
    """The registry's entry that ``trainable:`` names."""
    if spec.trainable is None:
        raise SpecError(file, "trainable", f"missing; expected one of: {', '.join(sorted(trainables.REGISTRY))} "
                        "(or a function given to tunelab.run)")
    entry = trainables.REGISTRY.get(spec.trainable)
    if entry is None and spec.trainable in trainables.REGISTRY.broken:
        raise SpecError(file, "trainable", f"the trainable plugin {spec.trainable!r} could not be loaded: "
                        f"{trainables.REGISTRY.broken[spec.trainable]}")
    if entry is None:
        raise SpecError(file, "trainable", f"unknown trainable {spec.trainable!r}; expected one of: "
                        f"{', '.join(sorted(trainables.REGISTRY))}")
    return entry


def _check_metrics(file: str, spec: Spec, entry: trainables.Entry) -> None:
    """The objective and the scheduler's progress attribute are names the trainable reports.

    A built-in trainable declares its metrics, so a misspelt objective fails here. An open one (a
    plain function) may report any name. Without ``mode``, the objective goes the way the vocabulary
    says (``metrics.direction``: accuracies up, losses down); for a name it gives no direction (a
    lab's own, a counter) ``mode`` must be given."""
    if entry.metrics is not None:
        if spec.metric not in entry.metrics:
            raise SpecError(file, "metric", f"unknown metric {spec.metric!r}; trainable {entry.name!r} reports: "
                            f"{', '.join(entry.metrics)}")
        if spec.scheduler.time_attr not in entry.metrics + _PROGRESS_ATTRS:
            raise SpecError(file, "scheduler.time_attr", f"unknown progress attribute {spec.scheduler.time_attr!r}; "
                            f"expected one of: {', '.join(_PROGRESS_ATTRS + entry.metrics)}")
    if "mode" not in spec.model_fields_set:
        mode = metrics.direction(spec.metric)
        if mode is None:
            raise SpecError(file, "mode", f"required for the metric {spec.metric!r}, which has no direction in "
                            "tunelab's vocabulary: expected min or max")
        spec.mode = mode


def _validate(file: str, spec: Spec, entry: trainables.Entry) -> dict[str, Any]:
    known = entry.parameters
    _check_metrics(file, spec, entry)
    if spec.scheduler.grace_period > spec.scheduler.max_t:
        raise SpecError(file, "scheduler.grace_period", f"must not exceed max_t ({spec.scheduler.max_t})")
    for section in ("fixed", "space"):
        for name in getattr(spec, section):
            if not entry.open and name not in known:
                raise SpecError(file, f"{section}.{name}", f"unknown parameter of trainable {spec.trainable!r}; "
                                f"expected one of: {', '.join(known)}")
    for name in spec.space:
        if name in spec.fixed:
            raise SpecError(file, f"space.{name}", "also in fixed; a parameter is either fixed or searched")
    for name, value in spec.fixed.items():
        _check_type(file, entry, f"fixed.{name}", name, value)
    for name, p in spec.space.items():
        values = p.values if p.kind in ("choice", "grid") else list(p.values)
        for v in values:
            _check_type(file, entry, f"space.{name}.{p.kind}", name, v)
        for cond in (p.when or {}):
            if cond not in spec.space and cond not in spec.fixed:
                raise SpecError(file, f"space.{name}.when.{cond}",
                                f"condition on {cond!r}, which is neither in space nor fixed")
        if p.kind == "grid" and p.when:
            raise SpecError(file, f"space.{name}.when", "grid parameters cannot be conditional")
    for i, point in enumerate(spec.points_to_evaluate):
        for name, value in point.items():
            if name not in spec.space:
                raise SpecError(file, f"points_to_evaluate[{i}].{name}", "not a parameter of space")
            _check_type(file, entry, f"points_to_evaluate[{i}].{name}", name, value)
    _check_configs(file, spec, entry, known)
    unknown = sorted(set(spec.constraints) - set(entry.constraint_names))
    if unknown:
        raise SpecError(file, f"constraints.{unknown[0]}", f"unknown constraint of trainable {spec.trainable!r}; "
                        f"expected one of: {', '.join(entry.constraint_names) or 'none'}")
    if spec.data.dir is not None and not Path(spec.data.dir).expanduser().is_dir():
        raise SpecError(file, "data.dir", f"directory {spec.data.dir!r} does not exist")
    _check_population(file, spec)  # first: a population's own rules say more than the grid's count
    _check_grid(file, spec)
    base = {**entry.defaults(), **spec.fixed}
    try:
        entry.parse(base)
    except trainables.ConfigError as exc:
        raise SpecError(file, "fixed", f"the fixed values do not form a valid config: {exc}") from None
    for i, config in enumerate(spec.configs):
        try:
            entry.parse({**base, **config})
        except trainables.ConfigError as exc:
            raise SpecError(file, f"configs[{i}]", f"with the fixed values, not a valid config: {exc}") from None
    return base


def _check_configs(file: str, spec: Spec, entry: trainables.Entry, known: Iterable[str]) -> None:
    """``configs``: instead of ``space``, the same parameters in each, each known, not fixed, of its
    type; one trial each, so ``budget.trials`` defaults to their number (and may not be fewer); not
    with the grid sampler, which would run every combination of their values instead."""
    if not spec.configs:
        return
    if spec.space:
        raise SpecError(file, "configs", "expected either configs (explicit configurations) or space, not both")
    if spec.sampler.name == "grid":
        raise SpecError(file, "sampler.name", "grid would run every combination of the configs' values; "
                        "expected another sampler (configs are tried in turn, one per trial)")
    names = list(spec.configs[0])
    for i, config in enumerate(spec.configs):
        if list(config) != names and set(config) != set(names):
            raise SpecError(file, f"configs[{i}]", f"expected the parameters of configs[0] ({', '.join(names)}), "
                            f"got {', '.join(config) or 'none'}")
        for name, value in config.items():
            if not entry.open and name not in known:
                raise SpecError(file, f"configs[{i}].{name}", f"unknown parameter of trainable {spec.trainable!r}; "
                                f"expected one of: {', '.join(known)}")
            if name in spec.fixed:
                raise SpecError(file, f"configs[{i}].{name}", "also in fixed; a parameter is either fixed or "
                                "given per configuration")
            _check_type(file, entry, f"configs[{i}].{name}", name, value)
    if "trials" not in spec.budget.model_fields_set:
        spec.budget.trials = len(spec.configs)
    elif spec.budget.trials < len(spec.configs):
        raise SpecError(file, "budget.trials", f"at least {len(spec.configs)} expected, one trial per "
                        f"configuration (got {spec.budget.trials})")


def _check_type(file: str, entry: trainables.Entry, field: str, name: str, value: Any) -> None:
    if entry.open:
        return  # a plain function's config is a dict of whatever the file gives
    annotation = entry.config_cls.__pydantic_fields__[name].annotation
    try:
        pydantic.TypeAdapter(annotation).validate_python(value)
    except pydantic.ValidationError as exc:
        raise SpecError(file, field, f"{_clean(exc.errors()[0]['msg'])} (got {value!r})") from None


def _check_grid(file: str, spec: Spec) -> None:
    grid = [p for p in spec.space.values() if p.kind == "grid"]
    if spec.sampler.name == "grid":
        for name, p in spec.space.items():
            if p.kind not in ("grid", "choice") or p.when:
                raise SpecError(file, f"space.{name}", "the grid sampler needs every parameter to be an "
                                "unconditional grid or choice")
        grid = list(spec.space.values())
    n_points = math.prod(len(p.values) for p in grid) if grid else 0
    if n_points > spec.budget.trials:
        raise SpecError(file, "budget.trials", f"at least {n_points} expected, to try every grid point "
                        f"(got {spec.budget.trials})")


# Samplers that can draw a PBT population up front (``search._population``): every one but grid, whose
# points are a fixed list, not a draw from the space.
POPULATION_SAMPLERS = ("qmc", "random", "tpe", "cmaes", "gp", "nsga2")


def _check_population(file: str, spec: Spec) -> None:
    """A pbt/pb2 search: its population (``budget.trials``) has two members or more, its sampler can
    draw one, and every mutated parameter is an unconditional, non-grid parameter of ``space`` that no
    condition refers to (a mutation would otherwise change which parameters exist). Without a
    ``sampler:``, the population is drawn quasi-randomly (QMC), which covers the space evenly."""
    s = spec.scheduler
    if s.name not in POPULATION_SCHEDULERS:
        return
    if "sampler" not in spec.model_fields_set:
        spec.sampler = Sampler(name="qmc", seed=0)
    if spec.sampler.name not in POPULATION_SAMPLERS:
        raise SpecError(file, "sampler.name", f"{spec.sampler.name} cannot draw a {s.name} population; expected "
                        f"one of: {', '.join(POPULATION_SAMPLERS)}")
    if s.name == "pb2":
        pbt_only = [f for f in ("burn_in_period", "resample_probability", "perturbation_factors")
                    if f in s.model_fields_set]
        if pbt_only:
            raise SpecError(file, f"scheduler.{pbt_only[0]}", "applies to pbt only (Ray's PB2 has no such setting)")
        missing = [m for m in ("GPy", "sklearn") if importlib.util.find_spec(m) is None]
        if missing:
            raise SpecError(file, "scheduler.name", f"pb2 needs {' and '.join(missing)}, not installed: "
                            "expected `pip install 'tunelab[pb2]'` (GPy and scikit-learn), or name: pbt")
    if spec.budget.trials < 2:
        raise SpecError(file, "budget.trials", f"a {s.name} population needs at least 2 members "
                        f"(got {spec.budget.trials})")
    conditioned = {c for p in spec.space.values() for c in (p.when or {})}
    for name in spec.space:
        if spec.space[name].kind == "grid":
            raise SpecError(file, f"space.{name}", f"{s.name} draws its population from the space; grid "
                            "parameters are not drawn (use choice)")
    for i, name in enumerate(s.mutations):
        field = f"scheduler.mutations[{i}]"
        p = spec.space.get(name)
        if p is None:
            raise SpecError(file, field, f"unknown mutated parameter {name!r}; expected one of the space's: "
                            f"{', '.join(spec.space) or 'none (space is empty)'}")
        if p.when:
            raise SpecError(file, field, f"{name!r} is conditional (when); expected an unconditional parameter")
        if name in conditioned:
            raise SpecError(file, field, f"conditions refer to {name!r}; a mutation would change which parameters "
                            "exist")
        if s.name == "pb2" and p.kind not in ("uniform", "loguniform", "int", "logint"):
            raise SpecError(file, field, f"pb2 mutates numeric parameters only; {name!r} is a {p.kind}")
    twice = sorted({n for n in s.mutations if s.mutations.count(n) > 1})
    if twice:
        raise SpecError(file, "scheduler.mutations", f"{twice[0]!r} given twice; expected each parameter once")


def _ordered(file: str, spec: Spec) -> dict:
    """The space's parameters ordered so that each condition's parameters are sampled first."""
    ordered: dict = {}
    pending = dict(spec.space)
    while pending:
        ready = [n for n, p in pending.items()
                 if all(c in ordered or c in spec.fixed for c in (p.when or {}))]
        if not ready:
            name = next(iter(pending))
            raise SpecError(file, f"space.{name}.when", "conditions form a cycle")
        for n in ready:
            ordered[n] = pending.pop(n)
    return ordered


def load_all(folder: str | os.PathLike) -> dict[str, Search]:
    """Every search file in a folder, by file name (what the catalogue test loads)."""
    return {p.name: load(p) for p in sorted(Path(folder).glob("*.yaml"))}


