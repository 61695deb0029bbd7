"""What tunelab adds to Ray Tune's own cost: the same search through ``search.run`` and through raw Tune.

    python bench/overhead.py                      # 50 trials each, 2 interleaved rounds
    python bench/overhead.py --trials 200 --rounds 1

Both sides run ``spaces/synthetic_load.yaml``'s search (the synthetic trainable: 4 reports per trial
and no model, so what is timed is the search machinery) on one local Ray with the same trials,
sampler (TPE, seed 0, multivariate, constant liar), scheduler (ASHA) and concurrency:

- ``tunelab``: ``search.run``: our ask/tell searcher over a SQLite study, the MLflow callback (one
  parent, a child run per trial, SQLite store), checkpoint and failure configs, the end summary;
- ``raw``: ``Tuner`` with Ray's ``OptunaSearch`` (in-memory study) behind a ``ConcurrencyLimiter``,
  ``ASHAScheduler``, no MLflow.

Both print Ray's default progress output.

Rounds alternate the two so that machine noise hits both; the table gives each round's wall time
and the ratio of the medians (target: at most 1.10).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

import search
import spaces
from search._samplers import make_sampler
from trainables import synthetic

FILE = spaces.CATALOGUE / "synthetic_load.yaml"


def run_tunelab(s: spaces.Search) -> float:
    start = time.perf_counter()
    outcome = search.run(s)
    elapsed = time.perf_counter() - start
    assert len(outcome.trials) == s.spec.budget.trials
    return elapsed


def run_raw(s: spaces.Search, storage: Path) -> float:
    spec, base = s.spec, dict(s.base_config)

    def trainable(config):
        synthetic.train({**base, **config})

    sched = spec.scheduler
    searcher = OptunaSearch(space=s.space, metric=spec.metric, mode=spec.mode, sampler=make_sampler(s))
    tuner = tune.Tuner(
        tune.with_resources(trainable, s.resources),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.budget.max_concurrent),
            scheduler=ASHAScheduler(time_attr=sched.time_attr, max_t=sched.max_t,
                                    grace_period=sched.grace_period, reduction_factor=sched.reduction_factor),
            num_samples=spec.budget.trials, metric=spec.metric, mode=spec.mode,
        ),
        run_config=tune.RunConfig(name=spec.name, storage_path=str(storage),
                                  failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures)),
    )
    start = time.perf_counter()
    results = tuner.fit()
    elapsed = time.perf_counter() - start
    assert len(results) == spec.budget.trials
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-concurrent", type=int, default=2)
    args = p.parse_args()

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rows: list[tuple[int, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            overrides = [f"budget.trials={args.trials}", f"budget.max_concurrent={args.max_concurrent}"]
            s = spaces.load(FILE, [*overrides, f"storage={tmp}/tunelab{r}"])
            if r % 2 == 0:  # alternate which side goes first
                t_ours, t_raw = run_tunelab(s), run_raw(s, Path(tmp) / f"raw{r}")
            else:
                t_raw, t_ours = run_raw(s, Path(tmp) / f"raw{r}"), run_tunelab(s)
            rows.append((r, t_ours, t_raw))
    ray.shutdown()

    print(f"\n{args.trials} synthetic trials x 4 reports, TPE + ASHA, max_concurrent {args.max_concurrent}, "
          f"ray {ray.__version__}, {os.cpu_count()} CPUs")
    print("| round | tunelab s | raw Ray Tune s | ratio |")
    print("|---:|---:|---:|---:|")
    for r, ours, raw in rows:
        print(f"| {r} | {ours:.1f} | {raw:.1f} | {ours / raw:.3f} |")
    med_ours, med_raw = statistics.median(x[1] for x in rows), statistics.median(x[2] for x in rows)
    print(f"| median | {med_ours:.1f} | {med_raw:.1f} | {med_ours / med_raw:.3f} |")


if __name__ == "__main__":
    main()
