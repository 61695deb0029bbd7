"""Dict in, dataclass out: the one boundary where a trial's flat config becomes typed.

Config classes are pydantic dataclasses that forbid unknown keys, so a misspelt parameter or a wrong
type raises here, before any tensor is made. Defaults live in the dataclass and nowhere else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

import pydantic
from pydantic import Field
from pydantic.dataclasses import dataclass as _pydantic_dataclass

from tunelab.trainables._errors import ConfigError

T = TypeVar("T")

# Field types the families' config classes share.
PosInt = Annotated[int, Field(gt=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNeg = Annotated[float, Field(ge=0)]
Unit = Annotated[float, Field(ge=0, lt=1)]
Fraction = Annotated[float, Field(gt=0, le=1)]


def config_dataclass(cls: type[T]) -> type[T]:
    """Decorate a trainable's config class: a dataclass that validates types and forbids extra keys."""
    return _pydantic_dataclass(cls, config=pydantic.ConfigDict(extra="forbid"))


def parse_config(cls: type[T], config: Mapping[str, Any]) -> T:
    """Build ``cls`` from a flat dict, raising ConfigError with one readable line on failure.

    Args:
        cls: a class made with ``config_dataclass``.
        config: the trial's flat config (defaults + fixed + sampled).
    """
    try:
        return cls(**dict(config))
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "config"
        raise ConfigError(f"{field}: {err['msg']}") from None
    except TypeError as exc:  # unexpected keyword argument, raised before validation
        raise ConfigError(str(exc)) from None


def field_names(cls: type) -> tuple[str, ...]:
    """The parameter names a config class accepts."""
    return tuple(f.name for f in dataclasses.fields(cls))


def defaults(cls: type) -> dict[str, Any]:
    """The config class's defaults as a flat dict."""
    return dataclasses.asdict(cls())


def window(name: str, value: float, bound: Any, fmt: str) -> str | None:
    """Why ``value`` breaks the constraint ``name: [lo, hi]`` (``fmt`` formats numbers), or None."""
    try:
        lo, hi = (float(x) for x in bound)
    except (TypeError, ValueError):
        return f"constraint {name} must be [lo, hi], got {bound!r}"
    if lo <= value <= hi:
        return None
    return f"{name} {fmt.format(value)} outside [{fmt.format(lo)}, {fmt.format(hi)}]"


def first_violation(trainable: str, constraints: Mapping[str, Any],
                    rules: Mapping[str, Callable[[Any], str | None]]) -> str | None:
    """Why a config breaks the first of a search file's ``constraints`` it breaks, or None.

    Args:
        trainable: the family's name (for an unknown constraint's message).
        constraints: the search file's ``constraints:``, name -> bound.
        rules: every constraint the family knows, name -> ``bound -> reason or None``.
    """
    for name, bound in constraints.items():
        rule = rules.get(name)
        reason = rule(bound) if rule else f"unknown constraint {name!r}; the {trainable} trainable knows {', '.join(rules)}"
        if reason:
            return reason
    return None


# The constraints ``size_violation`` knows: a family that checks only its model's size names these.
SIZE_CONSTRAINTS = ("model_mb", "params")


def size_violation(trainable: str, constraints: Mapping[str, Any], model_mb: float, params: int) -> str | None:
    """Why a model breaks the first of a search file's size ``constraints`` it breaks, or None.

    Constraints (a search file's ``constraints:``):
        model_mb: [lo, hi] on fp32 parameter MB (parameters × 4 / 2**20).
        params: [lo, hi] on the parameter count.

    Args:
        trainable: the family's name (for an unknown constraint's message).
        constraints: name -> bound.
        model_mb: the model's fp32 parameter MB.
        params: its parameter count.
    """
    return first_violation(trainable, constraints, {
        "model_mb": lambda bound: window("model_mb", model_mb, bound, "{:.2f}"),
        "params": lambda bound: window("params", params, bound, "{:,.0f}"),
    })
