"""Seed report 002's figures: curves over optimizer steps coloured by the varied parameter, and the
extremum metrics against a parameter, every line the mean over seeds with its spread.

- ``plot_arith_curves``: training and validation loss and accuracy (and, on request, the parameter
  norm or any other logged metric) over steps, one curve per value of a parameter, coloured along a
  colour bar (log2 for d and B); the band is ± one std over seeds.
- ``plot_order_curves``: the same four curves for each operation order of a mixed-order search.
- ``plot_extrema``: L_train, L_val, A_train, A_val and their t_f against a parameter (r_train, d,
  L, n_params_nonembed, B, weight decay, α), one line per value of a second one (L, α, the model),
  with ± std error bars; loss axes logarithmic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tunelab.analysis._errors import AnalysisError
from tunelab.analysis._extrema import ALPHAS, LABELS, aggregate, by_step, extrema
from tunelab.analysis._plot import Plot, label, new_figure
from tunelab.analysis._schema import SEED, varied_params
from tunelab.trainables import metrics

# Parameters drawn on log2 axes and colour bars (seed 002: "always put the axis/colorbar of d and B
# in log2 scale").
LOG2 = ("d_model", "batch_size")
CURVE_PANELS = (metrics.TRAIN_LOSS, metrics.VAL_LOSS, metrics.TRAIN_ACC, metrics.VAL_ACC)
EXTREMA_PANELS = (metrics.TRAIN_LOSS, metrics.VAL_LOSS, metrics.TRAIN_ACC, metrics.VAL_ACC,
                  metrics.TRAIN_LOSS_T_F, metrics.VAL_LOSS_T_F, metrics.TRAIN_ACC_T_F, metrics.VAL_ACC_T_F)
TITLES = {
    metrics.TRAIN_LOSS: "training loss", metrics.VAL_LOSS: "validation loss",
    metrics.TRAIN_ACC: "training accuracy", metrics.VAL_ACC: "validation accuracy",
    metrics.PARAM_NORM: "parameter L2 norm",
}


def _selected(runs: pa.Table, where: Mapping[str, Any] | None) -> pd.DataFrame:
    """The trials' parameter rows (run_id and every parameter column) matching ``where``."""
    df = runs.to_pandas()
    for key, value in (where or {}).items():
        if key not in df.columns:
            raise AnalysisError(f"no parameter {key!r} in this search")
        df = df[df[key] == value]
    if df.empty:
        raise AnalysisError(f"no trial with {where}")
    return df


def _is_numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values)


class _Colours:
    """Colours for the values of one parameter: along a colour bar when numeric, else a legend."""

    def __init__(self, name: str | None, values: Sequence[Any]):
        from matplotlib import colormaps
        from matplotlib.colors import LogNorm, Normalize

        self.name, self.values = name, list(values)
        self.numeric = name is not None and _is_numeric(self.values) and len(self.values) > 1
        if self.numeric:
            lo, hi = float(min(self.values)), float(max(self.values))
            self.log2 = name in LOG2 and lo > 0
            self.norm = LogNorm(lo, hi) if self.log2 else Normalize(lo, hi)
            self.cmap = colormaps["viridis"]
        self._index = {v: i for i, v in enumerate(self.values)}

    def __call__(self, value: Any):
        if self.numeric:
            return self.cmap(self.norm(float(value)))
        return f"C{self._index[value] % 10}"

    def finish(self, fig, axes) -> None:
        """A colour bar beside ``axes`` (numeric), else a legend of the values."""
        if self.name is None:
            return
        if self.numeric:
            from matplotlib.cm import ScalarMappable

            bar = fig.colorbar(ScalarMappable(norm=self.norm, cmap=self.cmap), ax=axes, label=label(self.name),
                               shrink=0.9)
            ticks = sorted({float(v) for v in self.values})
            if self.log2:
                bar.ax.set_yscale("log", base=2)
            bar.set_ticks(ticks, labels=[_tick(self.name, v) for v in ticks])
            bar.ax.minorticks_off()
        else:
            from matplotlib.lines import Line2D

            handles = [Line2D([], [], color=self(v), lw=2, label=f"{self.name}={v}") for v in self.values]
            fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)


def _tick(name: str, value: float) -> str:
    if name in LOG2 and value > 0 and float(value).is_integer() and math.log2(value).is_integer():
        return f"2^{int(math.log2(value))}"
    return f"{value:g}"


