"""What a trial costs the search machinery: seconds per trial of tunelab and of raw Ray Tune, side by side;
and what a whole one-trial search costs from the shell (``--startup``).

    python bench/overhead.py                          # sizes 8 and 32 trials, 2 interleaved rounds
    python bench/overhead.py --sizes 10 50 --rounds 3 --modes fifo
    python bench/overhead.py --startup --rounds 5     # one-trial searches, whole processes

``--startup`` times whole processes, as a user meets them: ``tunelab run synthetic_load --set
budget.trials=1`` into a results folder that exists already (its MLflow database made by an untimed
first search), against a Python process that runs the same one synthetic trial with raw Ray Tune
(``ray.init``, a ``Tuner`` of one trial, the fit, the exit). Rounds alternate which goes first; the
table gives the median and the fastest of each, and their ratio.

Every search runs ``spaces/synthetic_load.yaml``'s trainable (the synthetic one: 4 reports per trial,
no model, microseconds of work), so what is timed is the search machinery. The per-trial figure is
the slope of a search's wall time against its number of trials, ``(T(n2) - T(n1)) / (n2 - n1)`` with
each T the median over the rounds: what a search's start-up and end cost (the Tuner, its first
worker, the MLflow parent run, the summary) drops out. Ray itself is started once, and each side runs
one untimed 2-trial search, before any timed search.

Two modes, each run by both sides with the same trials, sampler (seed 0) and concurrency (2):

- ``fifo``: random sampling, FIFO scheduler (every trial runs its 4 reports);
- ``tpe+asha``: TPE (multivariate, constant liar) and ASHA (grace 1, reduction 2, max_t 4).

The sides:

- ``tunelab``: ``search.run`` as ``tunelab run`` does it: our ask/tell searcher over a SQLite study,
  the MLflow callback (one parent, a child run per trial, SQLite store), the live view (its output
  goes to the search folder's ``ray.log``, as ``tunelab run``'s would with no terminal), checkpoint
  and failure configs, the end summary;
- ``raw``: a plain ``Tuner`` with Ray's ``OptunaSearch`` (in-memory study, the same Optuna sampler)
  behind a ``ConcurrencyLimiter``, the same scheduler, no MLflow, Ray's defaults otherwise
  (``reuse_actors=False``: a new worker process per trial; Ray's progress output to a file).

Rounds and sizes alternate which side goes first, so machine noise hits both. The table gives, per
mode and side, the median wall time of each size, the seconds per trial, and the ratio of tunelab's to
raw Ray's (the issue's target: tunelab <= 0.3 s per trial on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from tunelab import search
from tunelab import spaces
from tunelab.search._samplers import make_sampler
from tunelab.trainables import synthetic

FILE = spaces.CATALOGUE / "synthetic_load.yaml"
# Each mode's overrides of the file (which is TPE + ASHA).
MODES = {
    "fifo": ["sampler.name=random", "scheduler.name=fifo"],
    "tpe+asha": [],
}
SIDES = ("tunelab", "raw")


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
    scheduler = FIFOScheduler()
    if sched.name == "asha":
        scheduler = ASHAScheduler(time_attr=sched.time_attr, max_t=sched.max_t, grace_period=sched.grace_period,
                                  reduction_factor=sched.reduction_factor)
    searcher = OptunaSearch(space=s.space, metric=spec.metric, mode=spec.mode, sampler=make_sampler(s))
    tuner = tune.Tuner(
        tune.with_resources(trainable, s.resources),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.budget.max_concurrent),
            scheduler=scheduler, num_samples=spec.budget.trials, metric=spec.metric, mode=spec.mode,
        ),
        run_config=tune.RunConfig(name=spec.name, storage_path=str(storage),
                                  failure_config=tune.FailureConfig(max_failures=spec.budget.max_failures)),
    )
    storage.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(storage / "ray.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        results = tuner.fit()
    elapsed = time.perf_counter() - start
    assert len(results) == spec.budget.trials
    return elapsed


# The raw side of --startup: what a Ray Tune user writes for one trial of the same trainable.
RAW_STARTUP = """
import sys
import ray
from ray import tune
from tunelab.trainables import synthetic
tuner = tune.Tuner(lambda config: synthetic.train(config), param_space={"x": 0.3, "y": -0.2},
                   tune_config=tune.TuneConfig(num_samples=1, metric="val_loss", mode="min"),
                   run_config=tune.RunConfig(name=sys.argv[2], storage_path=sys.argv[1], verbose=0))
