"""Seed report 002's extremum metrics, from the histories, and their mean ± std over seeds.

For each trial: the smallest training and validation loss and the largest training and validation
accuracy over its evaluations, and t_f, the optimizer step at which each is reached (the step of the
minimum loss, the first step of the maximum accuracy); Δt(L) = t_f(L_val) - t_f(L_train) and
Δt(A) = t_f(A_val) - t_f(A_train). ``t_max`` keeps only the evaluations up to a step: what a trial
would have given had it been trained only that long (the report's T' = αT, question 6). The arith
trainable reports the same t_f and Δt on its last report; computing them here also serves trials that
stopped early and any α.

Repeated configs (every varied parameter alike but the seed) are aggregated as mean ± sample std
(``aggregate``), the way every table and figure of the report shows them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from tunelab.analysis._errors import AnalysisError
from tunelab.analysis._schema import SEED, varied_params
from tunelab.trainables import metrics

# The four curves, and whether larger is better.
CURVES = {metrics.TRAIN_LOSS: False, metrics.VAL_LOSS: False, metrics.TRAIN_ACC: True, metrics.VAL_ACC: True}
T_F = metrics.T_F  # metric -> its t_f column
DELTA = {metrics.LOSS_DELTA_T: (metrics.VAL_LOSS_T_F, metrics.TRAIN_LOSS_T_F),
         metrics.ACC_DELTA_T: (metrics.VAL_ACC_T_F, metrics.TRAIN_ACC_T_F)}
# The value columns of ``extrema``, in the report's order (its table 1).
VALUES = (*CURVES, *T_F.values(), *DELTA)
ALPHAS = tuple(round(0.1 * k, 1) for k in range(1, 11))
# Report labels of the value columns.
LABELS = {
    metrics.TRAIN_LOSS: "L_train", metrics.VAL_LOSS: "L_val", metrics.TRAIN_ACC: "A_train", metrics.VAL_ACC: "A_val",
    metrics.TRAIN_LOSS_T_F: "t_f(L_train)", metrics.VAL_LOSS_T_F: "t_f(L_val)",
    metrics.TRAIN_ACC_T_F: "t_f(A_train)", metrics.VAL_ACC_T_F: "t_f(A_val)",
    metrics.LOSS_DELTA_T: "Δt(L)", metrics.ACC_DELTA_T: "Δt(A)",
}


def by_step(history: pa.Table, keys: Iterable[str], run_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Histories indexed by (run_id, optimizer step): one column per key, one row per report.

    Args:
        history: the ``history`` table of ``load``.
        keys: the metrics to take.
        run_ids: the runs to take; None takes all.

    Raises:
        AnalysisError: no run logged ``optimizer_steps``.
    """
    keys = list(dict.fromkeys([metrics.STEP, *keys]))
    df = history.select(["run_id", "key", "step", "value"]).to_pandas()
    df = df[df["key"].isin(keys)]
    if run_ids is not None:
        df = df[df["run_id"].isin(list(run_ids))]
    if not (df["key"] == metrics.STEP).any():
        raise AnalysisError(f"no trial logged {metrics.STEP!r}; the extremum metrics need it")
    wide = df.pivot_table(index=["run_id", "step"], columns="key", values="value", aggfunc="last")
    wide = wide.reindex(columns=keys).dropna(subset=[metrics.STEP])
    wide = wide.reset_index().drop(columns="step")
    wide[metrics.STEP] = wide[metrics.STEP].astype(np.int64)
    return wide.set_index(["run_id", metrics.STEP]).sort_index()


def extremum(steps: np.ndarray, values: np.ndarray, larger: bool) -> tuple[float, float]:
    """(best value, t_f): the smallest value and its first step, or the largest and its first step.

    Non-finite values are skipped; (nan, nan) when none is left.

    Args:
        steps: optimizer steps, ascending.
        values: the metric at those steps.
        larger: whether larger is better (accuracies).
    """
    ok = np.isfinite(values)
    if not ok.any():
        return math.nan, math.nan
    steps, values = steps[ok], values[ok]
    i = int(np.argmax(values) if larger else np.argmin(values))  # argmax/argmin: the first on ties
    return float(values[i]), float(steps[i])


def trial_extrema(curves: pd.DataFrame, t_max: float | None = None) -> dict[str, float]:
    """Seed 002's extremum metrics of one trial's ``by_step`` rows.

    Args:
        curves: one trial's rows of ``by_step`` (index: optimizer step).
        t_max: keep only evaluations at steps <= t_max (None: all).
    """
    if t_max is not None:
        curves = curves[curves.index <= t_max]
    steps = curves.index.to_numpy(dtype=float)
    out: dict[str, float] = {}
    for key, larger in CURVES.items():
        values = curves[key].to_numpy(dtype=float) if key in curves else np.array([])
        out[key], out[T_F[key]] = extremum(steps[: len(values)], values, larger)
    for key, (val, train) in DELTA.items():
        out[key] = out[val] - out[train]
    return out


