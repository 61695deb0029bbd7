"""Learning curves: train and validation loss and perplexity against epochs, wall-clock or FLOPs.

Seed report 000 plots every experiment twice, against epochs and against wall-clock time; a FLOP-budget
search adds FLOPs, the axis on which trials of different shapes are compared at equal compute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from tunelab.analysis._errors import AnalysisError
from tunelab.analysis._plot import Plot, label, legend_below, new_figure, trial_labels
from tunelab.analysis._schema import search_info
from tunelab.trainables import metrics

PANELS = (
    ("loss", metrics.TRAIN_LOSS, metrics.VAL_LOSS, "cross-entropy (nats/token)"),
    ("perplexity", metrics.TRAIN_PPL, metrics.VAL_PPL, "perplexity"),
)


def select_trials(runs: pa.Table, max_trials: int, metric: str | None = None, mode: str | None = None) -> list[str]:
    """The run ids of the ``max_trials`` best trials by ``best_<metric>`` (start order if absent).

    Args:
        runs: the ``runs`` table of ``load``.
        max_trials: how many.
        metric, mode: what "best" means; None is the search's metric and mode.
    """
    info = search_info(runs)
    metric = metric or info["metric"]
    mode = mode or info["mode"]
    ids = runs.column("run_id").to_pylist()
    col = f"best_{metric}"
    if col not in runs.column_names:
        return ids[:max_trials]
    values = runs.column(col).to_numpy(zero_copy_only=False).astype(float)
    values = np.where(np.isfinite(values), values, np.inf if mode == "min" else -np.inf)
    order = np.argsort(values if mode == "min" else -values, kind="stable")
    return [ids[i] for i in order[:max_trials]]


def curve_data(history: pa.Table, x: str, keys: Sequence[str], run_ids: Sequence[str]) -> dict[str, dict[str, tuple]]:
    """run_id -> key -> (x values, y values), matched on the step both were logged at.

    Args:
        history: the ``history`` table of ``load``.
        x: the metric on the horizontal axis (``epoch``, ``wall_s``, ``flops``, ...).
        keys: metrics on the vertical axis.
        run_ids: the runs to take.
    """
    df = history.select(["run_id", "key", "step", "value"]).to_pandas()
    df = df[df["run_id"].isin(list(run_ids)) & df["key"].isin([x, *keys])]
    wide = df.pivot_table(index=["run_id", "step"], columns="key", values="value", aggfunc="last")
    out: dict[str, dict[str, tuple]] = {}
    for run_id in run_ids:
        if run_id not in wide.index.get_level_values(0) or x not in wide.columns:
            continue
        sub = wide.loc[run_id].sort_index()
        out[run_id] = {}
        for key in keys:
            if key not in sub.columns:
                continue
            both = sub[[x, key]].dropna()
            both = both[np.isfinite(both[key])]
            out[run_id][key] = (both[x].to_numpy(), both[key].to_numpy())
    return out


def plot_curves(
    runs: pa.Table,
    history: pa.Table,
    x: str = metrics.EPOCH,
    *,
    trials: Sequence[str] | None = None,
    max_trials: int = 8,
    panels: Sequence[tuple[str, str, str, str]] = PANELS,
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Plot:
    """Train (dashed) and validation (solid) loss and perplexity of each trial against ``x``.

    Args:
        runs, history: the tables of ``load``.
        x: ``epoch``, ``wall_s``, ``flops`` or any other logged counter.
        trials: run ids or trial ids to draw; None draws the ``max_trials`` best by the search's metric.
        max_trials: the limit when ``trials`` is None (a legend of 30 trials is unreadable).
        panels: (title, train metric, validation metric, y label) per panel, those logged drawn;
            ``PANELS`` by default, accuracy and loss for classification (``analysis._classification``).
        name: the figure's file stem; default ``curves_<x>``.
        labels: run id -> its legend label; default the run names (``t003 lr=0.52``).

    Raises:
        AnalysisError: ``x`` or the panels' metrics were never logged.
    """
    keys_logged = set(history.column("key").unique().to_pylist())
    if x not in keys_logged:
        raise AnalysisError(f"no trial logged {x!r}; cannot plot curves against it")
    wanted = panels
    panels = [p for p in wanted if p[1] in keys_logged or p[2] in keys_logged]
    if not panels:
        raise AnalysisError(f"no trial logged train/val {' or '.join(p[0] for p in wanted)}")
    ids = runs.column("run_id").to_pylist()
    n_all = len(ids)
    if trials is None:
        chosen = select_trials(runs, max_trials)
    else:
        by_trial = dict(zip(runs.column("trial_id").to_pylist(), ids))
        chosen = [by_trial.get(t, t) for t in trials]
    keys = [k for p in panels for k in p[1:3]]
    data = curve_data(history, x, keys, chosen)
    labels = {**trial_labels(runs), **(labels or {})}

    from matplotlib.lines import Line2D

    fig, axes = new_figure(ncols=len(panels))
    colors = [f"C{i % 10}" for i in range(len(chosen))]
    spread = []
    for ax, (title, train_key, val_key, ylabel) in zip(axes, panels):
        for run_id, color in zip(chosen, colors):
            for key, style in ((train_key, "--"), (val_key, "-")):
                xs, ys = data.get(run_id, {}).get(key, ((), ()))
                if len(xs):  # a diverged trial may have no finite value to draw
                    ax.plot(xs, ys, style, color=color, marker="." if len(xs) < 15 else None, lw=1.3)
                    spread += [xs.min(), xs.max()]
        ax.set_xlabel(label(x))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if metrics.is_perplexity(val_key):  # a diverged trial (1e6) would flatten every other curve
            ax.set_yscale("log")
    positive = [v for v in spread if v > 0]
    if x == metrics.FLOPS and positive and max(positive) / min(positive) > 100:
        for ax in axes:
            ax.set_xscale("log")
    handles = [Line2D([], [], color=c, lw=2, label=labels.get(r, r)) for r, c in zip(chosen, colors)]
    handles += [Line2D([], [], color="black", ls="--", label="train"),
                Line2D([], [], color="black", ls="-", label="validation")]
    legend_below(fig, handles)
    which = f"the {len(chosen)} best of {n_all} trials by {search_info(runs)['metric']}" \
        if trials is None and len(chosen) < n_all else f"{len(chosen)} trials"
    caption = (f"Training (dashed) and validation (solid) {' and '.join(p[0] for p in panels)} against "
               f"{label(x)}, {which}; one colour per trial.")
    return Plot(fig, caption, name or f"curves_{x}")
