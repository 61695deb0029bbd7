"""MLflow runs of one search -> two Arrow tables, ``runs`` and ``history`` (README: "Analysis").

The layout read here is the one ``search`` writes (README: "What a search records"): one parent run
per launch of a search, one child run per trial (tag ``mlflow.parentRunId``), params = the trial config
as strings, metrics = every report with step = training iteration. Nothing of ``search`` is imported:
analysis reads MLflow only.

Histories are what costs time: 200 trials × 12 metrics is 2,400 ``get_metric_history`` requests. For a
database store (``sqlite://``, ``postgresql://`` and the other SQLAlchemy URIs MLflow accepts) the
``metrics`` table is read with one query per 500 runs instead; other stores (an ``http://`` server,
with a login from ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` if it asks for one) fall back to the
client, one request per run and key, eight at a time.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa

from tunelab.analysis._errors import AnalysisError
from tunelab.analysis._schema import META_KEY, RUN_COLUMNS, SEARCH, metric_mode, search_info
from tunelab.trainables import tags

PARENT_TAG = tags.PARENT
TRIAL_ID_TAG, STATUS_TAG = tags.TRIAL_ID, tags.STATUS
DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
# MLflow's SQL store keeps +-inf as +-DBL_MAX and NaN as 0 with is_nan set; both are undone here.
_DBL_MAX = 1.7976931348623157e308
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(nan|inf|infinity)", re.IGNORECASE)
_NULLS = ("None", "")

HISTORY_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("key", pa.string()),
    ("step", pa.int64()),
    ("value", pa.float64()),
    ("timestamp", pa.timestamp("ms", tz="UTC")),
])


def load(
    experiment: str | Sequence[str],
    tracking_uri: str | None = None,
    parent_run: str | Sequence[str | None] | None = None,
    *,
    method: str = "auto",
) -> tuple[pa.Table, pa.Table]:
    """Load one search's trials (or several searches' together) from MLflow as two Arrow tables.

    ``runs`` has one row per trial (child run of the parent run), sorted by start time:

    - ``run_id``, ``trial_id``, ``run_name``, ``status`` (tunelab's: completed, stopped_early, diverged,
      oom, error), ``run_status`` (MLflow's), ``parent_run_id``, ``start_time``, ``end_time``,
      ``duration_s`` (end - start of the run), ``iterations`` (the largest step logged);
    - one column per trial parameter, named as in the config, typed: a column whose values all read as
      ``True``/``False`` is bool, all integers int64, all numbers float64, else string ("None" is null);
    - ``last_<key>`` for every metric (the value at the largest step, as MLflow's latest metric) and
      ``best_<key>`` for losses and perplexities (minimum) and accuracies (maximum) over the history.
      So ``best_val_ppl`` is the lowest val_ppl of the trial and ``last_wall_s`` its training time.

    ``history`` has one row per logged value: ``run_id``, ``key``, ``step``, ``value``, ``timestamp``,
    sorted by run, key, step and timestamp (the order of ``MlflowClient.get_metric_history``).

    The search itself (parent run id, tags, metrics such as ``n_infeasible``, params such as ``metric``)
    travels in the schema metadata of ``runs``; read it with ``search_info(runs)``.

    Several searches (a list of names, in one MLflow store) give one table of all their trials, one
    row per trial, with a ``search`` column naming each one's search; their parameters are typed over
    all of them (a parameter a search did not have is null there). They must optimise the same metric
    the same way, or the rows could not be ranked together. ``search_info`` then describes the first,
    with ``experiment`` joining the names by " + " and ``searches`` holding each one's description.

    Args:
        experiment: the MLflow experiment name (the search's name), or several.
        tracking_uri: where MLflow is; None uses MLflow's default (``MLFLOW_TRACKING_URI``).
        parent_run: the run id of one launch of the search; None takes the latest parent run (a run
            without ``mlflow.parentRunId`` that has child runs). With several searches, one per
            search (or None).
        method: how histories are fetched: "auto" (SQL for database stores, else the client), "sql"
            or "client".

    Returns:
        (runs, history).

    Raises:
        AnalysisError: no such experiment, database or parent run, a search without trial runs, or
            searches of different objectives.
    """
    from mlflow.tracking import MlflowClient

    names = [experiment] if isinstance(experiment, str) else list(experiment)
    parents = parent_run if isinstance(parent_run, (list, tuple)) else [parent_run] * len(names)
    if not names or len(parents) != len(names):
        raise ValueError("load needs one or more experiment names, and one parent run (or None) for each")
    uri = _resolve_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    searches = [_read_search(client, uri, name, parent) for name, parent in zip(names, parents)]
    objectives = {(s[0]["parent_params"].get("metric"), s[0]["parent_params"].get("mode")) for s in searches}
    if len(objectives) > 1:
        raise AnalysisError("searches of different objectives cannot share a report: " + ", ".join(
            f"{s[0]['experiment']} {s[0]['parent_params'].get('mode')}imises {s[0]['parent_params'].get('metric')}"
            for s in searches))
    children = [r for _, rs in searches for r in rs]
    run_ids = [r.info.run_id for r in children]

    if method == "auto":
        method = "sql" if _scheme(uri) in DB_SCHEMES else "client"
    if method == "sql":
        history = _history_sql(uri, run_ids)
    elif method == "client":
        history = _history_client(client, children)
    else:
        raise ValueError(f"method must be 'auto', 'sql' or 'client', not {method!r}")

    if len(searches) == 1:
        return _runs_table(children, history, searches[0][0]), history
    info = {**searches[0][0], "experiment": " + ".join(names), "searches": [s[0] for s in searches]}
    search_of = [s[0]["experiment"] for s in searches for _ in s[1]]
    runs = _runs_table(children, history, info)
    return runs.add_column(0, SEARCH, pa.array(search_of, pa.string())), history


def _read_search(client, uri: str, experiment: str, parent_run: str | None) -> tuple[dict[str, Any], list]:
    """One search's description (``search_info``'s) and its trial runs, in start order."""
    from tunelab import _mlflow

    try:
        exp = client.get_experiment_by_name(experiment)
    except Exception as exc:  # the client raises many types for "cannot reach the store"
        raise AnalysisError(f"cannot read MLflow at {uri}: {_mlflow.first_line(exc)}") from None
    if exp is None:
        raise AnalysisError(f"no MLflow experiment named {experiment!r} at {uri}")
    all_runs = _mlflow.all_runs(client, exp.experiment_id)
    parent, children = _pick_search(all_runs, experiment, parent_run)
    children.sort(key=lambda r: (r.info.start_time or 0, r.info.run_name or ""))
    info = {
        "experiment": experiment,
        "experiment_id": exp.experiment_id,
        "tracking_uri": uri,
        "parent_run_id": parent.info.run_id,
        "parent_run_name": parent.info.run_name,
        "parent_tags": {k: v for k, v in parent.data.tags.items() if not k.startswith("mlflow.")
                        or k == "mlflow.source.git.commit"},
        "parent_metrics": dict(parent.data.metrics),
        "parent_params": dict(parent.data.params),
    }
    return info, children


def read_artifact(runs: pa.Table, run_id: str, path: str) -> str | None:
    """The text of the artifact ``path`` on one trial's run, or None when the run has no such artifact.

    What a trainable leaves beside its checkpoint the driver logs on the trial's run (the arith GPT's
    attention maps, ``attention.json``): a family's report module reads it back here.

    Args:
        runs: the ``runs`` table of ``load`` (it knows the tracking URI).
        run_id: the trial's run.
        path: the artifact's path on the run (``attention.json``, ``plots/x.json``).
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=search_info(runs)["tracking_uri"])
    if not any(a.path == path for a in client.list_artifacts(run_id, posixpath.dirname(path) or None)):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, path, tmp)).read_text()


