"""The arith family's part of ``tunelab report`` (seed report 002), and a GPT trial's attention maps.

``report_blocks`` is the section the family's registry entry names (``Entry.report_module``): what the
search varies (besides the seed, always aggregated as mean ± std) picks the tables and figures, built
from ``tunelab.analysis``' extremum metrics and step curves:

- nothing but the model (arith_sanity, arith_orders): table 1 (metrics × models), the curves coloured
  by model, each order's curves when orders are mixed;
- one parameter (r_train, batch size, weight decay): per model, the curves coloured by it and the
  extremum metrics against it; the batch search's extrema within T' = αT against B, one line per α;
  the weight-decay search's parameter norm beside the curves;
- L and d (arith_size): per model and L, the curves coloured by d; the metrics against d per L, and
  against the non-embedding parameter count;
- always: the aggregated table of every config, and a GPT's attention maps when one logged them.

The attention maps: a GPT trial leaves ``ATTENTION_ARTIFACT`` on its MLflow run (logged by the driver
from its last checkpoint): the attention weights of every layer and head on two training equations,
(samples, layers, heads, S, S), and the equations' tokens. ``load_attention`` reads them back
(``tunelab.analysis.read_artifact``: MLflow stays the analysis' business), ``plot_attention`` draws one sample as a layers × heads grid of S × S maps, the tokens on both axes.

Imported only when a report is built or a notebook asks (it imports ``tunelab.analysis``, pandas and,
to draw, matplotlib); never in a trial.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from tunelab import analysis
from tunelab.analysis import AnalysisError, Plot, figure_block
from tunelab.trainables import metrics
from tunelab.trainables.arith.config import ATTENTION_ARTIFACT

# ArithConfig's fields the section groups by.
MODEL = "model"
SEED = "seed"
# The four curves (plot_arith_curves' panels), and the weight-decay search's parameter norm beside them.
NORM_PANELS = (metrics.TRAIN_LOSS, metrics.VAL_LOSS, metrics.TRAIN_ACC, metrics.VAL_ACC, metrics.PARAM_NORM)


def report_blocks(runs: pa.Table, history: pa.Table) -> list[tuple]:
    """The report blocks of an arithmetic search (the block kinds of ``Entry.report_module``).

    Args:
        runs, history: the tables of ``tunelab.analysis.load``.
    """
    blocks: list[tuple] = [("h", 2, "Modular arithmetic (seed report 002)")]
    varied = analysis.varied_params(runs, exclude=(SEED,))
    others = [p for p in varied if p != MODEL]
    models = sorted(set(runs.column(MODEL).to_pylist())) if MODEL in runs.column_names else []
    wheres = [{MODEL: m} for m in models] if MODEL in varied else [None]
    table = analysis.extrema(runs, history)

    blocks.append(("p", "Extremum metrics: L the smallest loss and A the largest accuracy over a trial's "
                        "evaluations, t_f the optimizer step at which each is first reached, "
                        "Δt(L) = t_f(L_val) - t_f(L_train), Δt(A) = t_f(A_val) - t_f(A_train); "
                        "mean ± sample standard deviation over seeds."))
    if not others:
        blocks.append(("table", analysis.side_by_side(table, MODEL),
                       "Seed report 002's table 1: the models side by side."))
    blocks.append(("table", analysis.config_table(table), "Every config (all varied parameters but the seed): "
                   "n trials, the extremum metrics as mean ± std."))

    blocks.append(("h", 3, "Curves and scaling"))
    for where in wheres:
        for make, what in _figures(others, where, runs):
            blocks.append(figure_block(lambda make=make: make(runs, history), what))
    if not others and MODEL in varied:
        blocks.append(figure_block(lambda: analysis.plot_arith_curves(runs, history, by=MODEL), "curves by model"))
    if metrics.VAL_ACC_O3 in set(history.column("key").unique().to_pylist()):
        for where in wheres:
            blocks.append(figure_block(lambda where=where: analysis.plot_order_curves(runs, history, where=where),
                                       "per-order curves"))

    blocks.append(("h", 3, "Attention maps"))
    try:
        maps = load_attention(runs)
    except AnalysisError as exc:
        blocks.append(("p", f"*No attention maps: {exc}.*"))
    else:
        blocks += [("figure", plot_attention(maps, k)) for k in range(len(maps.tokens))]
    return blocks


def _figures(others: list[str], where, runs: pa.Table) -> list[tuple[Callable, str]]:
    """The figures of one model's trials, by what the search varies."""
    figs: list[tuple[Callable, str]] = []
    if not others:
        return figs
    curves, extrema = analysis.plot_arith_curves, analysis.plot_extrema
    if set(others) == {"num_layers", "d_model"}:
        for layers in sorted(set(runs.column("num_layers").to_pylist())):
            w = {**(where or {}), "num_layers": layers}
            figs.append((lambda r, h, w=w: curves(r, h, by="d_model", where=w), "curves by d"))
        figs.append((lambda r, h: extrema(r, h, "d_model", hue="num_layers", where=where), "metrics against d"))
        figs.append((lambda r, h: extrema(r, h, metrics.PARAMS_NONEMBED, hue="num_layers", where=where),
                     "metrics against parameters"))
        return figs
    for x in others:
        keys = NORM_PANELS if x == "weight_decay" else NORM_PANELS[:-1]
        figs.append((lambda r, h, x=x, keys=keys: curves(r, h, by=x, where=where, keys=keys), f"curves by {x}"))
        if x == "batch_size":
            figs.append((lambda r, h: extrema(r, h, "batch_size", hue="alpha", where=where),
                         "metrics within αT against B"))
        else:
            figs.append((lambda r, h, x=x: extrema(r, h, x, where=where), f"metrics against {x}"))
    return figs