def _grid(n_panels: int, width: float = 4.2, height: float = 3.2):
    ncols = min(n_panels, 4) if n_panels != 5 else 5
    nrows = math.ceil(n_panels / ncols)
    fig, axes = new_figure(ncols=ncols, nrows=nrows, width=width, height=height)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _describe(where: Mapping[str, Any] | None) -> str:
    return f" ({', '.join(f'{k}={v}' for k, v in where.items())})" if where else ""


def _mean_curves(curves: pd.DataFrame, run_ids: Sequence[str], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, std over runs) of one metric: the runs share their evaluation steps."""
    series = [curves.loc[r][key].dropna() for r in run_ids if r in curves.index.get_level_values(0)]
    series = [s[np.isfinite(s)] for s in series if len(s)]
    if not series:
        return np.array([]), np.array([]), np.array([])
    table = pd.concat(series, axis=1)
    mean = table.mean(axis=1)
    std = table.std(axis=1, ddof=1) if table.shape[1] > 1 else pd.Series(0.0, index=table.index)
    return table.index.to_numpy(), mean.to_numpy(), std.fillna(0.0).to_numpy()


def _band(key: str, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mean ± std, kept where it can be: accuracies in [0, 1], losses (log axes) above zero."""
    low, high = mean - std, mean + std
    if "acc" in key:
        return np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
    if "loss" in key:
        return np.maximum(low, mean / 10), high
    return low, high


def plot_arith_curves(runs: pa.Table, history: pa.Table, by: str | None = None, *,
                      where: Mapping[str, Any] | None = None, keys: Sequence[str] = CURVE_PANELS,
                      name: str | None = None) -> Plot:
    """Loss and accuracy over optimizer steps, one curve per value of ``by`` (mean ± std over seeds).

    Args:
        runs, history: the tables of ``load``.
        by: the parameter whose values colour the curves (a colour bar when numeric, log2 for d and B;
            a legend otherwise); None takes the first varied parameter other than the seed, if any.
        where: keep only the trials whose parameters have these values, e.g. ``{"model": "gpt"}``.
        keys: the metrics, one panel each (add ``param_norm`` for the weight-decay figure).
        name: the figure's file stem.

    Raises:
        AnalysisError: no trial matches, or none logged ``optimizer_steps``.
    """
    trials = _selected(runs, where)
    if by is None:
        others = [p for p in varied_params(runs, exclude=(SEED,)) if not where or p not in where]
        by = others[0] if others else None
    values = sorted(trials[by].dropna().unique().tolist()) if by else [None]
    colours = _Colours(by, values)
    curves = by_step(history, keys, trials["run_id"])
    fig, axes = _grid(len(keys))
    for ax, key in zip(axes, keys):
        for value in values:
            ids = trials["run_id"] if by is None else trials.loc[trials[by] == value, "run_id"]
            steps, mean, std = _mean_curves(curves, list(ids), key)
            if not len(steps):
                continue
            colour = colours(value) if by else "C0"
            ax.plot(steps, mean, color=colour, lw=1.3)
            ax.fill_between(steps, *_band(key, mean, std), color=colour, alpha=0.2, lw=0)
        ax.set_title(TITLES.get(key, key))
        ax.set_xlabel(label(metrics.STEP))
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if "loss" in key:
            ax.set_yscale("log")
    colours.finish(fig, axes)
    what = f"one curve per {by}" if by else "one config"
    caption = (f"{', '.join(TITLES.get(k, k) for k in keys).capitalize()} over optimizer steps{_describe(where)}, "
               f"{what}: the mean over seeds, the band ± one standard deviation.")
    stem = name or "arith_curves" + (f"_{by}" if by else "") + "".join(f"_{k}{v}" for k, v in (where or {}).items())
    return Plot(fig, caption, stem)


def plot_order_curves(runs: pa.Table, history: pa.Table, *, where: Mapping[str, Any] | None = None,
                      name: str | None = None) -> Plot:
    """Each operation order's loss and accuracy over steps (a mixed-order search: seed 002, question 4b).

    Args:
        runs, history: the tables of ``load``.
        where: keep only the trials whose parameters have these values, e.g. ``{"model": "gpt"}``.
        name: the figure's file stem.

    Raises:
        AnalysisError: the trials logged no per-order metrics.
    """
    trials = _selected(runs, where)
    keys = [k for order in (2, 3) for k in metrics.BY_ORDER[order]]
    curves = by_step(history, keys, trials["run_id"])
    if curves[keys].isna().all().all():
        raise AnalysisError("no per-order metrics: the search mixes no operation orders")
    fig, axes = _grid(4)
    for i, (ax, key) in enumerate(zip(axes, CURVE_PANELS)):
        for order, colour in ((2, "C0"), (3, "C3")):
            steps, mean, std = _mean_curves(curves, list(trials["run_id"]), metrics.BY_ORDER[order][i])
            if len(steps):
                ax.plot(steps, mean, color=colour, lw=1.3, label=f"order {order}")
                ax.fill_between(steps, *_band(key, mean, std), color=colour, alpha=0.2, lw=0)
        ax.set_title(TITLES[key])
        ax.set_xlabel(label(metrics.STEP))
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if "loss" in key:
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    caption = (f"Loss and accuracy of the binary (order 2) and ternary (order 3) equations apart, over "
               f"optimizer steps{_describe(where)}: mean over seeds, band ± one standard deviation.")
    stem = name or "arith_orders" + "".join(f"_{k}{v}" for k, v in (where or {}).items())
    return Plot(fig, caption, stem)