def _resolve_uri(tracking_uri: str | None) -> str:
    import mlflow

    uri = tracking_uri or mlflow.get_tracking_uri()
    if _scheme(uri) == "sqlite":
        # MlflowClient would create an empty database at a mistyped path; refuse instead.
        path = uri[len("sqlite:///"):]
        if path and path != ":memory:" and not Path(path).exists():
            raise AnalysisError(f"no MLflow database at {path} (tracking URI {uri})")
    return uri


def _scheme(uri: str) -> str:
    return urlparse(uri).scheme.split("+")[0]  # postgresql+psycopg2 -> postgresql


def _pick_search(all_runs: list, experiment: str, parent_run: str | None) -> tuple[Any, list]:
    by_id = {r.info.run_id: r for r in all_runs}
    children: dict[str, list] = defaultdict(list)
    for r in all_runs:
        pid = r.data.tags.get(PARENT_TAG)
        if pid:
            children[pid].append(r)
    if parent_run is None:
        parents = [by_id[p] for p in children if p in by_id and PARENT_TAG not in by_id[p].data.tags]
        if not parents:
            raise AnalysisError(f"experiment {experiment!r} has no search with trial runs "
                                f"(no parent run with child runs among its {len(all_runs)} runs)")
        parent = max(parents, key=lambda r: r.info.start_time or 0)
    else:
        if parent_run not in by_id:
            raise AnalysisError(f"experiment {experiment!r} has no run {parent_run!r}")
        parent = by_id[parent_run]
        if not children.get(parent_run):
            raise AnalysisError(f"run {parent_run!r} of experiment {experiment!r} has no trial runs")
    return parent, list(children[parent.info.run_id])


def _history_sql(uri: str, run_ids: Sequence[str]) -> pa.Table:
    """Every metric row of ``run_ids``, straight from the SQL store's ``metrics`` table."""
    from tunelab import _private

    return _history_table((run, key, step, _unclamp(value), ts)
                          for run, key, step, value, ts in _private.metric_rows(uri, run_ids))