@dataclasses.dataclass
class AttentionMaps:
    """Attention weights of one trial.

    Attributes:
        weights: (samples, layers, heads, S, S); row i is what position i attends to (causal: j <= i).
        tokens: each sample's S input tokens.
        step: the optimizer step they were taken at (the trial's last).
        run_id: the trial's run.
        label: the trial's run name.
    """

    weights: np.ndarray
    tokens: list[list[str]]
    step: int
    run_id: str
    label: str


def load_attention(runs: pa.Table, run: str | None = None) -> AttentionMaps:
    """The attention maps a trial logged.

    Args:
        runs: the ``runs`` table of ``tunelab.analysis.load`` (it knows the tracking URI).
        run: a run id or trial id; None takes the trial with the best ``val_acc`` among those that
            logged maps.

    Raises:
        AnalysisError: the trial (or, with ``run`` None, every trial) has no attention maps.
    """
    ids = runs.column("run_id").to_pylist()
    names = dict(zip(ids, runs.column("run_name").to_pylist()))
    if run is not None:
        by_trial = dict(zip(runs.column("trial_id").to_pylist(), ids))
        candidates = [by_trial.get(run, run)]
    else:
        score = runs.column("best_val_acc").to_pylist() if "best_val_acc" in runs.column_names else [0] * len(ids)
        candidates = [r for _, r in sorted(zip([-(s or 0) for s in score], ids), key=lambda t: t[0])]
    for run_id in candidates:
        text = analysis.read_artifact(runs, run_id, ATTENTION_ARTIFACT)
        if text is None:
            continue
        maps = json.loads(text)
        return AttentionMaps(np.asarray(maps["weights"], dtype=float), maps["tokens"], int(maps["step"]),
                             run_id, names.get(run_id) or run_id)
    which = f"trial {run!r}" if run is not None else "no trial of this search"
    raise AnalysisError(f"{which} logged attention maps ({ATTENTION_ARTIFACT}: GPT trials of the arith trainable "
                        "that ran to their end)")


def plot_attention(maps: AttentionMaps, sample: int = 0) -> Plot:
    """One sample's attention weights: a grid of layers (rows) × heads (columns), tokens on the axes.

    Args:
        maps: from ``load_attention``.
        sample: which of the samples (0 or 1).
    """
    weights = maps.weights[sample]
    layers, heads, size, _ = weights.shape
    tokens = maps.tokens[sample]
    fig, axes = analysis.new_figure(ncols=heads, nrows=layers, width=2.4, height=2.4)
    image = None
    for i in range(layers):
        for j in range(heads):
            ax = axes[i * heads + j]
            image = ax.imshow(weights[i, j], vmin=0.0, vmax=1.0, cmap="viridis")
            ax.set_xticks(range(size), tokens, fontsize=7, rotation=90)
            ax.set_yticks(range(size), tokens, fontsize=7)
            ax.set_title(f"layer {i + 1}, head {j + 1}", fontsize=8)
            ax.set_xlabel("attended token (key)", fontsize=7)
            ax.set_ylabel("attending token (query)", fontsize=7)
    fig.colorbar(image, ax=axes, label="attention weight", shrink=0.8)
    text = " ".join(tokens)
    caption = (f"Attention weights of {maps.label} on the training equation “{text}” at step {maps.step}: "
               f"one map per layer (rows) and head (columns); row i is how position i spreads its attention "
               "over positions up to its own.")
    return Plot(fig, caption, f"attention_{sample}", data=weights)
