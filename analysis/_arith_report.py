"""The arithmetic section of ``tunelab report`` (seed report 002): which tables and figures a search gets.

What the search varies (besides the seed, always aggregated as mean ± std) picks the figures:

- nothing but the model (arith_sanity, arith_orders): table 1 (metrics × models), the curves coloured
  by model, each order's curves when orders are mixed;
- one parameter (r_train, batch size, weight decay): per model, the curves coloured by it and the
  extremum metrics against it; the batch search's extrema within T' = αT against B, one line per α;
  the weight-decay search's parameter norm beside the curves;
- L and d (arith_size): per model and L, the curves coloured by d; the metrics against d per L, and
  against the non-embedding parameter count;
- always: the aggregated table of every config, and a GPT's attention maps when one logged them.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pyarrow as pa

from tunelab.analysis._arith import CURVE_PANELS, plot_arith_curves, plot_extrema, plot_order_curves
from tunelab.analysis._attention import load_attention, plot_attention
from tunelab.analysis._errors import AnalysisError
from tunelab.analysis._extrema import LABELS, VALUES, aggregate, extrema, mean_std, side_by_side
from tunelab.analysis._schema import SEED, search_info, varied_params
from tunelab.trainables import metrics
from tunelab.trainables import tags

TRAINABLE = "arith"
MODEL = "model"


def is_arith(runs: pa.Table) -> bool:
    """Whether the search trained the arith trainable (its parent run's ``tunelab.trainable`` tag)."""
    return search_info(runs)["parent_tags"].get(tags.TRAINABLE) == TRAINABLE


def arith_blocks(runs: pa.Table, history: pa.Table) -> list[tuple]:
    """The report blocks of an arithmetic search (the same block kinds as ``_report.build_blocks``).

    Args:
        runs, history: the tables of ``load``.
    """
    blocks: list[tuple] = [("h", 2, "Modular arithmetic (seed report 002)")]
    varied = varied_params(runs, exclude=(SEED,))
    others = [p for p in varied if p != MODEL]
    models = sorted(set(runs.column(MODEL).to_pylist())) if MODEL in runs.column_names else []
    wheres = [{MODEL: m} for m in models] if MODEL in varied else [None]
    table = extrema(runs, history)

    blocks.append(("p", "Extremum metrics: L the smallest loss and A the largest accuracy over a trial's "
                        "evaluations, t_f the optimizer step at which each is first reached, "
                        "Δt(L) = t_f(L_val) - t_f(L_train), Δt(A) = t_f(A_val) - t_f(A_train); "
                        "mean ± sample standard deviation over seeds."))
    if not others:
        blocks.append(("table", side_by_side(table, MODEL),
                       "Seed report 002's table 1: the models side by side."))
    blocks.append(("table", config_table(table), "Every config (all varied parameters but the seed): "
                   "n trials, the extremum metrics as mean ± std."))

    blocks.append(("h", 3, "Curves and scaling"))
    for where in wheres:
        for make, what in _figures(others, where, runs):
            blocks.append(_figure(lambda make=make: make(runs, history), what))
    if not others and MODEL in varied:
        blocks.append(_figure(lambda: plot_arith_curves(runs, history, by=MODEL), "curves by model"))
    if metrics.VAL_ACC_O3 in set(history.column("key").unique().to_pylist()):
        for where in wheres:
            blocks.append(_figure(lambda where=where: plot_order_curves(runs, history, where=where),
                                  "per-order curves"))

    blocks.append(("h", 3, "Attention maps"))
    try:
        maps = load_attention(runs)
    except AnalysisError as exc:
        blocks.append(("p", f"*No attention maps: {exc}.*"))
    else:
        blocks += [("figure", plot_attention(maps, k)) for k in range(len(maps.tokens))]
    return blocks


def config_table(table: pd.DataFrame) -> pd.DataFrame:
    """``extrema``'s rows aggregated per config, each metric one "mean ± std" column (report labels)."""
    agg = aggregate(table)
    keys = [c for c in agg.columns if not c.endswith(("_mean", "_std"))]
    out = agg[keys].copy()
    for key in VALUES:
        out[LABELS[key]] = [mean_std(m, s) for m, s in zip(agg[f"{key}_mean"], agg[f"{key}_std"])]
    return out


def _figures(others: list[str], where, runs: pa.Table) -> list[tuple[Callable, str]]:
    """The figures of one model's trials, by what the search varies."""
    figs: list[tuple[Callable, str]] = []
    if not others:
        return figs
    if set(others) == {"num_layers", "d_model"}:
        for layers in sorted(set(runs.column("num_layers").to_pylist())):
            w = {**(where or {}), "num_layers": layers}
            figs.append((lambda r, h, w=w: plot_arith_curves(r, h, by="d_model", where=w), "curves by d"))
        figs.append((lambda r, h: plot_extrema(r, h, "d_model", hue="num_layers", where=where), "metrics against d"))
        figs.append((lambda r, h: plot_extrema(r, h, metrics.PARAMS_NONEMBED, hue="num_layers", where=where),
                     "metrics against parameters"))
        return figs
    for x in others:
        keys = (*CURVE_PANELS, metrics.PARAM_NORM) if x == "weight_decay" else CURVE_PANELS
        figs.append((lambda r, h, x=x, keys=keys: plot_arith_curves(r, h, by=x, where=where, keys=keys),
                     f"curves by {x}"))
        if x == "batch_size":
            figs.append((lambda r, h: plot_extrema(r, h, "batch_size", hue="alpha", where=where),
                         "metrics within αT against B"))
        else:
            figs.append((lambda r, h, x=x: plot_extrema(r, h, x, where=where), f"metrics against {x}"))
    return figs


def _figure(make, what: str) -> tuple:
    try:
        return ("figure", make())
    except AnalysisError as exc:
        return ("p", f"*No {what}: {exc}.*")
