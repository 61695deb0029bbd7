"""The tables of a report, as pandas DataFrames built from the two tables of ``load``.

- ``trial_table``: seed report 000's table (best validation PPL with the training PPL of that epoch),
  extended with the epoch and wall-clock at the best, peak memory (000's table 3) and parameter count.
- ``seed_table``: mean ± std over seeds of repeated configs (seed report 002).
- ``status_counts``: how the trials ended, infeasible configs included.
- ``top_k``: the best configs.

``to_markdown`` and ``to_html`` render any of them; ``format_mean_std`` turns the ``<col>_mean`` /
``<col>_std`` pairs of ``seed_table`` into "mean ± std" text first.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tunelab.analysis._schema import SEED, search_info, varied_params
from tunelab.trainables import metrics

_AT_BEST = (metrics.EPOCH, metrics.WALL_S)


def companion_metric(metric: str) -> str | None:
    """The training counterpart of a validation metric: ``val_ppl`` -> ``train_ppl``.

    Args:
        metric: a metric name.
    """
    if metric.startswith("val_"):
        return "train_" + metric[len("val_"):]
    return None


def _metric_and_mode(runs: pa.Table, metric: str | None, mode: str | None) -> tuple[str, str]:
    info = search_info(runs)
    metric = metric or info["metric"]
    if mode is None:
        mode = info["mode"] if metric == info["metric"] else ("max" if metric.endswith("acc") else "min")
    return metric, mode


def _wide(history: pa.Table, keys: Sequence[str]) -> pd.DataFrame:
    """History of ``keys`` as one row per (run_id, step), one column per key (last value per step)."""
    df = history.select(["run_id", "key", "step", "value"]).to_pandas()
    df = df[df["key"].isin(list(keys))]
    wide = df.pivot_table(index=["run_id", "step"], columns="key", values="value", aggfunc="last")
    return wide.reindex(columns=list(keys))


def trial_table(
    runs: pa.Table,
    history: pa.Table,
    metric: str | None = None,
    mode: str | None = None,
    *,
    sort: bool = False,
    at_best: Sequence[str] = _AT_BEST,
) -> pd.DataFrame:
    """One row per trial: its varied parameters and its best epoch (seed report 000, table 1).

    Columns: ``trial_id``, ``status``, the varied parameters, ``best_<metric>`` (best value over the
    trial's reports), ``<companion>_at_best`` (e.g. ``train_ppl`` at that report), ``<key>_at_best``
    for each of ``at_best`` (``epoch_at_best``, ``wall_s_at_best``), ``peak_mem_mb`` (largest
    ``mem_peak_mb`` of the trial; seed 000's table 3) and ``n_params`` (the ``params`` metric). A trial
    with no finite value of the metric gets nulls.

    Args:
        runs, history: the tables of ``load``.
        metric: the metric to rank by; None is the search's metric.
        mode: "min" or "max"; None is the search's mode (or min for losses/ppl, max for accuracies).
        sort: order by the best value instead of by start time.
        at_best: the metrics shown at the best report besides the companion (seed 001's table adds
            the losses: ``(train_loss, val_loss, epoch, wall_s)``).
    """
    metric, mode = _metric_and_mode(runs, metric, mode)
    companion = companion_metric(metric)
    at_best = [k for k in at_best if k not in (metric, companion)]
    keys = [metric, *([companion] if companion else []), *at_best, metrics.MEM_PEAK_MB, metrics.PARAMS]
    wide = _wide(history, keys)
    varied = varied_params(runs)
    base = runs.select(["run_id", "trial_id", "status", *varied]).to_pandas()
    rows = []
    for run_id in base["run_id"]:
        row: dict[str, Any] = {}
        sub = wide.loc[run_id] if run_id in wide.index.get_level_values(0) else wide.iloc[0:0]
        values = sub[metric][np.isfinite(sub[metric])]
        best_step = None
        if len(values):
            best_step = values.idxmin() if mode == "min" else values.idxmax()
        row[f"best_{metric}"] = sub.at[best_step, metric] if best_step is not None else math.nan
        if companion:
            row[f"{companion}_at_best"] = sub.at[best_step, companion] if best_step is not None else math.nan
        for key in at_best:
            row[f"{key}_at_best"] = sub.at[best_step, key] if best_step is not None else math.nan
        row["peak_mem_mb"] = sub[metrics.MEM_PEAK_MB].max() if len(sub) else math.nan
        params = sub[metrics.PARAMS].dropna()
        row["n_params"] = params.iloc[-1] if len(params) else math.nan
        rows.append(row)
    out = pd.concat([base.drop(columns="run_id"), pd.DataFrame(rows, index=base.index)], axis=1)
    if sort:
        out = out.sort_values(f"best_{metric}", ascending=(mode == "min"), na_position="last", kind="stable")
    return out.reset_index(drop=True)


def seed_table(
    runs: pa.Table,
    history: pa.Table,
    metric: str | None = None,
    mode: str | None = None,
    *,
    seed: str = SEED,
) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each repeated config (seed report 002).

    Trials are grouped by every varied parameter except ``seed``; each value column of
    ``trial_table`` gets ``<col>_mean`` and ``<col>_std`` (sample std, ddof=1; null for one seed).
    ``n`` counts the trials of a group. Groups are ordered by the mean of the best metric.

    Args:
        runs, history: the tables of ``load``.
        metric, mode: as for ``trial_table``.
        seed: the parameter that tells repeats apart.
    """
    metric, mode = _metric_and_mode(runs, metric, mode)
    table = trial_table(runs, history, metric, mode)
    groups = [p for p in varied_params(runs) if p != seed]
    values = [c for c in table.columns if c.endswith("_at_best") or c in (f"best_{metric}", "peak_mem_mb")]
    if groups:
        grouped = table.groupby(groups, dropna=False, sort=False)
    else:
        grouped = table.assign(_all=0).groupby("_all", sort=False)
    agg = grouped[values].agg(["mean", "std"])
    agg.columns = [f"{c}_{stat}" for c, stat in agg.columns]
    agg.insert(0, "n", grouped.size())
    out = agg.reset_index()
    if not groups:
        out = out.drop(columns="_all")
    out = out.sort_values(f"best_{metric}_mean", ascending=(mode == "min"), na_position="last", kind="stable")
    return out.reset_index(drop=True)


def status_counts(runs: pa.Table) -> pd.DataFrame:
    """How many trials ended in each status, infeasible configs (never run) included.

    Statuses: completed, stopped_early, diverged, oom, infeasible, error. The infeasible count comes from
    the parent run's ``n_infeasible`` metric, since infeasible configs have no child run.

    Args:
        runs: the ``runs`` table of ``load``.
    """
    seen = pd.Series(runs.column("status").to_pylist(), dtype="object").value_counts()
    infeasible = search_info(runs)["parent_metrics"].get(f"n_{metrics.INFEASIBLE}", 0)
    rows = []
    ended = [s for s in metrics.STATUSES if s != metrics.INTERRUPTED]  # interrupted: only when there are some
    for status in ended:
        count = int(infeasible) if status == metrics.INFEASIBLE else int(seen.get(status, 0))
        rows.append({"status": status, "count": count})
    other = sorted(set(seen.index) - set(ended), key=str)  # "interrupted", or "running" of a live search
    rows += [{"status": str(s), "count": int(seen[s])} for s in other]
    return pd.DataFrame(rows)


def top_k(
    runs: pa.Table,
    history: pa.Table,
    k: int = 5,
    metric: str | None = None,
    mode: str | None = None,
) -> pd.DataFrame:
    """The ``k`` best trials by their best metric, with a ``rank`` column (1 = best).

    Args:
        runs, history: the tables of ``load``.
        k: how many.
        metric, mode: as for ``trial_table``.
    """
    table = trial_table(runs, history, metric, mode, sort=True).head(k)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def format_mean_std(table: pd.DataFrame, fmt: str = ".4g") -> pd.DataFrame:
    """Merge each ``<col>_mean`` / ``<col>_std`` pair into one text column ``<col>``: "mean ± std".

    Args:
        table: e.g. the output of ``seed_table``.
        fmt: format spec for both numbers.
    """
    out = table.copy()
    for col in [c for c in table.columns if c.endswith("_mean")]:
        name = col[: -len("_mean")]
        std = f"{name}_std"
        if std not in table.columns:
            continue
        text = [
            "" if pd.isna(m) else (format(m, fmt) if pd.isna(s) else f"{m:{fmt}} ± {s:{fmt}}")
            for m, s in zip(table[col], table[std])
        ]
        pos = out.columns.get_loc(col)
        out = out.drop(columns=[col, std])
        out.insert(pos, name, text)
    return out


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e7:
            return str(int(value))
        return format(value, fmt)
    if hasattr(value, "item"):  # numpy scalars
        return _cell(value.item(), fmt)
    return str(value)


def to_markdown(table: pd.DataFrame, fmt: str = ".4g") -> str:
    """A DataFrame as a GitHub Markdown table (numbers right-aligned, floats to 4 significant digits).

    Args:
        table: any DataFrame (its index is left out).
        fmt: format spec for non-integral floats.
    """
    cols = [str(c) for c in table.columns]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
               for c in table.columns]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in cols) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in table.itertuples(index=False):
        cells = [_cell(v, fmt).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_html(table: pd.DataFrame, fmt: str = ".4g") -> str:
    """A DataFrame as a plain HTML ``<table>`` (same cell formatting as ``to_markdown``).

    Args:
        table: any DataFrame (its index is left out).
        fmt: format spec for non-integral floats.
    """
    numeric = [pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
               for c in table.columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = []
    for row in table.itertuples(index=False):
        cells = "".join(
            f'<td class="num">{html.escape(_cell(v, fmt))}</td>' if n else f"<td>{html.escape(_cell(v, fmt))}</td>"
            for v, n in zip(row, numeric)
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(body) + "\n</tbody>\n</table>"
