"""Pareto fronts: which trials no other trial beats on both quality and cost (FLOPs or wall-clock)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from tunelab.analysis._errors import AnalysisError
from tunelab.analysis._plot import STATUS_COLORS, Plot, label, new_figure, set_metric_scale, trial_names
from tunelab.analysis._schema import search_info


def pareto_front(cost: Sequence[float], quality: Sequence[float], mode: str = "min") -> list[int]:
    """Indices of the non-dominated points, by ascending cost.

    A point is on the front when no other point has a cost at most as large and a strictly better
    quality (or equal quality at strictly lower cost). Non-finite points are never on it.

    Args:
        cost: lower is better (FLOPs, seconds).
        quality: the metric; lower is better when ``mode`` is "min".
        mode: "min" or "max" for ``quality``.
    """
    sign = 1.0 if mode == "min" else -1.0
    pts = [(float(c), sign * float(q), i) for i, (c, q) in enumerate(zip(cost, quality))
           if c is not None and q is not None and math.isfinite(c) and math.isfinite(q)]
    pts.sort()
    front, best = [], math.inf
    for c, q, i in pts:  # ascending cost: a point joins when it beats every cheaper one
        if q < best:
            front.append(i)
            best = q
    return front


def plot_pareto(runs: pa.Table, x: str = "flops", metric: str | None = None, mode: str | None = None) -> Plot:
    """Each trial's best metric against what it spent (``last_<x>``), the Pareto front drawn as steps.

    Args:
        runs: the ``runs`` table of ``load``.
        x: the cost metric, ``flops`` or ``wall_s`` (its last, cumulative value is the trial's spend).
        metric, mode: the quality; None is the search's metric and mode.

    Raises:
        AnalysisError: the cost or the metric was never logged.
    """
    info = search_info(runs)
    metric = metric or info["metric"]
    mode = mode or info["mode"]
    xcol, ycol = f"last_{x}", f"best_{metric}"
    for col in (xcol, ycol):
        if col not in runs.column_names:
            raise AnalysisError(f"no trial logged {col[5:]!r}; cannot draw a Pareto front")
    xs = np.asarray(runs.column(xcol).to_pylist(), dtype=float)
    ys = np.asarray(runs.column(ycol).to_pylist(), dtype=float)
    status = runs.column("status").to_pylist()
    trial = runs.column("trial_id").to_pylist()
    names = trial_names(runs)
    front = pareto_front(xs, ys, mode)
    ok = np.isfinite(xs) & np.isfinite(ys)
    if not ok.any():
        raise AnalysisError(f"no trial has both a finite {x} and a finite {metric}")

    fig, (ax,) = new_figure(width=6.0, height=4.2)
    for s in dict.fromkeys(status):
        m = ok & np.array([st == s for st in status])
        if m.any():
            ax.scatter(xs[m], ys[m], s=22, color=STATUS_COLORS.get(s, "#999999"), label=s, alpha=0.85)
    fx, fy = xs[front], ys[front]
    ax.step(fx, fy, where="post", color="black", lw=1.2, label="Pareto front")
    for i in front:
        ax.annotate(names.get(trial[i], str(trial[i])), (xs[i], ys[i]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    if ok.sum() > 1 and xs[ok].min() > 0 and xs[ok].max() / xs[ok].min() > 100:
        ax.set_xscale("log")
    set_metric_scale(ax, metric, ys[ok])
    ax.set_xlabel(f"{label(x)} spent by the trial")
    ax.set_ylabel(f"best {metric}")
    ax.set_title(f"best {metric} against {label(x)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    better = "lower" if mode == "min" else "higher"
    caption = (f"Each trial's best {metric} ({better} is better) against the {label(x)} it spent, coloured by "
               f"final status. The black steps join the {len(front)} Pareto-optimal trials: none is beaten "
               f"on both at once. Stopped-early trials spent less by construction.")
    return Plot(fig, caption, f"pareto_{x}", data=[trial[i] for i in front])