def plot_extrema(runs: pa.Table, history: pa.Table, x: str, hue: str | None = None, *,
                 where: Mapping[str, Any] | None = None, alphas: Sequence[float] | None = None,
                 name: str | None = None) -> Plot:
    """L_train, L_val, A_train, A_val and their t_f against ``x``, one line per value of ``hue``.

    Points are means over seeds with ± std error bars; loss axes are logarithmic, ``x`` is on a log2
    axis for d and B and a log axis for ``n_params_nonembed``.

    Args:
        runs, history: the tables of ``load``.
        x: a parameter (``r_train``, ``d_model``, ``num_layers``, ``batch_size``, ``weight_decay``),
            ``n_params_nonembed`` or ``alpha``.
        hue: the parameter whose values get one line each (a colour bar when numeric); ``alpha``
            with ``alphas``; None draws one line.
        where: keep only the trials whose parameters have these values.
        alphas: the extrema within T' = αT for each α (seed 002, question 6); default the ten
            α in {0.1, …, 1.0} when ``x`` or ``hue`` is ``alpha``.
        name: the figure's file stem.

    Raises:
        AnalysisError: no trial matches, or ``x`` is not a column.
    """
    trials = _selected(runs, where)
    if alphas is None and "alpha" in (x, hue):
        alphas = ALPHAS
    table = extrema(runs, history, alphas=alphas)
    table = table[table["run_id"].isin(trials["run_id"])]
    if x not in table.columns:
        raise AnalysisError(f"no column {x!r} to plot against; the search varies {', '.join(varied_params(runs))}")
    by = [c for c in dict.fromkeys([x, *([hue] if hue else [])]) if c != metrics.PARAMS_NONEMBED]
    if x == metrics.PARAMS_NONEMBED:  # one point per model size: group by what sets it
        by = [p for p in varied_params(runs, exclude=(SEED,)) if p in table.columns and p not in (where or {})]
        by += ["alpha"] if alphas is not None else []
    agg = aggregate(table, by=by)
    values = sorted(agg[hue].dropna().unique().tolist()) if hue else [None]
    colours = _Colours(hue, values)
    fig, axes = _grid(len(EXTREMA_PANELS))
    for ax, key in zip(axes, EXTREMA_PANELS):
        for value in values:
            part = agg if hue is None else agg[agg[hue] == value]
            part = part.sort_values(x)
            xs, mean, std = part[x].to_numpy(dtype=float), part[f"{key}_mean"], part[f"{key}_std"].fillna(0.0)
            colour = colours(value) if hue else "C0"
            ax.errorbar(xs, mean, yerr=std, color=colour, marker="o", ms=3, lw=1.2, capsize=2)
        ax.set_title(LABELS[key])
        ax.set_xlabel(label(x))
        ax.set_ylabel(LABELS[key])
        ax.grid(alpha=0.3)
        if key in (metrics.TRAIN_LOSS, metrics.VAL_LOSS):
            ax.set_yscale("log")
        if x in LOG2:
            ax.set_xscale("log", base=2)
        elif x == metrics.PARAMS_NONEMBED:
            ax.set_xscale("log")
    colours.finish(fig, axes)
    within = " within T' = αT" if alphas is not None and hue != "alpha" and x != "alpha" else ""
    caption = (f"Extremum metrics against {label(x)}{_describe(where)}{within}"
               + (f", one line per {hue}" if hue else "")
               + ": the smallest loss, the largest accuracy and t_f, the step each is first reached; "
               "means over seeds with ± one standard deviation.")
    stem = name or f"arith_extrema_{x}" + (f"_{hue}" if hue else "") + "".join(f"_{k}{v}" for k, v in (where or {}).items())
    return Plot(fig, caption, stem, data=agg)