def _history_client(client, runs: Sequence[Any]) -> pa.Table:
    """Every metric row of ``runs`` through ``MlflowClient.get_metric_history``: one request per key."""
    jobs = [(r.info.run_id, key) for r in runs for key in sorted(r.data.metrics)]

    def fetch(job):
        run_id, key = job
        return [(run_id, key, m.step, _unclamp(m.value), m.timestamp) for m in client.get_metric_history(run_id, key)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        return _history_table(row for rows in pool.map(fetch, jobs) for row in rows)


def _unclamp(value: float) -> float:
    if abs(value) >= _DBL_MAX:
        return math.copysign(math.inf, value)
    return value


def _history_table(rows: Iterable[tuple]) -> pa.Table:
    # Same order as get_metric_history within a key: step, then timestamp, then value.
    rows = sorted(rows, key=lambda r: (r[0], r[1], r[2], r[4], r[3]))
    cols = list(zip(*rows)) if rows else [[] for _ in HISTORY_SCHEMA]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, HISTORY_SCHEMA)],
                                schema=HISTORY_SCHEMA)


def _runs_table(children: Sequence[Any], history: pa.Table, info: dict[str, Any]) -> pa.Table:
    objective = (info["parent_params"].get("metric"), info["parent_params"].get("mode"))
    last, best, iterations = _summaries(history, objective)
    keys = sorted({k for (_, k) in last})
    param_names = sorted({k for r in children for k in r.data.params})
    reserved = set(RUN_COLUMNS) | {f"last_{k}" for k in keys} | {f"best_{k}" for k in keys}
    # A config key that clashes with a fixed or metric column gets a "param_" prefix.
    columns = {n: (f"param_{n}" if n in reserved else n) for n in param_names}

    data: dict[str, pa.Array] = {}
    ids = [r.info.run_id for r in children]
    data["run_id"] = pa.array(ids, pa.string())
    data["trial_id"] = pa.array([r.data.tags.get(TRIAL_ID_TAG) for r in children], pa.string())
    data["run_name"] = pa.array([r.info.run_name for r in children], pa.string())
    data["status"] = pa.array([r.data.tags.get(STATUS_TAG) for r in children], pa.string())
    data["run_status"] = pa.array([r.info.status for r in children], pa.string())
    data["parent_run_id"] = pa.array([r.data.tags.get(PARENT_TAG) for r in children], pa.string())
    starts = [r.info.start_time for r in children]
    ends = [r.info.end_time for r in children]
    data["start_time"] = pa.array(starts, pa.timestamp("ms", tz="UTC"))
    data["end_time"] = pa.array(ends, pa.timestamp("ms", tz="UTC"))
    data["duration_s"] = pa.array([(e - s) / 1000 if s and e else None for s, e in zip(starts, ends)],
                                  pa.float64())
    data["iterations"] = pa.array([iterations.get(i) for i in ids], pa.int64())
    # a PBT member's exploits (JSON; ``tunelab._lineage``), None for every other trial
    data["lineage"] = pa.array([r.data.tags.get(tags.LINEAGE) for r in children], pa.string())
    for name in param_names:
        data[columns[name]] = typed_column([r.data.params.get(name) for r in children])
    for key in keys:
        data[f"last_{key}"] = pa.array([last.get((i, key)) for i in ids], pa.float64())
    for key in keys:
        if metric_mode(key, *objective):
            data[f"best_{key}"] = pa.array([best.get((i, key)) for i in ids], pa.float64())
    meta = {**info, "params": [columns[n] for n in param_names]}
    return pa.table(data).replace_schema_metadata({META_KEY: json.dumps(meta, default=str).encode()})


def _summaries(history: pa.Table, objective: tuple[str | None, str | None]) -> tuple[dict, dict, dict]:
    """Per (run, key): the value at the largest step and the best finite value; per run: largest step.
    ``objective``: the search's metric and mode (the direction of a metric outside the vocabulary)."""
    last: dict[tuple[str, str], float] = {}
    best: dict[tuple[str, str], float] = {}
    iterations: dict[str, int] = {}
    cols = [history.column(n).to_pylist() for n in ("run_id", "key", "step", "value")]
    for run_id, key, step, value in zip(*cols):  # sorted by run, key, step, timestamp: the last wins
        last[(run_id, key)] = value
        iterations[run_id] = max(step, iterations.get(run_id, step))
        mode = metric_mode(key, *objective)
        if mode and math.isfinite(value):
            old = best.get((run_id, key))
            if old is None or (value < old if mode == "min" else value > old):
                best[(run_id, key)] = value
    return last, best, iterations


def typed_column(values: Sequence[str | None]) -> pa.Array:
    """MLflow param strings -> one Arrow array of a single type for the whole column.

    bool when every value is True/False, int64 when every value is an integer, float64 when every value
    is a number (integers and floats mixed), else string. "None", "" and missing values are null.

    Args:
        values: one string (or None) per trial.
    """
    vals = [None if v is None or v in _NULLS else v for v in values]
    present = [v for v in vals if v is not None]
    if present and all(v.lower() in ("true", "false") for v in present):
        return pa.array([None if v is None else v.lower() == "true" for v in vals], pa.bool_())
    if present and all(_INT.fullmatch(v) for v in present):
        return pa.array([None if v is None else int(v) for v in vals], pa.int64())
    if present and all(_FLOAT.fullmatch(v) for v in present):
        return pa.array([None if v is None else float(v) for v in vals], pa.float64())
    return pa.array(vals, pa.string())