def extrema(runs: pa.Table, history: pa.Table, *, t_max: float | None = None,
            alphas: Sequence[float] | None = None) -> pd.DataFrame:
    """One row per trial (per trial and α with ``alphas``): its varied parameters and extremum metrics.

    Columns: ``run_id``, ``trial_id``, ``status``, the varied parameters (the seed among them),
    ``n_params_nonembed``, ``steps`` (the trial's last optimizer step), then ``train_loss``, ``val_loss``
    (minima), ``train_acc``, ``val_acc`` (maxima), their t_f columns (``train_loss_t_f`` ...) and
    ``loss_delta_t``, ``acc_delta_t``.

    Args:
        runs, history: the tables of ``load``.
        t_max: keep only evaluations up to this optimizer step.
        alphas: instead, one row per α with the evaluations up to α·T, T being the trial's ``steps``
            parameter (or its last step), and an ``alpha`` column.
    """
    curves = by_step(history, [*CURVES, metrics.PARAMS_NONEMBED])
    params = varied_params(runs)
    base = runs.select(["run_id", "trial_id", "status", *params]).to_pandas()
    configured = runs.column("steps").to_pylist() if "steps" in runs.column_names else [None] * runs.num_rows
    rows = []
    for (_, row), steps in zip(base.iterrows(), configured):
        run = curves.loc[row["run_id"]] if row["run_id"] in curves.index.get_level_values(0) else curves.iloc[0:0]
        last = int(run.index.max()) if len(run) else 0
        total = steps if steps is not None else last
        sizes = run[metrics.PARAMS_NONEMBED].dropna() if len(run) else []
        common = {**row.to_dict(), metrics.PARAMS_NONEMBED: float(sizes.iloc[-1]) if len(sizes) else math.nan,
                  "steps": total}
        for alpha in (alphas if alphas is not None else [None]):
            limit = t_max if alpha is None else alpha * total
            extra = {} if alpha is None else {"alpha": alpha}
            rows.append({**common, **extra, **trial_extrema(run, limit)})
    return pd.DataFrame(rows)


def aggregate(table: pd.DataFrame, by: Sequence[str] | None = None, values: Sequence[str] = VALUES,
              seed: str = SEED) -> pd.DataFrame:
    """Mean and sample std (ddof 1) of ``values`` over repeated configs: ``<col>_mean``, ``<col>_std``.

    Args:
        table: e.g. ``extrema``'s.
        by: the columns that make a config; None is every parameter column of ``table`` but the
            seed (the varied parameters, plus ``alpha`` when present).
        values: the columns to aggregate.
        seed: the column that tells repeats apart.
    """
    by = [c for c in _config_columns(table) if c != seed] if by is None else list(by)
    values = [v for v in values if v in table.columns]
    extra = [metrics.PARAMS_NONEMBED] if metrics.PARAMS_NONEMBED in table.columns else []
    grouped = (table.groupby(by, dropna=False, sort=True) if by
               else table.assign(_all=0).groupby("_all"))
    agg = grouped[values].agg(["mean", "std"])
    agg.columns = [f"{c}_{stat}" for c, stat in agg.columns]
    for col in extra:
        agg[col] = grouped[col].first()
    agg.insert(0, "n", grouped.size())
    out = agg.reset_index()
    return out.drop(columns="_all") if not by else out


def side_by_side(table: pd.DataFrame, column: str = "model", fmt: str = ".3g") -> pd.DataFrame:
    """Seed 002's table 1: one row per extremum metric, one column per value of ``column``,
    each cell "mean ± std" over seeds.

    Args:
        table: ``extrema``'s rows (one per trial).
        column: the parameter whose values become the columns; other varied parameters must be
            constant (use ``aggregate`` for a grid).
        fmt: number format.

    Raises:
        AnalysisError: other parameters than ``column`` and the seed vary.
    """
    others = [c for c in _config_columns(table) if c not in (column, SEED) and table[c].nunique(dropna=False) > 1]
    if others:
        raise AnalysisError(f"more than {column!r} varies ({', '.join(others)}); use aggregate()")
    grouped = column in table.columns
    agg = aggregate(table, by=[column] if grouped else [])
    names = [str(v) for v in agg[column]] if grouped else ["all"]
    rows = []
    for key in VALUES:
        cells = {"metric": LABELS[key]}
        for name, (_, r) in zip(names, agg.iterrows()):
            cells[name] = mean_std(r[f"{key}_mean"], r[f"{key}_std"], fmt)
        rows.append(cells)
    rows.append({"metric": "trials", **{name: str(int(r["n"])) for name, (_, r) in zip(names, agg.iterrows())}})
    return pd.DataFrame(rows)


def config_table(table: pd.DataFrame) -> pd.DataFrame:
    """``extrema``'s rows aggregated per config, each metric one "mean ± std" column (report labels)."""
    agg = aggregate(table)
    keys = [c for c in agg.columns if not c.endswith(("_mean", "_std"))]
    out = agg[keys].copy()
    for key in VALUES:
        out[LABELS[key]] = [mean_std(m, s) for m, s in zip(agg[f"{key}_mean"], agg[f"{key}_std"])]
    return out


def _config_columns(table: pd.DataFrame) -> list[str]:
    """The columns of an ``extrema`` table that describe a config: its parameters (and ``alpha``)."""
    return [c for c in table.columns if c not in _NOT_CONFIG]


_NOT_CONFIG = {"run_id", "trial_id", "status", "steps", metrics.PARAMS_NONEMBED, *VALUES}


def mean_std(mean: float, std: float, fmt: str = ".3g") -> str:
    """ "mean ± std", or the mean alone when std is undefined (one trial)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return format(mean, fmt)
    return f"{mean:{fmt}} ± {std:{fmt}}"
