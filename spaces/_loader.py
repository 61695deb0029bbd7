"""Read a search file, apply ``--set`` overrides, validate it against its trainable.

Everything a search file can get wrong is found here, before Ray, MLflow or the data are touched, and
reported as one ``SpecError`` naming the file, the field and what was expected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pydantic
import yaml

import trainables
from spaces._errors import SpecError
from spaces._schema import Spec
from spaces._space import CompiledSpace
from trainables import metrics



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

# Attributes a scheduler can measure progress in, besides the metrics themselves.
_PROGRESS_ATTRS = ("training_iteration", "time_total_s")


@dataclasses.dataclass(frozen=True)
class Search:
    """A validated search file, ready to become a Tuner.

    Attributes:
        file: the path as given.
        text: the file's text as read (logged with the search so it can be re-run).
        spec: the validated spec, overrides applied.
        overrides: the ``--set`` arguments applied, in order.
        base_config: defaults < fixed < overrides: what every trial gets before sampling.
        space: the compiled define-by-run space.
    """

    file: str
    text: str
    spec: Spec
    overrides: tuple[str, ...]
    base_config: dict[str, Any]
    space: CompiledSpace

    @property
    def entry(self) -> trainables.Entry:
        return trainables.REGISTRY[self.spec.trainable]

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


def load(path: str | os.PathLike, overrides: Iterable[str] = ()) -> Search:
    """Read and validate a search file.

    Args:
        path: the YAML search file.
        overrides: ``key=value`` strings; ``key`` is a dotted field (``budget.trials``) or a trainable
            parameter, which is then fixed (it wins over the sampled value and leaves ``space``).

    Raises:
        SpecError: with one line naming the file, the field and what was expected.
    """
    file = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError(file, "", f"cannot read the search file ({exc.strerror})") from None
    try:
        raw = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(file, "", f"YAML syntax error{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(file, "", f"expected a mapping of search fields, got {type(raw).__name__}")
    overrides = tuple(overrides)
    for item in overrides:
        _apply_override(file, raw, item)
    try:
        spec = Spec.model_validate(raw)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        got = f" (got {err['input']!r})" if not isinstance(err.get("input"), dict) else ""
        raise SpecError(file, field, f"{_clean(err['msg'])}{got}") from None
    base = _validate(file, spec)
    params = _ordered(file, spec)
    return Search(file, text, spec, overrides, base, CompiledSpace(params, spec.fixed))


def _clean(msg: str) -> str:
    return msg.removeprefix("Value error, ")


def _parse_value(text: str) -> Any:
    return yaml.load(text, Loader=_Loader) if text.strip() else ""


def _apply_override(file: str, raw: dict, item: str) -> None:
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
        for point in raw.get("points_to_evaluate") or []:
            if isinstance(point, dict):
                point.pop(path[1], None)


def _validate(file: str, spec: Spec) -> dict[str, Any]:
    entry = trainables.REGISTRY.get(spec.trainable)
    if entry is None and spec.trainable in trainables.REGISTRY.broken:
        raise SpecError(file, "trainable", f"the trainable plugin {spec.trainable!r} could not be loaded: "
                        f"{trainables.REGISTRY.broken[spec.trainable]}")
    if entry is None:
        raise SpecError(file, "trainable", f"unknown trainable {spec.trainable!r}; expected one of: "
                        f"{', '.join(sorted(trainables.REGISTRY))}")
    known = entry.parameters
    if spec.metric not in metrics.ALL:
        raise SpecError(file, "metric", f"unknown metric {spec.metric!r}; expected one of: {', '.join(metrics.ALL)}")
    if spec.scheduler.time_attr not in metrics.ALL + _PROGRESS_ATTRS:
        raise SpecError(file, "scheduler.time_attr", f"unknown progress attribute {spec.scheduler.time_attr!r}; "
                        f"expected one of: {', '.join(_PROGRESS_ATTRS + metrics.ALL)}")
    if spec.scheduler.grace_period > spec.scheduler.max_t:
        raise SpecError(file, "scheduler.grace_period", f"must not exceed max_t ({spec.scheduler.max_t})")
    for section in ("fixed", "space"):
        for name in getattr(spec, section):
            if name not in known:
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
    unknown = sorted(set(spec.constraints) - set(entry.constraint_names))
    if unknown:
        raise SpecError(file, f"constraints.{unknown[0]}", f"unknown constraint of trainable {spec.trainable!r}; "
                        f"expected one of: {', '.join(entry.constraint_names) or 'none'}")
    if spec.data.dir is not None and not Path(spec.data.dir).expanduser().is_dir():
        raise SpecError(file, "data.dir", f"directory {spec.data.dir!r} does not exist")
    _check_grid(file, spec)
    base = {**entry.defaults(), **spec.fixed}
    try:
        entry.parse(base)
    except trainables.ConfigError as exc:
        raise SpecError(file, "fixed", f"the fixed values do not form a valid config: {exc}") from None
    return base


def _check_type(file: str, entry: trainables.Entry, field: str, name: str, value: Any) -> None:
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