assert len(tuner.fit()) == 1
"""


def startup(rounds: int) -> None:
    """Whole-process wall time of a one-trial search: tunelab's CLI against raw Ray Tune."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # each process starts its own Ray
    times = {"tunelab": [], "raw": []}
    with tempfile.TemporaryDirectory() as tmp:
        def tunelab_run(name: str) -> list[str]:
            return [sys.executable, "-m", "tunelab", "run", "synthetic_load", "--set", "budget.trials=1",
                    "--name", name, "--storage", f"{tmp}/tunelab"]

        subprocess.run(tunelab_run("first"), env=env, check=True, capture_output=True)  # makes the folder and DB
        for r in range(rounds):
            for side in (("tunelab", "raw") if r % 2 == 0 else ("raw", "tunelab")):
                cmd = (tunelab_run(f"one-{r}") if side == "tunelab"
                       else [sys.executable, "-c", RAW_STARTUP, f"{tmp}/raw", f"one-{r}"])
                start = time.perf_counter()
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                times[side].append(time.perf_counter() - start)
                assert proc.returncode == 0, proc.stderr[-2000:]
                print(f"round {r} {side:7} {times[side][-1]:6.1f} s", file=sys.__stdout__, flush=True)
    print(f"\none synthetic trial per search, whole process, {rounds} rounds, ray {ray.__version__}, "
          f"{os.cpu_count()} CPUs")
    print("| side | median wall s | fastest wall s |")
    print("|---|---:|---:|")
    for side, label in (("tunelab", "`tunelab run synthetic_load --set budget.trials=1`"), ("raw", "raw Ray Tune")):
        print(f"| {label} | {statistics.median(times[side]):.1f} | {min(times[side]):.1f} |")
    print(f"| ratio tunelab / raw | {statistics.median(times['tunelab']) / statistics.median(times['raw']):.2f} | "
          f"{min(times['tunelab']) / min(times['raw']):.2f} |")


def slope(times: dict[int, list[float]]) -> float:
    """Seconds per trial: the least-squares slope of the median wall time against the trial count."""
    xs = sorted(times)
    ys = [statistics.median(times[x]) for x in xs]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 32], help="trials per search (at least two sizes)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--startup", action="store_true", help="time whole one-trial searches instead")
    args = p.parse_args()
    if args.startup:
        startup(args.rounds)
        return
    if len(set(args.sizes)) < 2:
        p.error("--sizes needs at least two different trial counts")

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    # times[mode][side][n] = wall seconds of each round
    times = {m: {side: {n: [] for n in args.sizes} for side in SIDES} for m in args.modes}
    with tempfile.TemporaryDirectory() as tmp:
        # One untimed search per side first: the first search in a process pays imports and Ray's
        # first workers, which would otherwise land on whichever size runs first.
        warm = spaces.load(FILE, ["budget.trials=2", "name=warm-up", f"storage={tmp}/tunelab"])
        run_tunelab(warm), run_raw(warm, Path(tmp) / "raw" / "warm-up")
        k = 0
        for r in range(args.rounds):
            for mode in args.modes:
                for n in args.sizes:
                    name = f"{mode.replace('+', '-')}-{n}-{r}"
                    overrides = [*MODES[mode], f"budget.trials={n}", f"budget.max_concurrent={args.max_concurrent}",
                                 f"name={name}", f"storage={tmp}/tunelab"]
                    s = spaces.load(FILE, overrides)
                    order = SIDES if k % 2 == 0 else SIDES[::-1]
                    for side in order:
                        t = run_tunelab(s) if side == "tunelab" else run_raw(s, Path(tmp) / "raw" / name)
                        times[mode][side][n].append(t)
                        print(f"round {r} {mode:8} {n:4} trials {side:7} {t:6.1f} s", file=sys.__stdout__, flush=True)
                    k += 1
    ray.shutdown()

    print(f"\nsynthetic trials x 4 reports, sizes {args.sizes}, {args.rounds} rounds, max_concurrent "
          f"{args.max_concurrent}, ray {ray.__version__}, {os.cpu_count()} CPUs")
    sizes = " / ".join(str(n) for n in args.sizes)
    print(f"| mode | tunelab wall s ({sizes} trials) | raw Ray Tune wall s | tunelab s per trial "
          f"| raw Ray Tune s per trial | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in args.modes:
        walls = {side: " / ".join(f"{statistics.median(times[mode][side][n]):.1f}" for n in args.sizes)
                 for side in SIDES}
        ours, raw = slope(times[mode]["tunelab"]), slope(times[mode]["raw"])
        print(f"| {mode} | {walls['tunelab']} | {walls['raw']} | {ours:.3f} | {raw:.3f} | {ours / raw:.2f} |")


if __name__ == "__main__":
    main()
