"""What the search needs to know about each trainable, without importing torch; and the registry of them.

The trainable function itself is imported on first use (``Entry.trainable``), so loading and
validating a search file stays light; everything else here is torch-free.

``Registry`` maps names to entries: the built-in ones, and those other installed packages declare
under the entry-point group ``tunelab.trainables`` (a lab's own models), e.g. in its pyproject.toml::

    [project.entry-points."tunelab.trainables"]
    mylm = "mylab.tunelab_entry:ENTRY"      # an Entry whose name is "mylm"
    mymodel = "mylab.train:train"           # or a plain function train(config: dict)
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import logging
import threading
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tunelab.trainables import _config

ENTRY_POINT_GROUP = "tunelab.trainables"
BUILTIN = "built-in"
log = logging.getLogger("tunelab.trainables")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One trainable family.

    A built-in family declares everything; a lab's plain function (``Entry.of_function``) declares
    nothing: its config is an open dict, every config is feasible, its FLOPs are unknown, it loads no
    data, and it may report any metric.

    Attributes:
        name: the registry key a search file names in ``trainable:``.
        config_cls: the config dataclass; its fields are the parameters a search may set. None: any
            parameter, handed to the trainable as a plain dict.
        train_module: module holding ``train(config, data=None)``, the Ray Tune function trainable.
        constraint_check: ``(cfg, constraints) -> reason | None`` for configs that parse but cannot run.
        flops: ``cfg -> int`` training FLOPs (forward + backward) per token; None: unknown.
        data_loader: driver-side ``data_section -> object`` handed to every trial once, via the
            object store (``tune.with_parameters``); None: the trainable loads no data. An object
            with a ``dataset_record()`` method (``DatasetRecord``) is recorded as the runs' MLflow
            dataset input.
        resources: default per-trial resources.
        constraint_names: the named checks ``constraints:`` in a search file may use.
        summarize: ``cfg -> dict`` of sizes and costs (params, FLOPs, steps...) for ``tunelab inspect``.
        reuse_workers: a trial lasts milliseconds and leaves nothing behind in its process (no torch,
            no model, no global state), so Ray may run the next trial in the same worker process
            (``reuse_actors``) instead of starting one per trial, which costs about a second. Off for
            the torch families: their trials last minutes, a worker start is nothing beside that, and
            a fresh process is what keeps one trial's threads, allocator and RNG state from the next.
        metrics: the metric names the trainable reports (``tunelab.trainables.metrics``): a search's
            objective must be one of them, so a misspelt one fails when the file loads. None: it may
            report any name (a search naming one outside the built-in vocabulary must give ``mode``).
        function: the plain function ``train(config: dict)`` of a lab's trainable (no ``train_module``).
        report_module: module holding ``report_blocks(runs, history) -> list``, the family's own section
            of ``tunelab report`` (tables and figures only it has), imported when a report is built,
            never in a trial. It gets the two tables of ``tunelab.analysis.load`` and returns blocks
            as ``tunelab.analysis`` renders them: ``("h", level, text)``, ``("p", text)`` (Markdown's
            `code` and *emphasis*), ``("pre", text)``, ``("table", DataFrame, caption)`` and
            ``("figure", Plot)``; the report puts them after its cost-and-quality figures. A family
            module may import ``tunelab.analysis`` (its ``Plot``, tables and figures): the analysis
            reaches it only through this field. None: the report has only the sections every search gets.
    """

    name: str
    config_cls: type | None = None
    train_module: str | None = None
    constraint_check: Callable[[Any, Mapping[str, Any]], str | None] | None = None
    flops: Callable[[Any], int] | None = None
    data_loader: Callable[[Mapping[str, Any]], Any] | None = None
    resources: Mapping[str, float] = dataclasses.field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    constraint_names: tuple[str, ...] = ()
    summarize: Callable[[Any], dict[str, Any]] | None = None
    reuse_workers: bool = False
    metrics: tuple[str, ...] | None = None
    function: Callable[[dict[str, Any]], Any] | None = None
    report_module: str | None = None

    def __post_init__(self) -> None:
        if (self.train_module is None) == (self.function is None):
            raise TypeError(f"trainable {self.name!r}: give either train_module or function")

    @classmethod
    def of_function(cls, name: str, function: Callable[[dict[str, Any]], Any], **fields: Any) -> Entry:
        """A lab's plain training function as a trainable: ``function(config: dict)`` reports with
        ``tunelab.report`` (or ``ray.tune.report``) and has completed when it returns."""
        if not callable(function):
            raise TypeError(f"trainable {name!r}: {function!r} is not callable")
        return cls(name=name, function=function, **fields)

    @property
    def open(self) -> bool:
        """Whether any parameter goes (no config class): a plain function's dict config."""
        return self.config_cls is None

    @property
    def parameters(self) -> tuple[str, ...]:
        return () if self.open else _config.field_names(self.config_cls)

    def defaults(self) -> dict[str, Any]:
        return {} if self.open else _config.defaults(self.config_cls)

    def parse(self, config: Mapping[str, Any]) -> Any:
        """The config dataclass for ``config`` (an open trainable's: the dict); raises ConfigError."""
        return dict(config) if self.open else _config.parse_config(self.config_cls, config)

    def check(self, config: Mapping[str, Any], constraints: Mapping[str, Any] | None = None) -> str | None:
        """Why ``config`` cannot run (a readable reason), or None when it is feasible."""
        try:
            cfg = self.parse(config)
        except _config.ConfigError as exc:
            return str(exc)
        return None if self.constraint_check is None else self.constraint_check(cfg, constraints or {})

    def flops_per_token(self, config: Mapping[str, Any]) -> int | None:
        return None if self.flops is None else self.flops(self.parse(config))

    def summary(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Sizes and costs of ``config`` (no torch, no data): what ``tunelab inspect`` prints."""
        cfg = self.parse(config)
        out = {"flops_per_token": None if self.flops is None else self.flops(cfg)}
        if self.summarize is not None:
            out.update(self.summarize(cfg))
        return out

    def load_data(self, data: Mapping[str, Any]) -> Any:
        return None if self.data_loader is None else self.data_loader(data)

    @property
    def trainable(self) -> Callable[..., None]:
        """The Ray Tune function trainable, ``train(config, data=None)``."""
        if self.function is not None:
            return _function_trainable(self.function)
        return importlib.import_module(self.train_module).train

    @property
    def report_blocks(self) -> Callable[[Any, Any], list[tuple]] | None:
        """The family's report section, ``report_blocks(runs, history)`` of ``report_module``; None
        without one."""
        if self.report_module is None:
            return None
        return importlib.import_module(self.report_module).report_blocks


def _function_trainable(function: Callable[[dict[str, Any]], Any]) -> Callable[..., None]:
    """A plain function ``train(config)`` as the registry's ``train(config, data=None)`` (it loads its own
    data), under the function's own name, which Ray shows in its trial names."""

    def train(config: dict[str, Any], data: Any = None) -> None:
        function(dict(config))

    train.__name__ = train.__qualname__ = getattr(function, "__name__", "train")
    return train


