"""The ``curves`` trainable: replays learning curves that tunelab recorded, at no training cost.

A bank (``trainables/curve_banks/<bank>/``, made by ``bench/curve_bank.py``) holds every configuration of a
full-factorial grid of a real trainable, trained to the end under FIFO, once per recorded seed; each
curve is every evaluation the trial reported, in order. A ``curves`` trial looks its configuration up
and reports that curve point by point: ``flops``, ``wall_s``, ``step``, ``tokens``, the losses and
perplexities as recorded, ``finished: 1`` on the last point of a curve that ran to its end
(``diverged: 1`` on the last point of one that diverged). So ASHA, Hyperband (``time_attr: flops``)
and the searcher meet real multi-fidelity behaviour; a trial lasts milliseconds, and ``wall_s`` is
the recorded training time, reported, not slept.

Parameters: the bank's grid parameters, ``bank`` and ``seed``.

- A number is snapped to the nearest value of the bank's grid, on a log scale when every grid value
  is positive (the search files search them with ``loguniform``/``logint`` over the grid's range),
  else on a linear one; a string must be one of the grid's values. A parameter left unset takes the
  bank's default (``BANKS``); one that is not the bank's is an error.
- ``seed`` is the trial's noise seed, not a training seed: it draws which of the recorded seeds'
  curves is replayed, as tabular benchmarks draw their noise. An integer draws from
  ``(seed, configuration)``, so one search seed gives each configuration its own fixed draw and a
  repeated search replays the same curves; None (the default) draws afresh in every trial.

The driver loads every bank under ``data.dir`` (default ``curve_banks/`` in this package) once;
the tables (a few hundred KB) reach the trials through the object store. Reports go straight to
``ray.tune.report`` (no checkpoint, so ``trainables._report``, which imports torch, is not needed: a
torch import costs a fresh worker seconds, longer than a whole replayed trial).
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from tunelab.trainables import metrics as M
from tunelab.trainables._config import config_dataclass
from tunelab.trainables._errors import ConfigError, DataError

RUNS_FILE = "runs.parquet"
HISTORY_FILE = "history.parquet"
BANK_META_KEY = "tunelab.bank"  # the bank's description in the schema metadata of runs.parquet
# What a bank keeps of each evaluation, and what a replayed report carries from it.
HISTORY_KEYS = (M.FLOPS, M.WALL_S, M.STEP, M.TOKENS, M.TRAIN_LOSS, M.VAL_LOSS, M.TRAIN_PPL, M.VAL_PPL,
                M.DIVERGED, M.FINISHED)
DEFAULT_DIR = Path(__file__).resolve().parent / "curve_banks"  # package data: ships in the wheel
SEED = "seed"  # the grid parameter that holds the recorded training seed
CONSTRAINTS: tuple[str, ...] = ()

# Each bank's grid parameters, with the value a trial gets when it leaves one unset (a good middle
# configuration of the grid; spaces/curve_bank_*.yaml hold the grids themselves).
BANKS: dict[str, dict[str, Any]] = {
    "gpt_shakespeare_char": {"n_layer": 2, "n_embd": 64, "n_head": 4, "batch_size": 8, "min_lr": 1e-3,
                             "warmup_frac": 0.02},
}
BankName = Literal[tuple(BANKS)]  # type: ignore[valid-type]


@config_dataclass
class CurvesConfig:
    """Attributes:
        bank: which bank to replay (a folder under ``data.dir``).
        seed: noise seed: draws which recorded seed's curve is replayed (None: a fresh draw).
        n_layer, n_embd, n_head, batch_size, min_lr, warmup_frac: gpt_shakespeare_char's grid
            (None: the bank's default).
    """

    bank: BankName = "gpt_shakespeare_char"
    seed: int | None = None
    n_layer: float | None = None
    n_embd: float | None = None
    n_head: float | None = None
    batch_size: float | None = None
    min_lr: float | None = None
    warmup_frac: float | None = None

    def __post_init__(self) -> None:
        own = BANKS[self.bank]
        for f in dataclasses.fields(self):
            if f.name not in ("bank", "seed") and f.name not in own and getattr(self, f.name) is not None:
                raise ValueError(f"{f.name} is not a parameter of bank {self.bank!r}; its parameters: {', '.join(own)}")

    def point(self) -> dict[str, Any]:
        """The bank's parameters as given, unset ones at the bank's defaults (not yet snapped)."""
        return {name: default if getattr(self, name) is None else getattr(self, name)
                for name, default in BANKS[self.bank].items()}


@dataclasses.dataclass(frozen=True)
class Bank:
    """One bank, as the trials see it.

    Attributes:
        name: the bank's name (its folder).
        grid: each grid parameter's recorded values, sorted (the recorded seed left out).
        curves: grid point (values in ``grid`` order) -> its curves, one per recorded seed, by seed;
            a curve is its reports in order, each a dict of ``HISTORY_KEYS``.
        params: grid point -> the model's parameter count.
        meta: the bank's description (search file, fixed config, commit, machine, ...).
    """

    name: str
    grid: dict[str, tuple]
    curves: dict[tuple, tuple[tuple[dict[str, float], ...], ...]]
    params: dict[tuple, int]
    meta: dict[str, Any]

    def snap(self, point: Mapping[str, Any]) -> tuple:
        """The grid point nearest to ``point`` (see the module docstring); raises ConfigError."""
        return tuple(_nearest(name, point[name], values) for name, values in self.grid.items())

    def curve(self, key: tuple, seed: int | None) -> tuple[dict[str, float], ...]:
        """The curve a trial with noise seed ``seed`` replays for grid point ``key``."""
        import numpy as np

        curves = self.curves[key]
        if seed is None:
            rng = np.random.default_rng()
        else:  # the configuration's own stream under this seed: crc32 is stable across processes
            rng = np.random.default_rng([seed, zlib.crc32(repr(key).encode())])
        return curves[int(rng.integers(len(curves)))]


def _nearest(name: str, value: Any, values: tuple) -> Any:
    if isinstance(values[0], str):
        if value not in values:
            raise ConfigError(f"{name}={value!r} is not in the bank; expected one of: {', '.join(values)}")
        return value
    if isinstance(value, str) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r}: expected a number in the bank's range [{values[0]}, {values[-1]}]")
    log = values[0] > 0 and value > 0
    measure = (lambda v: math.log(v)) if log else (lambda v: v)
    return min(values, key=lambda v: abs(measure(v) - measure(value)))  # ties go to the smaller value


def check(cfg: CurvesConfig, constraints: Mapping[str, Any]) -> str | None:
    return None  # every grid point of a bank was trained; nothing to reject before a trial


def flops_per_token(cfg: CurvesConfig) -> int:
    return 0  # the recorded curves carry their own flops


def load_data(data: Mapping[str, Any]) -> dict[str, Bank]:
    """The registry's driver-side loader: every bank under ``data.dir`` (default ``curve_banks/`` in this package).

    Raises:
        DataError: the folder holds no bank, or a bank lacks one of its files or grid columns.
    """
    folder = Path(data.get("dir") or DEFAULT_DIR).expanduser()
    banks = {}
    for name in BANKS:
        files = [folder / name / RUNS_FILE, folder / name / HISTORY_FILE]
        present = [f.exists() for f in files]
        if any(present) and not all(present):
            missing = files[present.index(False)]
            raise DataError(f"curve bank {name!r} is incomplete: {missing} does not exist "
                            f"(remake it with python bench/curve_bank.py)")
        if all(present):
            banks[name] = read_bank(folder / name, name)
    if not banks:
        raise DataError(f"no curve bank under {folder}: expected one of "
                        f"{', '.join(f'{n}/{RUNS_FILE}' for n in BANKS)} (make one with python bench/curve_bank.py)")
    return banks


def read_bank(folder: Path, name: str) -> Bank:
    """Read one bank's two Parquet files into a ``Bank``.

    Args:
        folder: the bank's folder.
        name: its name (a key of ``BANKS``).
    """
    import pyarrow.parquet as pq

    try:
        runs, history = pq.read_table(folder / RUNS_FILE), pq.read_table(folder / HISTORY_FILE)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise DataError(f"cannot read curve bank {folder}: {exc}") from None
    names = list(BANKS[name])
    missing = [c for c in [*names, SEED, "trial", "status", M.PARAMS] if c not in runs.column_names]
    missing += [f"history: {c}" for c in ["trial", "iteration", *HISTORY_KEYS] if c not in history.column_names]
    if missing:
        raise DataError(f"curve bank {folder} lacks columns: {', '.join(missing)}")
    rows = runs.select(["trial", SEED, M.PARAMS, *names]).to_pylist()
    points: dict[int, list[dict[str, float]]] = {}
    for h in history.sort_by([("trial", "ascending"), ("iteration", "ascending")]).to_pylist():
        points.setdefault(h["trial"], []).append({k: h[k] for k in HISTORY_KEYS})
    by_key: dict[tuple, list[tuple[int, tuple]]] = {}
    params = {}
    for r in rows:
        key = tuple(r[n] for n in names)
        by_key.setdefault(key, []).append((r[SEED], tuple(points.get(r["trial"], ()))))
        params[key] = r[M.PARAMS]
    meta = json.loads((runs.schema.metadata or {}).get(BANK_META_KEY.encode(), b"{}"))
    return Bank(
        name=name,
        grid={n: tuple(sorted({r[n] for r in rows})) for n in names},
        curves={k: tuple(c for _, c in sorted(v, key=lambda sc: sc[0]) if c) for k, v in by_key.items()},
        params=params,
        meta=meta,
    )


def replay(cfg: CurvesConfig, banks: Mapping[str, Bank]) -> list[dict[str, float]]:
    """The reports a trial makes: its grid point's chosen curve, with the running best val_ppl.

    Args:
        cfg: the trial's config.
        banks: what ``load_data`` returned.

    Raises:
        DataError: the bank is not among ``banks``; ConfigError: a value that is not in the bank.
    """
    bank = banks.get(cfg.bank)
    if bank is None:
        raise DataError(f"curve bank {cfg.bank!r} was not loaded (have: {', '.join(banks) or 'none'}); "
                        f"make it with python bench/curve_bank.py")
    key = bank.snap(cfg.point())
    if key not in bank.curves:
        raise ConfigError(f"bank {cfg.bank!r} has no curve for {dict(zip(bank.grid, key))}")
    best = math.inf
    out = []
    for point in bank.curve(key, cfg.seed):
        if not point[M.DIVERGED] and math.isfinite(point[M.VAL_PPL]):
            best = min(best, point[M.VAL_PPL])
        out.append({**point, M.BEST_VAL_PPL: best, M.PARAMS: bank.params[key], M.OOM: 0})
    return out


def train(config: dict[str, Any], data: Mapping[str, Bank] | None = None) -> None:
    """The Ray Tune function trainable: one report per recorded evaluation.

    Args:
        config: the trial's flat config (see ``CurvesConfig``).
        data: the banks, from ``load_data`` through ``tune.with_parameters``.
    """
    from ray import tune

    from tunelab.trainables._config import parse_config

    cfg = parse_config(CurvesConfig, config)
    if data is None:
        raise DataError("the curves trainable needs its banks: tune.with_parameters(train, data=load_data(...))")
    for report in replay(cfg, data):
        tune.report(report)
