"""Population Based Training (``scheduler: {name: pbt | pb2}``): the population, and how it mutates.

Ray refuses PBT beside any search algorithm, so with stock Ray a population starts from random draws.
Here the search file's sampler draws it up front (``draw``: QMC unless the file names another, each
member through the trainable's ``check`` as every trial is), or an earlier search's best finished
configs are its first members (``warm_start``); Ray then runs exactly those configs (a
``BasicVariantGenerator`` with them as its points, ``_tuner``).

A member that falls in the bottom quantile copies a top member's checkpoint (the trainables' exact
ones: weights, optimizer, schedule position, RNG, data position) and goes on with the copied config
perturbed by ``Explorer``: each mutated parameter stays inside its own distribution's bounds, on its
own scale (log-uniform values multiplied by a perturbation factor, uniform ones shifted by the factor's
fraction of their range, choices resampled; with ``resample_probability``, any is drawn afresh).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from tunelab import _private, spaces
from tunelab.spaces._schema import Param
from tunelab.search._samplers import make_sampler
from tunelab.search._searcher import MAX_INFEASIBLE_IN_A_ROW

log = logging.getLogger(__name__)

# Perturbations tried before an exploiting member keeps the copied values (the trainable's check
# rejected every one).
MAX_EXPLORE_TRIES = 20


@dataclasses.dataclass
class Population:
    """The initial members of a PBT search.

    Attributes:
        members: one config (the sampled parameters) per member, in start order.
        warm: how many of them are the warm start's best configs (the first ones).
        infeasible: draws the trainable's check rejected on the way.
    """

    members: list[dict[str, Any]]
    warm: int = 0
    infeasible: int = 0


def draw(search: spaces.Search, warm_trials: Sequence[optuna.trial.FrozenTrial] = ()) -> Population:
    """The population of a pbt/pb2 search: ``budget.trials`` configs, each feasible.

    First the ``warm_trials``' best finished configs (by the objective; ``_warmstart.prepare`` gives
    them in this search's space), then ``points_to_evaluate``, then the sampler's draws. The draws
    happen in a study in memory that holds the warm trials, so a model-based sampler starts from them.

    Raises:
        spaces.SpecError: the sampler proposed ``MAX_INFEASIBLE_IN_A_ROW`` infeasible configs in a row.
    """
    spec = search.spec
    n = spec.budget.trials
    check = _checker(search)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="minimize" if spec.mode == "min" else "maximize",
                                    sampler=make_sampler(search))
    finally:
        optuna.logging.set_verbosity(verbosity)
    study.add_trials(list(warm_trials))
    best = best_configs(warm_trials, spec.mode, n)
    points = [*best, *spec.points_to_evaluate]
    members: list[dict[str, Any]] = []
    infeasible = in_a_row = warm = 0
    while len(members) < n:
        point = points.pop(0) if points else None
        if point is not None:
            study.enqueue_trial(point, skip_if_exists=False)
        trial = study.ask()
        params = search.space(trial)
        reason = check(params)
        if reason is None:
            members.append(params)
            warm += point is not None and len(members) <= len(best)
            in_a_row = 0
            continue
        log.info("infeasible member %s: %s", params, reason)
        trial.set_constraint("feasible", 1.0)
        study.tell(trial, state=TrialState.PRUNED)
        infeasible, in_a_row = infeasible + 1, in_a_row + 1
        if in_a_row >= MAX_INFEASIBLE_IN_A_ROW:
            raise spaces.SpecError(search.file, "constraints", f"the sampler proposed {in_a_row} infeasible "
                                   f"members in a row (the last: {reason}); loosen the space or its constraints")
    return Population(members, warm, infeasible)


def best_configs(trials: Sequence[optuna.trial.FrozenTrial], mode: str, n: int) -> list[dict[str, Any]]:
    """The parameters of the ``n`` best finished trials (COMPLETE, a finite value), best first."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    done.sort(key=lambda t: t.value if mode == "min" else -t.value)
    return [dict(t.params) for t in done[:n]]


def _checker(search: spaces.Search) -> Callable[[Mapping[str, Any]], str | None]:
    constraints = dict(search.spec.constraints)
    return lambda params: search.entry.check({**search.base_config, **params}, constraints)


# --- explore ----------------------------------------------------------------------------------------

