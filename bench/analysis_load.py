"""How long ``analysis.load`` takes on a big search: bulk SQL against one request per run and metric,
on SQLite and on PostgreSQL.

    python bench/analysis_load.py                 # 200 trials x 12 metrics x 50 steps; a few minutes
    python bench/analysis_load.py --runs 50       # quicker
    python bench/analysis_load.py --store sqlite  # without PostgreSQL

Builds a store in the layout ``search`` writes (one parent run; ``--runs`` child runs, each with
``--metrics`` metrics logged at ``--steps`` steps in one ``MlflowClient.log_batch``) in a SQLite
file and in a throwaway PostgreSQL server (Debian's, started from a temporary folder on a free port of
127.0.0.1 by ``tests/_servers.py``, as the tests do), then times ``analysis.load`` on each with its two
history paths:

- ``sql``: the ``metrics`` table read directly, one ``run_uuid IN (...)`` query per 500 runs (what
  ``load`` does for ``sqlite://``, ``postgresql://`` and other database URIs);
- ``client``: ``MlflowClient.get_metric_history`` per run and metric, eight threads (what it does for
  an ``http://`` tracking server, where it is the only way).

Both include listing the runs (``search_runs``) and building the Arrow tables; MLflow's import and store
start-up are paid once before timing. The two must give identical tables.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path


from tunelab import analysis
from tunelab.trainables import metrics, tags

KEYS = (
    metrics.TRAIN_LOSS, metrics.VAL_LOSS, metrics.TRAIN_PPL, metrics.VAL_PPL, metrics.BEST_VAL_PPL,
    metrics.EPOCH, metrics.STEP, metrics.TOKENS, metrics.FLOPS, metrics.LR, metrics.WALL_S, metrics.MEM_PEAK_MB,
    metrics.TRAIN_ACC, metrics.VAL_ACC, metrics.TOKENS_PER_S, metrics.PARAM_NORM,
)


def build_store(uri: str, root: Path, n_runs: int, n_metrics: int, n_steps: int, experiment: str) -> float:
    """Write the store at ``uri`` (artifacts under ``root``); returns the seconds it took."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    t0 = time.perf_counter()
    exp = client.create_experiment(experiment, artifact_location=(root / "artifacts").resolve().as_uri())
    parent = client.create_run(exp, run_name=f"{experiment} (search)", tags={tags.TRAINABLE: "rnn"}).info.run_id
    client.log_batch(parent, params=[Param("metric", "val_ppl"), Param("mode", "min")])
    keys = [KEYS[i] if i < len(KEYS) else f"extra_{i}" for i in range(n_metrics)]
    now = int(time.time() * 1000)
    for i in range(n_runs):
        lr, dropout = 10 ** (-1 + 2 * ((i * 37) % 100) / 100), ((i * 13) % 50) / 100
        run = client.create_run(exp, run_name=f"t{i:03d} lr={lr:.3g} dropout={dropout}", tags={
            tags.PARENT: parent, tags.TRIAL_ID: f"{i:08x}", tags.STATUS: metrics.COMPLETED})
        values = [
            Metric(k, 5.0 + 2.0 / s + 0.01 * j + 0.1 * math.log(lr) ** 2, now + 1000 * s, s)
            for s in range(1, n_steps + 1) for j, k in enumerate(keys)
        ]
        params = [Param("lr", str(lr)), Param("dropout", str(dropout)), Param("cell", "lstm" if i % 2 else "gru"),
                  Param("seed", str(i % 3)), Param("hidden_size", "200"), Param("epochs", str(n_steps))]
        for j in range(0, len(values), 1000):  # MLflow takes at most 1000 metrics per batch
            client.log_batch(run.info.run_id, metrics=values[j:j + 1000], params=params if j == 0 else [])
        client.set_terminated(run.info.run_id, "FINISHED")
    client.set_terminated(parent, "FINISHED")
    return time.perf_counter() - t0


def time_load(experiment: str, uri: str, method: str, repeat: int):
    times, tables = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        tables = analysis.load(experiment, uri, method=method)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), tables


def bench_store(name: str, uri: str, root: Path, args) -> dict:
    experiment = "bench-analysis-load"
    build_s = build_store(uri, root, args.runs, args.metrics, args.steps, experiment)
    analysis.load(experiment, uri, method="sql")  # warm: imports, store start-up, page cache
    sql_s, (runs_sql, hist_sql) = time_load(experiment, uri, "sql", args.repeat)
    client_s, (runs_cl, hist_cl) = time_load(experiment, uri, "client", 1)
    same = runs_sql.equals(runs_cl, check_metadata=True) and hist_sql.equals(hist_cl)
    return {"store": name, "build_s": build_s, "sql_s": sql_s, "client_s": client_s, "same": same,
            "rows": hist_sql.num_rows, "shape": (runs_sql.num_rows, runs_sql.num_columns)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--metrics", type=int, default=12)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeat", type=int, default=3, help="timings per method (median); client runs once")
    p.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    args = p.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.store in ("sqlite", "both"):
            results.append(bench_store("SQLite", f"sqlite:///{Path(tmp) / 'mlflow.db'}", Path(tmp), args))
        if args.store in ("postgresql", "both"):
            from tests._servers import Postgres

            server = Postgres().start()
            try:
                uri = server.create_database("bench")
                results.append(bench_store("PostgreSQL", uri, Path(tmp), args))
            finally:
                server.stop()
    rows = results[0]["rows"]
    print(f"analysis.load: {args.runs} runs x {args.metrics} metrics x {args.steps} steps = {rows:,} history rows "
          f"(stores built with log_batch: " + ", ".join(f"{r['store']} {r['build_s']:.1f} s" for r in results) + ")")
    print()
    print("| store | history path | requests | load (s) | rows/s | speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    n_queries = math.ceil(args.runs / 500)
    for r in results:
        print(f"| {r['store']} | sql (metrics table, run_uuid IN ...) | {n_queries} | {r['sql_s']:.2f} | "
              f"{rows / r['sql_s']:,.0f} | {r['client_s'] / r['sql_s']:.1f}x |")
        print(f"| {r['store']} | client (get_metric_history per run and key, 8 threads) | "
              f"{args.runs * args.metrics:,} | {r['client_s']:.2f} | {rows / r['client_s']:,.0f} | 1.0x |")
    print()
    for r in results:
        print(f"{r['store']}: sql and client tables identical: {r['same']}; runs table {r['shape'][0]} rows x "
              f"{r['shape'][1]} columns")


if __name__ == "__main__":
    main()
