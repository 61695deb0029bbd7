"""The GPT family's part of ``tunelab report``: the objective against the learning rate, one curve per width.

Tensor Programs V's Figure 1 (Yang et al. 2022) from a search's own runs. When a search varies the
width (``n_embd``) and a learning rate (``max_lr``, else ``min_lr`` or ``lr``) together, as
spaces/gpt_mup_widths.yaml's grid does, the section draws each trial's final objective against its
learning rate, one line per width, each width's optimum marked, one panel per parametrization (``sp``
and ``mup`` side by side when the search ran both), and tabulates where the optimum lies per width
and how far it moves from the narrowest width to the widest: under µP it should stay within a grid
step, under the standard parametrization it falls as the width grows.

Seeds are averaged: a point is the mean final objective over the seeds that ran that (parametrization,
width, rate). A rate at which any seed diverged (a status other than completed, or a non-finite final
value) is no point on its curve and cannot be a width's optimum: a rate that fails half the time is not
the one to transfer.

The ViT's registry entry names this module too (its blocks have the same width rules).
Imported only when a report is built or a notebook asks; never in a trial.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa

from tunelab import analysis
from tunelab.analysis import AnalysisError, Plot, figure_block
from tunelab.trainables import metrics

WIDTH = "n_embd"
PARAMETRIZATION = "parametrization"
LEARNING_RATES = ("max_lr", "min_lr", "lr")  # the first one the search varies is "the" learning rate


def report_blocks(runs: pa.Table, history: pa.Table) -> list[tuple]:
    """The report blocks of a GPT (or ViT) search: the learning-rate-against-width section when the
    search crosses width with a learning rate, else nothing.

    Args:
        runs, history: the tables of ``tunelab.analysis.load``.
    """
    lr = learning_rate(runs)
    if lr is None:
        return []
    blocks: list[tuple] = [("h", 2, "Learning rate against width")]
    blocks.append(figure_block(lambda: plot_lr_width(runs), "learning rate against width"))
    try:
        optima = lr_optima(runs)
    except AnalysisError:
        return blocks
    shifts = "; ".join(f"{p}: the optimum moves ×{s:.3g} from width {optima.attrs['narrowest']} to "
                       f"{optima.attrs['widest']}" for p, s in optima.attrs["shift"].items())
    blocks.append(("table", optima, f"Each width's best {lr} by the mean final "
                   f"{analysis.search_info(runs)['metric']} over its seeds (n). {shifts} "
                   "(the widest's optimum over the narrowest's)."))
    return blocks


def learning_rate(runs: pa.Table) -> str | None:
    """The learning-rate parameter the search varies together with the width; None when it varies
    only one of them (or neither)."""
    varied = set(analysis.varied_params(runs))
    if WIDTH not in varied:
        return None
    return next((name for name in LEARNING_RATES if name in varied), None)


def lr_width_table(runs: pa.Table) -> pd.DataFrame:
    """The mean final objective per (parametrization, width, learning rate), over seeds.

    Returns:
        Columns ``parametrization``, ``n_embd``, the learning rate's name, ``mean``, ``std`` (0 for one
        seed), ``n`` (trials), ``diverged`` (how many of them did not complete with a finite value);
        ``mean`` is NaN where any diverged. Sorted by parametrization, width and rate.

    Raises:
        AnalysisError: the search does not cross width with a learning rate.
    """
    lr = learning_rate(runs)
    if lr is None:
        raise AnalysisError("the search does not vary the width (n_embd) together with a learning rate "
                            f"({', '.join(LEARNING_RATES)})")
    metric = analysis.search_info(runs)["metric"]
    frame = runs.select([c for c in (PARAMETRIZATION, WIDTH, lr, "status", f"last_{metric}")
                         if c in runs.column_names]).to_pandas()
    if PARAMETRIZATION not in frame:
        frame[PARAMETRIZATION] = "sp"
    value = frame.get(f"last_{metric}", pd.Series(np.nan, index=frame.index)).astype(float)
    frame["ok"] = (frame["status"] == metrics.COMPLETED) & np.isfinite(value)
    frame["value"] = value.where(frame["ok"])
    rows = []
    for (p, width, rate), group in frame.groupby([PARAMETRIZATION, WIDTH, lr], sort=True):
        diverged = int((~group["ok"]).sum())
        values = group["value"].dropna()
        rows.append({PARAMETRIZATION: p, WIDTH: int(width), lr: float(rate),
                     "mean": values.mean() if not diverged else math.nan,
                     "std": values.std(ddof=1) if len(values) > 1 else 0.0,
                     "n": len(group), "diverged": diverged})
    return pd.DataFrame(rows)


def lr_optima(runs: pa.Table, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each (parametrization, width)'s best learning rate by the mean final objective over seeds.

    Args:
        runs: the runs table of ``tunelab.analysis.load``.
        table: its ``lr_width_table``, when the caller has it already.

    Returns:
        Columns ``parametrization``, ``n_embd``, the learning rate, ``mean``, ``std``, ``n``. In
        ``attrs``: ``shift``, parametrization -> the widest width's optimum over the narrowest's (1
        is no shift; 0.25 the optimum four times smaller at the widest), and ``narrowest``, ``widest``.

    Raises:
        AnalysisError: no width has a rate at which every seed completed.
    """
    lr = learning_rate(runs)
    table = (lr_width_table(runs) if table is None else table).dropna(subset=["mean"])
    if table.empty:
        raise AnalysisError("no learning rate completed at any width")
    mode = analysis.search_info(runs)["mode"]
    best = table.loc[table.groupby([PARAMETRIZATION, WIDTH])["mean"].idxmin() if mode == "min"
                     else table.groupby([PARAMETRIZATION, WIDTH])["mean"].idxmax()]
    best = best.drop(columns="diverged").reset_index(drop=True)
    widths = sorted(set(best[WIDTH]))
    shift = {}
    for p, group in best.groupby(PARAMETRIZATION):
        rates = dict(zip(group[WIDTH], group[lr]))
        if widths[0] in rates and widths[-1] in rates:
            shift[p] = rates[widths[-1]] / rates[widths[0]]
    best.attrs.update(shift=shift, narrowest=widths[0], widest=widths[-1])
    return best