def perturb(p: Param, value: Any, rng: random.Random, resample_probability: float,
            factors: Sequence[float]) -> Any:
    """A new value of one mutated parameter, inside its distribution's bounds.

    Resampled (uniformly on the distribution's own scale) with ``resample_probability``, and always
    for a choice; otherwise a log-uniform value is multiplied by one of ``factors``, a uniform one
    shifted by (factor - 1) times its range, and an integer moves by at least 1; then clipped to the
    bounds and put on the ``step`` grid if the parameter has one.
    """
    kind = p.kind
    if kind in ("choice", "grid"):
        return rng.choice(list(p.values))
    low, high = p.values
    log_scale = kind.startswith("log")
    resampled = rng.random() < resample_probability
    if resampled:
        new = math.exp(rng.uniform(math.log(low), math.log(high))) if log_scale else rng.uniform(low, high)
    else:
        factor = rng.choice(list(factors))
        new = value * factor if log_scale else value + (factor - 1.0) * (high - low)
    snapped = _snap(p, new)
    step = _step(p)
    if step and not resampled and snapped == value and new != value:  # a small factor still moves an integer
        snapped = _snap(p, value + (step if new > value else -step))
    return snapped


def _step(p: Param) -> float | None:
    return p.step or (1 if p.kind in ("int", "logint") else None)


def _snap(p: Param, value: float) -> Any:
    """``value`` clipped to ``p``'s bounds, on its step, an int where ``p`` is one."""
    low, high = p.values
    value = min(max(value, low), high)
    step = _step(p)
    if step:
        value = min(max(low + round((value - low) / step) * step, low), high)
    return int(round(value)) if p.kind in ("int", "logint") else float(value)


class Explorer:
    """PBT's explore step (Ray's ``custom_explore_fn``): the copied member's config with every mutated
    parameter perturbed (``perturb``); redrawn up to ``MAX_EXPLORE_TRIES`` times while the trainable's
    ``check`` rejects it, else the copied config unchanged. Its random stream is its own, seeded.

    Args:
        params: the mutated parameters' distributions, by name.
        check: ``config -> reason | None`` (the sampled parameters merged over the base config).
        resample_probability, factors: the search file's.
        seed: of the random stream.
    """

    def __init__(self, params: Mapping[str, Param], check: Callable[[Mapping[str, Any]], str | None],
                 resample_probability: float, factors: Sequence[float], seed: int | None = 0):
        self.params = dict(params)
        self.check = check
        self.resample_probability = resample_probability
        self.factors = tuple(factors)
        self.rng = random.Random(seed)

    def __call__(self, config: dict) -> dict:
        for _ in range(MAX_EXPLORE_TRIES):
            new = dict(config)
            for name, p in self.params.items():
                new[name] = perturb(p, config[name], self.rng, self.resample_probability, self.factors)
            if self.check(new) is None:
                return new
        return dict(config)


def scheduler(search: spaces.Search):
    """Ray's PBT (or PB2) for a search file's ``scheduler``; its exploits are logged (``_private``)."""
    spec = search.spec
    s = spec.scheduler
    common = dict(time_attr=s.time_attr, metric=spec.metric, mode=spec.mode,
                  perturbation_interval=s.perturbation_interval, quantile_fraction=s.quantile_fraction,
                  log_config=False)
    mutated = {name: search.space.params[name] for name in s.mutations}
    if s.name == "pb2":  # its GP bandit picks values inside the bounds; integers and steps are put right
        bounds = {name: list(p.values) for name, p in mutated.items()}
        return _private.ray_population_scheduler("pb2", hyperparam_bounds=bounds,
                                                 custom_explore_fn=functools.partial(on_grid, mutated), **common)
    explorer = Explorer(mutated, functools.partial(search.entry.check, constraints=dict(spec.constraints)),
                        s.resample_probability, s.perturbation_factors, spec.sampler.seed)
    return _private.ray_population_scheduler("pbt", custom_explore_fn=explorer, burn_in_period=s.burn_in_period,
                                             resample_probability=s.resample_probability,
                                             perturbation_factors=s.perturbation_factors, **common)


def on_grid(params: Mapping[str, Param], config: dict) -> dict:
    """``config`` with each of ``params`` clipped to its bounds, on its ``step``, an int where it is one."""
    return {**config, **{name: _snap(p, config[name]) for name, p in params.items()}}
