"""Choosing defaults: tunelab's sampler settings compared on the tabular benchmarks' development datasets.

    python bench/sampler_study.py                                   # the comparisons the defaults rest on
    python bench/sampler_study.py --seeds 60 --variant "tpe=" --variant "startup5=sampler.n_startup_trials=5"

Each variant is a list of ``--set`` overrides on the benchmark's search file (``NAME=ov1;ov2``; an empty
list is the file as it is). The sampler is the one ``tunelab run`` would build (``search._samplers.
make_sampler``) over the file's compiled space, driven by plain Optuna ask/tell in this process with
``budget.max_concurrent - 1`` trials pending at each ask (what Ray's concurrency limit leaves when trials
last milliseconds), so hundreds of seeds take minutes. It is a development tool for choosing defaults,
on the development datasets only (``search_efficiency.DEV``); what is reported is measured by
``bench/search_efficiency.py`` with real searches on the held-out datasets.

The table gives the normalised regret of ``search_efficiency`` (0 = the table's best mean, 1 = its median
config) averaged over seeds after 25, 50 and 100 trials, and averaged over trials 1..N (the area under
the regret curve, the least noisy single number), per dataset and averaged over datasets.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import optuna

import search_efficiency as se
from tunelab import spaces
from tunelab.search._samplers import make_sampler
from tunelab.trainables import tabular

DEFAULT_VARIANTS = (
    "random=sampler.name=random",
    "tpe=",
    "startup5=sampler.n_startup_trials=5",
    "startup20=sampler.n_startup_trials=20",
    "independent=sampler.multivariate=false",
    "no-liar=sampler.constant_liar=false",
)


def run_once(file: Path, dataset: str, overrides: Sequence[str], seed: int, trials: int) -> np.ndarray:
    """The incumbent's normalised regret after each of ``trials`` trials of one seeded search."""
    s = spaces.load(file, [f"dataset={dataset}", f"sampler.seed={seed}", f"seed={seed}", *overrides])
    tables = tabular.load_tables(s.spec.trainable, (dataset,))
    truth = se.tabular_truth(s)
    study = optuna.create_study(direction="minimize" if s.spec.mode == "min" else "maximize",
                                sampler=make_sampler(s))
    sign = 1 if s.spec.mode == "min" else -1
    pending, regrets = [], []
    best, regret = math.inf, math.inf

    def finish(trial: optuna.Trial, params: dict) -> None:
        nonlocal best, regret
        value, _ = tabular.evaluate(tables, s.entry.parse({**s.base_config, **params}))
        study.tell(trial, value)
        if sign * value < best:
            best, regret = sign * value, truth.regret(params)
        regrets.append(regret)

    for _ in range(trials):
        trial = study.ask()
        pending.append((trial, s.space(trial)))
        if len(pending) >= s.spec.budget.max_concurrent:
            finish(*pending.pop(0))
    while pending:
        finish(*pending.pop(0))
    return np.asarray(regrets)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", action="append", help="NAME=override;override (repeatable)")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--benchmarks", default=",".join(se.DEV), help="comma-separated: " + ", ".join(se.DEV))
    args = p.parse_args(argv)
    variants = {}
    for v in args.variant or DEFAULT_VARIANTS:
        name, _, ovs = v.partition("=")
        variants[name] = [o for o in ovs.split(";") if o]
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    marks = [m for m in (25, 50, 100) if m <= args.trials] + ([args.trials] if args.trials not in (25, 50, 100) else [])
    head = " | ".join(f"@{m}" for m in marks)
    print(f"mean normalised regret over {args.seeds} seeds ({head} | mean over trials 1-{args.trials}), "
          f"development datasets only\n")
    print(f"| dataset | variant | {head} | area |\n|---|---|" + "---:|" * (len(marks) + 1))
    overall: dict[str, list[float]] = {}
    for bench in args.benchmarks.split(","):
        file = se.ROOT / f"spaces/bench_{bench}.yaml"
        for dataset in se.DEV[bench]:
            for name, ovs in variants.items():
                r = np.array([run_once(file, dataset, ovs, seed, args.trials) for seed in range(args.seeds)])
                r = np.minimum(r, 10.0)  # inf before the first result, and the odd diverged config
                cells = [f"{r[:, m - 1].mean():.3f}" for m in marks] + [f"{r.mean():.3f}"]
                overall.setdefault(name, []).append(r.mean())
                print(f"| {bench}/{dataset} | {name} | " + " | ".join(cells) + " |", flush=True)
    print("\n| variant | mean area over datasets |\n|---|---:|")
    for name, xs in overall.items():
        print(f"| {name} | {np.mean(xs):.3f} |")


if __name__ == "__main__":
    main()