class Registry(Mapping[str, Entry]):
    """The trainables a search file can name: the built-in entries, then the plugins.

    Plugins are the entry points of group ``tunelab.trainables`` of every installed distribution (found
    with ``importlib.metadata``); each names an ``Entry`` whose ``name`` is the entry point's. They are
    loaded on first use of the mapping, once. A plugin that cannot be loaded (its import fails, it is
    not an ``Entry``, its name is taken) is left out and reported once, in one line naming it (a
    warning on the ``tunelab.trainables`` logger, kept in ``broken``); the others load.

    Args:
        builtin: the entries of this package, by name.
        group: the entry-point group to read.
    """

    def __init__(self, builtin: Mapping[str, Entry], group: str = ENTRY_POINT_GROUP):
        self._builtin = dict(builtin)
        self._group = group
        self._entries: dict[str, Entry] | None = None
        self._origins: dict[str, str] = {}
        self._broken: dict[str, str] = {}
        self._lock = threading.Lock()

    def _all(self) -> dict[str, Entry]:
        if self._entries is None:
            with self._lock:
                if self._entries is None:
                    self._entries = self._load()
        return self._entries

    def _load(self) -> dict[str, Entry]:
        entries = dict(self._builtin)
        self._origins = {name: BUILTIN for name in entries}
        for ep in importlib.metadata.entry_points(group=self._group):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"
            origin = f"plugin {ep.value} from {dist}"
            try:
                entry = self._plugin(ep, entries)
            except Exception as exc:  # whatever the plugin's import raises, the others still load
                reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
                self._broken[ep.name] = f"{origin}: {type(exc).__name__}: {reason}"
                log.warning("tunelab: trainable plugin %r not loaded (%s)", ep.name, self._broken[ep.name])
                continue
            entries[ep.name] = entry
            self._origins[ep.name] = origin
        return entries

    @staticmethod
    def _plugin(ep: importlib.metadata.EntryPoint, taken: Mapping[str, Entry]) -> Entry:
        if ep.name in taken:
            raise ValueError(f"the name {ep.name!r} is taken by another trainable")
        entry = ep.load()
        if not isinstance(entry, Entry) and callable(entry):
            return Entry.of_function(ep.name, entry)
        if not isinstance(entry, Entry):
            raise TypeError(f"{ep.value} is a {type(entry).__name__}, neither a function nor a tunelab.trainables.Entry")
        if entry.name != ep.name:
            raise ValueError(f"the entry point is named {ep.name!r} but its Entry {entry.name!r}")
        return entry

    def __getitem__(self, name: str) -> Entry:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def origin(self, name: str) -> str:
        """Where trainable ``name`` comes from: "built-in", or the plugin's entry point and distribution."""
        self._all()
        return self._origins[name]

    @property
    def broken(self) -> dict[str, str]:
        """Plugins that could not be loaded: name -> why, one line each."""
        self._all()
        return dict(self._broken)

    def describe(self, name: str) -> dict[str, Any]:
        """What ``tunelab trainables`` lists for one trainable: parameters with types and defaults,
        constraint names, default resources, origin."""
        entry = self[name]
        fields = {} if entry.open else entry.config_cls.__pydantic_fields__
        defaults = entry.defaults()
        return {
            "name": name,
            "origin": self.origin(name),
            "parameters": [{"name": p, "type": _type_name(fields[p].annotation, fields[p].metadata),
                            "default": defaults[p]}
                           for p in entry.parameters],
            "open": entry.open,
            "metrics": None if entry.metrics is None else list(entry.metrics),
            "constraints": list(entry.constraint_names),
            "resources": dict(entry.resources),
        }

    def listing(self) -> str:
        """Every trainable as text: a line naming it, then one line per parameter (name, type, default)."""
        blocks = []
        for name in sorted(self):
            d = self.describe(name)
            lines = [f"{name}  ({d['origin']}; constraints: {', '.join(d['constraints']) or 'none'}; "
                     f"resources: {d['resources']})"]
            name_w = max((len(p["name"]) for p in d["parameters"]), default=0)
            type_w = max((len(p["type"]) for p in d["parameters"]), default=0)
            if d["open"]:
                lines.append("  (a plain function: any parameter, as a dict; any metric)")
            for p in d["parameters"]:
                big = isinstance(p["default"], float) and abs(p["default"]) >= 1e6
                default = f"{p['default']:g}" if big else repr(p["default"])  # 1e+15, not 1000000000000000.0
                lines.append(f"  {p['name']:<{name_w}}  {p['type']:<{type_w}}  {default}")
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)


def _type_name(annotation: Any, metadata: list | tuple = ()) -> str:
    """A parameter's type as a reader writes it: ``int > 0``, ``float >= 1 | None``, ``'pre' | 'post'``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0], [*metadata, *args[1:]])
    if origin is typing.Literal:
        text = " | ".join(repr(a) for a in args)
    elif origin in (typing.Union, types.UnionType):
        text = " | ".join(_type_name(a) for a in args if a is not type(None))
        text += " | None" if type(None) in args else ""
        return text if not metadata else f"({text}){_bounds(metadata)}"
    else:
        text = annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
    return text + _bounds(metadata)


def _bounds(metadata) -> str:
    """The bounds among pydantic/annotated-types metadata (``Gt(gt=0)``, a FieldInfo holding some)."""
    out = []
    for m in metadata:
        for inner in getattr(m, "metadata", None) or [m]:
            for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
                if getattr(inner, attr, None) is not None:
                    out.append(f"{op} {getattr(inner, attr)}")
    return " " + ", ".join(out) if out else ""
