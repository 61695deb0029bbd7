"""The search file's schema (README: "The search file"), as pydantic models.

Every model forbids unknown keys, so a typo in a key is an error that names the key. Checks that need
the trainable (unknown parameters, value types) live in ``_loader``.
"""

from __future__ import annotations

import builtins
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DISTRIBUTIONS = ("uniform", "loguniform", "int", "logint", "choice", "grid")
SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc", "nsga2", "grid")
SCHEDULERS = ("asha", "hyperband", "median", "fifo", "pbt", "pb2")
POPULATION_SCHEDULERS = ("pbt", "pb2")  # train a population and copy/perturb members; no early stopping


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Param(_Strict):
    """One entry of ``space``: exactly one distribution, optionally a ``when`` condition and a step."""

    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    # ``int`` names a distribution here, so the type is spelled ``builtins.int``.
    int: tuple[builtins.int, builtins.int] | None = None
    logint: tuple[builtins.int, builtins.int] | None = None
    choice: list[Any] | None = Field(default=None, min_length=1)
    grid: list[Any] | None = Field(default=None, min_length=1)
    step: float | None = Field(default=None, gt=0)
    when: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_distribution(self) -> Param:
        given = [d for d in DISTRIBUTIONS if getattr(self, d) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of {', '.join(DISTRIBUTIONS)} expected, got {given or 'none'}")
        kind = given[0]
        if kind in ("uniform", "loguniform", "int", "logint"):
            low, high = getattr(self, kind)
            if not low < high:
                raise ValueError(f"{kind} bounds must satisfy low < high, got [{low}, {high}]")
            if kind.startswith("log") and low <= 0:
                raise ValueError(f"{kind} bounds must be > 0, got [{low}, {high}]")
            if not all(math.isfinite(v) for v in (low, high)):
                raise ValueError(f"{kind} bounds must be finite")
        if self.step is not None and kind not in ("uniform", "int"):
            raise ValueError(f"step applies to uniform and int only, not {kind}")
        return self

    @property
    def kind(self) -> str:
        return next(d for d in DISTRIBUTIONS if getattr(self, d) is not None)

    @property
    def values(self) -> Any:
        return getattr(self, self.kind)


class Sampler(_Strict):
    name: Literal[SAMPLERS] = "tpe"  # type: ignore[valid-type]
    seed: int | None = 0
    multivariate: bool = True
    constant_liar: bool = True
    n_startup_trials: int | None = Field(default=None, ge=0)


class Scheduler(_Strict):
    """``asha``, ``hyperband``, ``median``, ``fifo``: Ray's early-stopping schedulers; ``pbt`` and ``pb2``:
    Population Based Training (``budget.trials`` members train side by side; every
    ``perturbation_interval`` of ``time_attr`` the bottom ``quantile_fraction`` copy a top member's
    checkpoint and go on with its ``mutations`` perturbed, ``search._population``)."""

    name: Literal[SCHEDULERS] = "asha"  # type: ignore[valid-type]
    time_attr: str = "training_iteration"
    max_t: float = Field(default=100, gt=0)
    grace_period: float = Field(default=1, gt=0)
    reduction_factor: float = Field(default=3, gt=1)
    brackets: int = Field(default=1, ge=1)
    # pbt and pb2 only (Ray's PopulationBasedTraining / PB2 arguments of the same names):
    perturbation_interval: float = Field(default=1, gt=0)
    burn_in_period: float = Field(default=0, ge=0)
    quantile_fraction: float = Field(default=0.25, gt=0, le=0.5)
    resample_probability: float = Field(default=0.25, ge=0, le=1)
    perturbation_factors: tuple[float, float] = (1.2, 0.8)
    mutations: list[str] = Field(default_factory=list)  # names of ``space`` parameters that change in a trial

    @model_validator(mode="after")
    def _population_fields(self) -> Scheduler:
        pbt_only = ("perturbation_interval", "burn_in_period", "quantile_fraction", "resample_probability",
                    "perturbation_factors", "mutations")
        if self.name not in POPULATION_SCHEDULERS:
            given = [f for f in pbt_only if f in self.model_fields_set]
            if given:
                raise ValueError(f"{given[0]} applies to the pbt and pb2 schedulers only, not {self.name}")
            return self
        if not self.mutations:
            raise ValueError(f"{self.name} needs mutations: a list of the space parameters that may change "
                             "during a trial")
        if any(f <= 0 for f in self.perturbation_factors):
            raise ValueError(f"perturbation_factors must be > 0, got {list(self.perturbation_factors)}")
        return self


class Budget(_Strict):
    trials: int = Field(default=8, gt=0)
    max_concurrent: int = Field(default=2, gt=0)
    total_flops: float | None = Field(default=None, gt=0)
    time_s: float | None = Field(default=None, gt=0)
    max_failures: int = Field(default=1, ge=0)


class Resources(_Strict):
    cpu: float = Field(default=1, gt=0)
    gpu: float = Field(default=0, ge=0)


class Data(BaseModel):
    """Where the corpus is; keys beyond these two are the trainable's own (e.g. ``tokens``)."""

    model_config = ConfigDict(extra="allow")
    corpus: str = "ptb"
    dir: str | None = None


class Tracking(_Strict):
    uri: str | None = None


class WarmStart(_Strict):
    """An earlier search whose finished trials seed this one's study (``search._warmstart``).

    Either its results folder, ``search`` (its name) under ``storage`` (default: this search's
    results root), whose Optuna study is read; or its MLflow experiment, ``experiment`` at ``tracking``
    (default: this search's tracking URI), whose child runs are read.
    """

    search: str | None = None
    storage: str | None = None
    experiment: str | None = None
    tracking: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> WarmStart:
        if (self.search is None) == (self.experiment is None):
            raise ValueError("exactly one of search (a results folder's search, with storage) or experiment "
                             "(an MLflow experiment, with tracking) expected")
        if self.search is None and self.storage is not None:
            raise ValueError("storage goes with search, not with experiment (use tracking)")
        if self.experiment is None and self.tracking is not None:
            raise ValueError("tracking goes with experiment, not with search (use storage)")
        return self


class Spec(_Strict):
    """A whole search file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    trainable: str | None = None  # required, unless tunelab.run is given the trainable itself
    metric: str = "val_ppl"
    mode: Literal["min", "max"] = "min"
    fixed: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Param] = Field(default_factory=dict)
    constraints: dict[str, Any] = Field(default_factory=dict)
    points_to_evaluate: list[dict[str, Any]] = Field(default_factory=list)
    # Explicit configurations, each trained once, in order (Ray Tune's grid_search over a list of
    # dicts): instead of ``space``, each a mapping of the same parameters (``label`` names one).
    configs: list[dict[str, Any]] = Field(default_factory=list)
    sampler: Sampler = Field(default_factory=Sampler)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    budget: Budget = Field(default_factory=Budget)
    resources: Resources | None = None
    data: Data = Field(default_factory=Data)
    storage: str | None = None
    tracking: Tracking = Field(default_factory=Tracking)
    warm_start: WarmStart | None = None
