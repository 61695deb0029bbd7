"""The two figures a search's report opens with, as Optuna's visualisations give by default: the
optimisation history (each trial's objective in the order the trials ended, the best so far) and
the slice plots (the objective against each sampled parameter)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa

from tunelab.analysis._errors import AnalysisError
from tunelab.analysis._plot import STATUS_COLORS, Plot, new_figure, set_metric_scale, trial_names
from tunelab.analysis._schema import SEED, search_info, varied_params
from tunelab.trainables import metrics
from tunelab.trainables import tags


def completion_order(runs: pa.Table, metric: str | None = None) -> pd.DataFrame:
    """The trials in the order they ended (trials still running last, by start), with their best
    objective and the best of all trials ended so far.

    Columns: ``trial`` (t003), ``trial_id``, ``status``, ``order`` (1, 2, ...), ``value`` (the trial's
    best ``metric``), ``best_so_far``.

    Raises:
        AnalysisError: no trial logged the metric.
    """
    info = search_info(runs)
    metric = metric or info["metric"]
    mode = info["mode"]
    col = f"best_{metric}"
    if col not in runs.column_names:
        raise AnalysisError(f"no trial logged {metric!r}")
    df = pd.DataFrame({
        "trial_id": runs.column("trial_id").to_pylist(), "status": runs.column("status").to_pylist(),
        "end": runs.column("end_time").to_pandas(), "start": runs.column("start_time").to_pandas(),
        "value": np.asarray(runs.column(col).to_pylist(), dtype=float),
    })
    names = trial_names(runs)
    df.insert(0, "trial", df["trial_id"].map(lambda t: names.get(t, t)))
    df = df.sort_values(["end", "start"], na_position="last", kind="stable").reset_index(drop=True)
    df.insert(3, "order", np.arange(1, len(df) + 1))
    best, so_far = math.nan, []
    for v in df["value"]:
        if math.isfinite(v) and (math.isnan(best) or (v < best if mode == "min" else v > best)):
            best = v
        so_far.append(best)
    df["best_so_far"] = so_far
    return df.drop(columns=["end", "start"])


def plot_optimization_history(runs: pa.Table, metric: str | None = None) -> Plot:
    """Each trial's best objective in the order the trials ended, and the best so far as steps;
    stopped-early trials hollow (their value is a low-fidelity one), and the infeasible configs the
    sampler proposed, which never became trials, counted in the legend.

    Raises:
        AnalysisError: no trial logged the metric.
    """
    info = search_info(runs)
    metric = metric or info["metric"]
    df = completion_order(runs, metric)
    ok = np.isfinite(df["value"].to_numpy())
    if not ok.any():
        raise AnalysisError(f"no trial has a finite {metric}")
    fig, (ax,) = new_figure(width=6.5, height=4.2)
    for status in dict.fromkeys(df["status"]):
        m = ok & (df["status"] == status).to_numpy()
        if not m.any():
            continue
        color = STATUS_COLORS.get(status, "#999999")
        hollow = status == metrics.STOPPED_EARLY
        ax.scatter(df["order"][m], df["value"][m], s=26, label=status, zorder=3,
                   facecolors="none" if hollow else color, edgecolors=color)
    ax.step(df["order"], df["best_so_far"], where="post", color="black", lw=1.3, label=f"best {metric} so far")
    infeasible = int(info["parent_metrics"].get(f"n_{metrics.INFEASIBLE}", 0) or 0)
    if infeasible:
        ax.scatter([], [], marker="x", color=STATUS_COLORS[metrics.INFEASIBLE],
                   label=f"infeasible: {infeasible} (rejected before training)")
    set_metric_scale(ax, metric, df["value"][ok])
    ax.set_xlabel("trial, in the order the trials ended")
    ax.set_ylabel(f"best {metric} of the trial")
    ax.set_title(f"optimisation history: {info.get('experiment', '')}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    better = "lower" if info["mode"] == "min" else "higher"
    caption = (f"Each trial's best {metric} ({better} is better) in the order the trials ended, coloured by how "
               f"it ended; stopped-early trials are hollow (a value from fewer epochs). The black steps are the "
               f"best {metric} of the trials ended so far.")
    if infeasible:
        caption += f" {infeasible} infeasible configs were proposed and rejected before training; they have no point."
    return Plot(fig, caption, "optimization_history", data=df)


def plot_slice(runs: pa.Table, metric: str | None = None) -> Plot:
    """The objective against each sampled parameter, one panel each, coloured by the order the trials
    ended; logarithmic axes for parameters sampled on a log scale; choices as categories.

    Raises:
        AnalysisError: no parameter varied, or no trial logged the metric.
    """
    info = search_info(runs)
    metric = metric or info["metric"]
    params = varied_params(runs, exclude=(SEED,))
    if not params:
        raise AnalysisError("no parameter varied across the trials")
    order = completion_order(runs, metric).set_index("trial_id")["order"]
    ids = runs.column("trial_id").to_pylist()
    ys = np.asarray(runs.column(f"best_{metric}").to_pylist(), dtype=float)
    when = np.asarray([order.get(t, len(ids)) for t in ids], dtype=float)
    stopped = np.asarray([s == metrics.STOPPED_EARLY for s in runs.column("status").to_pylist()])
    logs = set(filter(None, (info["parent_tags"].get(tags.LOG_PARAMS) or "").split(",")))
    ncols = min(3, len(params))
    nrows = math.ceil(len(params) / ncols)
    fig, axes = new_figure(ncols=ncols, nrows=nrows, width=3.6, height=3.0)
    for ax, name in zip(axes, params):
        raw = runs.column(name).to_pylist()
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw if v is not None)
        if numeric:
            xs = np.asarray([math.nan if v is None else v for v in raw], dtype=float)
            if name in logs or (not logs and _spans_decades(xs)):
                from matplotlib.ticker import NullFormatter

                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # a range under a decade: no crowded labels
        else:  # choices: one position each, in first-seen order, a little spread
            cats = list(dict.fromkeys(str(v) for v in raw))
            xs = np.asarray([cats.index(str(v)) for v in raw], dtype=float)
            xs += np.random.default_rng(0).uniform(-0.12, 0.12, len(xs))
            ax.set_xticks(range(len(cats)), cats, rotation=30 if len(cats) > 3 else 0, fontsize=7)
        ok = np.isfinite(xs) & np.isfinite(ys)
        for hollow in (False, True):
            m = ok & (stopped == hollow)
            if m.any():
                colors = _colors(when[m], len(ids))
                ax.scatter(xs[m], ys[m], s=22, facecolors="none" if hollow else colors, edgecolors=colors)
        set_metric_scale(ax, metric, ys[ok])
        ax.set_xlabel(name)
        ax.set_ylabel(f"best {metric}")
        ax.grid(alpha=0.3)
    for ax in axes[len(params):]:
        ax.remove()
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig.colorbar(ScalarMappable(Normalize(1, max(len(ids), 2)), "viridis"), ax=axes[:len(params)],
                 label="trial, in the order ended", shrink=0.9)
    fig.suptitle(f"slice: best {metric} against each sampled parameter", fontsize=9)
    caption = (f"Each trial's best {metric} against each parameter the search sampled (one panel each), coloured "
               "by the order the trials ended (later trials lighter); stopped-early trials are hollow. "
               "Parameters sampled on a log scale have a log axis.")
    return Plot(fig, caption, "slice", data=params)


def _spans_decades(xs: np.ndarray) -> bool:
    """Positive values spanning more than a factor of 100 (a search that did not say which are log)."""
    finite = xs[np.isfinite(xs)]
    return len(finite) > 1 and finite.min() > 0 and finite.max() / finite.min() > 100


def _colors(when: np.ndarray, n: int):
    from matplotlib import colormaps

    return colormaps["viridis"]((when - 1) / max(n - 1, 1))
