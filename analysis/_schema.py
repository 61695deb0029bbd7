"""What the columns of the ``runs`` table mean, read back from the table itself.

``load`` stores the search's description (experiment, parent run, its tags and metrics, which columns
are trial parameters) as JSON in the Arrow schema metadata under ``tunelab``; Parquet keeps it, so a
table read back from disk is as self-describing as a freshly loaded one.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from tunelab.trainables import metrics

META_KEY = b"tunelab"
SEED = "seed"
# The column naming each trial's search in a table of several searches (``load`` given several names).
SEARCH = "search"
# Fixed columns of the runs table, in order; metric columns follow as last_<key> and best_<key>.
RUN_COLUMNS = (
    "run_id", "trial_id", "run_name", "status", "run_status", "parent_run_id",
    "start_time", "end_time", "duration_s", "iterations", "lineage",
)


def metric_mode(key: str, objective: str | None = None, mode: str | None = None) -> str | None:
    """Which way a metric improves: "min" for losses and perplexities, "max" for accuracies.

    Args:
        key: a metric name such as ``val_ppl``.
        objective, mode: the search's objective and its mode: a metric outside tunelab's vocabulary
            (a lab's own) has a direction when it is the objective.

    Returns:
        "min", "max", or None for counters and other metrics that have no better direction
        (``epoch``, ``flops``, ``wall_s``, ``mem_peak_mb`` ...); those get no ``best_`` column.
    """
    return metrics.direction(key) or (mode if key == objective else None)


def search_info(runs: pa.Table) -> dict[str, Any]:
    """The search a runs table came from.

    Args:
        runs: the ``runs`` table of ``load`` (or ``read_parquet``).

    Returns:
        A dict with ``experiment``, ``experiment_id``, ``tracking_uri``, ``parent_run_id``,
        ``parent_run_name``, ``parent_tags``, ``parent_metrics``, ``parent_params``, ``params`` (the
        parameter columns), ``metric`` and ``mode`` (what the search optimised; val_ppl/min if the parent
        does not say).
    """
    raw = (runs.schema.metadata or {}).get(META_KEY)
    info = json.loads(raw) if raw else {}
    info.setdefault("params", [])
    info.setdefault("parent_tags", {})
    info.setdefault("parent_metrics", {})
    info.setdefault("parent_params", {})
    params = info["parent_params"]
    info.setdefault("metric", params.get("metric", metrics.VAL_PPL))
    info.setdefault("mode", params.get("mode", metric_mode(info["metric"]) or "min"))
    return info


def param_columns(runs: pa.Table) -> list[str]:
    """The columns of ``runs`` that hold trial parameters (the trial config), in table order.

    Args:
        runs: the ``runs`` table of ``load``.
    """
    names = set(search_info(runs)["params"])
    return [n for n in runs.column_names if n in names]


def varied_params(runs: pa.Table, exclude: tuple[str, ...] = ()) -> list[str]:
    """The parameter columns that take more than one value across the trials (nulls count as a value).

    Args:
        runs: the ``runs`` table of ``load``.
        exclude: parameter names to leave out, e.g. ``("seed",)``.
    """
    out = []
    for name in param_columns(runs):
        if name in exclude:
            continue
        if len(set(runs.column(name).to_pylist())) > 1:
            out.append(name)
    return out


def metric_keys(runs: pa.Table) -> list[str]:
    """Every metric key that has a ``last_<key>`` column in ``runs``.

    Args:
        runs: the ``runs`` table of ``load``.
    """
    params = set(search_info(runs)["params"])
    return [n[len("last_"):] for n in runs.column_names if n.startswith("last_") and n not in params]