def plot_lr_width(runs: pa.Table) -> Plot:
    """The final objective against the learning rate (log2 axis), one line per width, each width's
    optimum starred; one panel per parametrization, sharing the y axis.

    Raises:
        AnalysisError: the search does not cross width with a learning rate, or nothing completed.
    """
    lr = learning_rate(runs)
    table = lr_width_table(runs)
    optima = lr_optima(runs, table)
    info = analysis.search_info(runs)
    metric = info["metric"]
    params = sorted(set(table[PARAMETRIZATION]), key=lambda p: (p != "sp", p))  # sp beside mup, as TP5 draws them
    widths = sorted(set(table[WIDTH]))
    fig, axes = analysis.new_figure(ncols=len(params), width=4.6, height=3.6)
    import matplotlib

    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.9, len(widths)))
    finite = table["mean"].dropna()
    for ax, p in zip(axes, params):
        for color, width in zip(colors, widths):
            rows = table[(table[PARAMETRIZATION] == p) & (table[WIDTH] == width)]
            ax.plot(rows[lr], rows["mean"], "-o", color=color, markersize=3, label=f"width {width}")
            star = optima[(optima[PARAMETRIZATION] == p) & (optima[WIDTH] == width)]
            ax.plot(star[lr], star["mean"], "*", color=color, markersize=13, markeredgecolor="black")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(lr)
        shift = optima.attrs["shift"].get(p)
        ax.set_title(f"{p}" + (f": optimum ×{shift:.3g} from width {widths[0]} to {widths[-1]}" if shift else ""),
                     fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"final {metric}")
    if len(finite):  # the curves' floor matters, not how far a diverging rate climbs
        low, high = finite.min(), min(finite.max(), finite.min() + 3 * (finite.median() - finite.min()) + 1e-9)
        for ax in axes:
            ax.set_ylim(low - 0.03 * (high - low), high + 0.05 * (high - low))
    axes[-1].legend(fontsize=7, loc="upper right")
    seeds = int(table["n"].max())
    caption = (f"Final {metric} against {lr}, one line per width (n_embd), each width's optimum starred; "
               f"a point is the mean over up to {seeds} seed(s), a rate where any seed diverged is left out. "
               "Under µP the optimum should stay put as the width grows (Tensor Programs V, Figure 1).")
    return Plot(fig, caption, "lr_width", data=optima)
