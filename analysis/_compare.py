"""Seed report 000's comparison of architectures: its tables 1-3 and figures 1-8, over one search or
several (``load`` given several names: the LSTM half and the GPT half of the report).

A trial is one of the report's experiments: its ID is the trial's ``label`` (``configs:`` in a search
file names each configuration), its architecture follows from the trainable (``rnn``: the ``cell``,
LSTM or GRU; ``gpt``: GPT-1 with post-norm blocks, GPT with pre-norm), its layers from ``num_layers``
or ``n_layer``, and its optimizer from ``optimizer``. Tables 1 and 2 give each experiment's best
validation perplexity with the training perplexity of the same epoch (sorted by ID, then by
architecture, layers and optimizer); table 3 its steady-state memory (``mem_peak_mb`` after the first
epoch: the CUDA allocator's peak on a GPU, the process's peak resident set on a CPU). The figures pair
epochs (odd) with wall-clock time (even), grouped as the report groups them: the 1-layer LSTMs (1, 2),
the 1-layer GPT-1s (3, 4), the deeper ones of both (5, 6), and the best of each architecture and depth
(7, 8).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from tunelab.analysis._curves import plot_curves
from tunelab.analysis._errors import AnalysisError
from tunelab.analysis._plot import Plot, figure_block
from tunelab.analysis._schema import SEARCH, search_info
from tunelab.analysis._tables import trial_table
from tunelab.trainables import metrics, tags

LABEL = "label"
# The report's orders: architectures as its table 2 lists them, optimizers as its experiment IDs do.
ARCHITECTURES = ("LSTM", "GRU", "GPT-1", "GPT")
OPTIMIZERS = ("adam", "adamw", "sgd", "momentum")
_OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "momentum": "Momentum"}
COLUMNS = ["Exp. ID", "Architecture", "Layers", "Optimizer", "Validation PPL", "Training PPL"]


def applies(runs: pa.Table) -> bool:
    """Whether the runs are experiments of this comparison: trials with a ``label`` and an optimizer."""
    return LABEL in runs.column_names and "optimizer" in runs.column_names


def experiments(runs: pa.Table, history: pa.Table) -> pd.DataFrame:
    """One row per trial: ``run_id``, ``trial_id``, the report's columns (``COLUMNS``), ``Memory (MB)``,
    ``measured over`` (the epochs after the first, or the first alone for a trial of one epoch),
    ``device`` (cuda where the search gave its trials a GPU, else cpu) and ``wall_s`` (the trial's
    training time).

    Args:
        runs, history: the tables of ``load`` (one search or several).
    """
    table = trial_table(runs, history, metrics.VAL_PPL, "min")
    trainables, gpus = _per_run(runs, tags.TRAINABLE, "gpu")
    cols = runs.to_pandas()
    memory = _steady_memory(history)
    last_wall = _last(history, metrics.WALL_S)
    rows = []
    for i, run in cols.iterrows():
        run_id = run["run_id"]
        label = run.get(LABEL)
        rows.append({
            "run_id": run_id, "trial_id": run["trial_id"],
            "Exp. ID": _experiment_id(label, run["trial_id"]),
            "Architecture": _architecture(trainables[i], run),
            "Layers": _layers(run),
            "Optimizer": _OPTIMIZER_NAMES.get(run.get("optimizer"), run.get("optimizer")),
            "Validation PPL": table.at[i, f"best_{metrics.VAL_PPL}"],
            "Training PPL": table.at[i, f"{metrics.TRAIN_PPL}_at_best"] if f"{metrics.TRAIN_PPL}_at_best" in table else math.nan,
            "Memory (MB)": memory.get(run_id, (math.nan, ""))[0],
            "measured over": memory.get(run_id, (math.nan, ""))[1],
            "device": "cuda" if _float(gpus[i]) > 0 else "cpu",
            "wall_s": last_wall.get(run_id, math.nan),
        })
    return pd.DataFrame(rows)


def table_by_id(exps: pd.DataFrame) -> pd.DataFrame:
    """Table 1: the experiments sorted by ID (numerically when every ID is a number)."""
    ids = exps["Exp. ID"]
    key = pd.to_numeric(ids, errors="coerce") if pd.to_numeric(ids, errors="coerce").notna().all() else ids
    return exps.assign(_k=key).sort_values("_k", kind="stable")[COLUMNS].reset_index(drop=True)


def table_by_architecture(exps: pd.DataFrame) -> pd.DataFrame:
    """Table 2: sorted by architecture (LSTM, GRU, GPT-1, GPT), layers and optimizer (Adam, AdamW, SGD,
    Momentum: the report's order)."""
    arch = exps["Architecture"].map(lambda a: ARCHITECTURES.index(a) if a in ARCHITECTURES else len(ARCHITECTURES))
    opt = exps["Optimizer"].map(lambda o: OPTIMIZERS.index(str(o).lower()) if str(o).lower() in OPTIMIZERS else len(OPTIMIZERS))
    ordered = exps.assign(_a=arch, _o=opt).sort_values(["_a", "Architecture", "Layers", "_o"], kind="stable")
    return ordered[COLUMNS].reset_index(drop=True)


def memory_table(exps: pd.DataFrame) -> pd.DataFrame:
    """Table 3: each experiment's steady-state memory (sorted by ID), where it was measured and on
    which device."""
    order = table_by_id(exps)["Exp. ID"]
    by_id = exps.set_index("Exp. ID", drop=False)
    return by_id.loc[order, ["Exp. ID", "Architecture", "Layers", "Optimizer", "Memory (MB)", "measured over",
                             "device"]].reset_index(drop=True)


def memory_caption(exps: pd.DataFrame) -> str:
    """Table 3's caption, naming what the memory is on the devices the trials ran on."""
    what = {"cuda": "the CUDA caching allocator's peak of allocated memory (torch.cuda.max_memory_allocated)",
            "cpu": "the process's peak resident set size (RSS; Linux's VmHWM), model, data and Python included"}
    devices = [d for d in ("cuda", "cpu") if d in set(exps["device"])]
    return ("Steady-state memory per experiment (seed report 000, table 3): `mem_peak_mb` after the trial's "
            "first epoch, " + "; on ".join(f"{d.upper() if d == 'cpu' else 'CUDA'}: {what[d]}" for d in devices)
            + ". A trial of one epoch has no steady state: its figure is the first epoch's peak.")


def figure_groups(exps: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """The report's four groups of curves: (what, trial ids), for figures 1-2, 3-4, 5-6 and 7-8."""
    layers = pd.to_numeric(exps["Layers"], errors="coerce")
    one, deep = layers == 1, layers > 1
    groups = [
        ("LSTM with a single layer", exps[(exps["Architecture"] == "LSTM") & one]),
        ("GPT-1 with a single layer", exps[(exps["Architecture"] == "GPT-1") & one]),
        ("LSTM or GPT-1 with more than one layer", exps[exps["Architecture"].isin(["LSTM", "GPT-1"]) & deep]),
    ]
    finite = exps[np.isfinite(exps["Validation PPL"].astype(float))]
    best = finite.loc[finite.groupby(["Architecture", "Layers"])["Validation PPL"].idxmin()] if len(finite) else finite
    groups.append(("the best of each architecture and depth", best))
    return [(what, _sorted_by_id(df)["trial_id"].tolist()) for what, df in groups]


def blocks(runs: pa.Table, history: pa.Table) -> list[tuple]:
    """The report's section: tables 1-3 and figures 1-8 (each figure, when its group is empty, a note).

    Args:
        runs, history: the tables of ``load``.
    """
    exps = experiments(runs, history)
    ppl = ("The minimum validation perplexity over the trial's epochs, and the training perplexity of that "
           "epoch (the mean over the epoch's training batches).")
    out: list[tuple] = [
        ("h", 2, "Architectures compared (seed report 000)"),
        ("table", table_by_id(exps), f"Table 1: every experiment, sorted by experiment ID. {ppl}"),
        ("table", table_by_architecture(exps), f"Table 2: sorted by architecture, layers and optimizer. {ppl}"),
        ("table", memory_table(exps), "Table 3: " + memory_caption(exps)),
    ]
    labels = {r: f"{i} {a} {l}L {o}" for r, i, a, l, o in
              exps[["run_id", "Exp. ID", "Architecture", "Layers", "Optimizer"]].itertuples(index=False)}
    number = 1
    for what, trials in figure_groups(exps):
        for x, axis in ((metrics.EPOCH, "epochs"), (metrics.WALL_S, "wall-clock time")):
            blocks_name = f"seed000_figure{number}"
            out.append(figure_block(_figure(runs, history, x, trials, labels, blocks_name,
                                            f"Figure {number}: loss and perplexity against {axis}, training "
                                            f"(dashed) and validation (solid), for {what}."),
                                    f"figure {number} ({what})"))
            number += 1
    return out


def _figure(runs, history, x, trials, labels, name, caption) -> Callable[[], Plot]:
    def make() -> Plot:
        if not trials:
            raise AnalysisError("no trial of that group")
        plot = plot_curves(runs, history, x, trials=trials, name=name, labels=labels)
        return dataclasses.replace(plot, caption=caption)
    return make


def _per_run(runs: pa.Table, tag: str, param: str) -> tuple[list, list]:
    """Per run: its search's parent tag ``tag`` and parent param ``param`` (one search or several)."""
    info = search_info(runs)
    by_search = {s["experiment"]: s for s in info.get("searches", [info])}
    names = runs.column(SEARCH).to_pylist() if SEARCH in runs.column_names else [info.get("experiment")] * runs.num_rows
    return ([by_search.get(n, info)["parent_tags"].get(tag) for n in names],
            [by_search.get(n, info)["parent_params"].get(param) for n in names])


def _architecture(trainable: str | None, run: pd.Series) -> str:
    if trainable == "rnn" or "cell" in run and not _missing(run.get("cell")):
        return str(run.get("cell") or "lstm").upper()
    if trainable == "gpt" or "n_layer" in run:
        return "GPT-1" if run.get("norm") == "post" else "GPT"
    return str(trainable)


def _layers(run: pd.Series) -> int | None:
    for name in ("num_layers", "n_layer"):
        if name in run and not _missing(run[name]):
            return int(run[name])
    return None


def _steady_memory(history: pa.Table) -> dict[str, tuple[float, str]]:
    """run_id -> (steady-state memory, over which epochs): the largest ``mem_peak_mb`` reported after
    the first epoch, else (a trial of one epoch) the last one reported."""
    df = history.select(["run_id", "key", "step", "value"]).to_pandas()
    df = df[df["key"].isin([metrics.MEM_PEAK_MB, metrics.EPOCH])]
    wide = df.pivot_table(index=["run_id", "step"], columns="key", values="value", aggfunc="last")
    out = {}
    for run_id, sub in wide.groupby(level=0):
        if metrics.MEM_PEAK_MB not in sub:
            continue
        sub = sub.dropna(subset=[metrics.MEM_PEAK_MB])
        epochs = sub[metrics.EPOCH] if metrics.EPOCH in sub else pd.Series(1.0, index=sub.index)
        steady = sub[epochs > 1]
        if len(steady):
            last = epochs.max()
            out[run_id] = (float(steady[metrics.MEM_PEAK_MB].max()), f"epochs 2-{last:g}" if last > 2 else "epoch 2")
        elif len(sub):
            out[run_id] = (float(sub[metrics.MEM_PEAK_MB].iloc[-1]), "epoch 1")
    return out


def _last(history: pa.Table, key: str) -> dict[str, float]:
    df = history.select(["run_id", "key", "step", "value"]).to_pandas()
    df = df[df["key"] == key].sort_values(["run_id", "step"])
    return df.groupby("run_id")["value"].last().to_dict()


def _sorted_by_id(df: pd.DataFrame) -> pd.DataFrame:
    key = pd.to_numeric(df["Exp. ID"], errors="coerce")
    return df.assign(_k=key.fillna(math.inf)).sort_values(["_k", "Exp. ID"], kind="stable")


def _experiment_id(label, trial_id: str) -> str:
    # Labels that all read as numbers come back typed (int64; float64 beside a search without labels).
    if _missing(label):
        return trial_id
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    return str(label)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
