"""A search file's ``space`` compiled into an Optuna define-by-run function.

Define-by-run (rather than a fixed dict of distributions) lets a parameter exist only under a ``when``
condition, and TPE sees the resulting tree: with ``group=True`` it models each subspace apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from tunelab.spaces._schema import Param


def condition_holds(when: Mapping[str, Any] | None, values: Mapping[str, Any]) -> bool:
    """Whether a ``when`` condition holds for the values chosen so far.

    A condition maps parameter names to a value or a list of accepted values; all must match.
    """
    if not when:
        return True
    for name, accepted in when.items():
        options = accepted if isinstance(accepted, list) else [accepted]
        if name not in values or values[name] not in options:
            return False
    return True


class CompiledSpace:
    """Callable on an ``optuna.Trial``; returns the sampled parameters as a flat dict.

    Args:
        params: the ``space`` section, in an order where every condition's parameters come first.
        fixed: the constant part of the config, which conditions may also refer to.
        configs: a search file's explicit ``configs``, tried in turn one per trial (``grid_points``);
            ``params`` then holds each of their parameters as a choice of the values they give.
    """

    def __init__(self, params: Mapping[str, Param], fixed: Mapping[str, Any],
                 configs: Sequence[Mapping[str, Any]] = ()):
        self.params = dict(params)
        self.fixed = dict(fixed)
        self.configs = [dict(c) for c in configs]

    @classmethod
    def of_configs(cls, configs: Sequence[Mapping[str, Any]], fixed: Mapping[str, Any]) -> CompiledSpace:
        """The space of a list of explicit configurations: each parameter a choice of the values the
        configurations give it (in order of first appearance), so that Optuna records every trial's
        values, and the configurations themselves as the points tried in turn."""
        params: dict[str, Param] = {}
        for name in (configs[0] if configs else {}):
            values: list[Any] = []
            for config in configs:
                if not any(type(v) is type(config[name]) and v == config[name] for v in values):
                    values.append(config[name])
            params[name] = Param(choice=values)
        return cls(params, fixed, configs)

    def __call__(self, trial: Any) -> dict[str, Any]:
        chosen: dict[str, Any] = {}
        for name, p in self.params.items():
            if not condition_holds(p.when, {**self.fixed, **chosen}):
                continue
            chosen[name] = self._suggest(trial, name, p)
        return chosen

    @staticmethod
    def _suggest(trial: Any, name: str, p: Param) -> Any:
        kind = p.kind
        if kind in ("uniform", "loguniform"):
            low, high = p.values
            return trial.suggest_float(name, low, high, log=kind == "loguniform", step=p.step)
        if kind in ("int", "logint"):
            low, high = p.values
            return trial.suggest_int(name, low, high, log=kind == "logint", step=int(p.step or 1))
        return trial.suggest_categorical(name, p.values)  # choice, grid

    @property
    def conditional(self) -> bool:
        return any(p.when for p in self.params.values())

    def grid_points(self) -> list[dict[str, Any]]:
        """The explicit ``configs``, else every combination of the ``grid`` parameters, in file order
        (empty when there are none)."""
        if self.configs:
            return [dict(c) for c in self.configs]
        grid = {n: p.grid for n, p in self.params.items() if p.kind == "grid"}
        if not grid:
            return []
        return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]

    def categorical_space(self) -> dict[str, Sequence[Any]]:
        """For the grid sampler: every parameter's values (all must be choice or grid)."""
        return {n: list(p.values) for n, p in self.params.items()}
