"""What the arithmetic searches (spaces/arith_*.yaml, seed report 002) cost on this machine.

    python bench/arith_cost.py                       # every arith_*.yaml, 100 timed steps per shape
    python bench/arith_cost.py arith_sanity --steps 300

For every distinct shape of a search's trials (the grid less the seed and the weight decay, which do
not change a step's cost) it times ``--steps`` training steps and one evaluation of both splits, on one
thread as in a Ray trial with ``cpu: 1``, and extrapolates each trial: steps × s/step + evaluations ×
s/evaluation. The search's estimate on 2 cores is the sum over its trials over ``max_concurrent``
(two trials at a time, one thread each; Ray's start-up and reporting are not counted).
"""

from __future__ import annotations

import argparse
import time


import torch

from tunelab import spaces
from tunelab.trainables import REGISTRY
from tunelab.trainables.arith.config import eval_steps
from tunelab.trainables.arith.train import Trial

FREE = ("seed", "weight_decay")  # fields that leave a step's cost unchanged


def time_shape(config: dict, steps: int) -> tuple[float, float]:
    """Seconds per training step and per evaluation of both splits for one config."""
    cfg = REGISTRY["arith"].parse({**config, "device": "cpu", "steps": max(config["steps"], steps + 5)})
    trial = Trial.setup(cfg)
    trial.train_interval(5)  # warm-up: allocator, first-call overheads
    t0 = time.perf_counter()
    trial.train_interval(5 + steps)
    per_step = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    trial.evaluate()
    return per_step, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="search files (stem) to cost; default every arith_*.yaml")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per shape")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = args.names or sorted(p.stem for p in spaces.CATALOGUE.glob("arith_*.yaml"))
    cache: dict[tuple, tuple[float, float]] = {}
    print(f"{'search':<14} {'trial':<48} {'s/step':>7} {'s/eval':>7} {'trial h':>8}")
    totals = []
    for name in names:
        search = spaces.load(spaces.CATALOGUE / f"{name}.yaml")
        trial_s = []
        for point in search.space.grid_points():
            config = {**search.base_config, **point}
            key = tuple(sorted((k, str(v)) for k, v in config.items() if k not in FREE))
            if key not in cache:
                cache[key] = time_shape(config, args.steps)
            per_step, per_eval = cache[key]
            cfg = search.entry.parse(config)
            seconds = cfg.steps * per_step + len(eval_steps(cfg)) * per_eval
            trial_s.append(seconds)
            shown = " ".join(f"{k}={v}" for k, v in point.items())
            print(f"{name:<14} {shown:<48} {per_step:7.3f} {per_eval:7.3f} {seconds / 3600:8.2f}", flush=True)
        hours = sum(trial_s) / search.spec.budget.max_concurrent / 3600
        totals.append((name, len(trial_s), sum(trial_s) / 3600, hours))
    print(f"\n{'search':<14} {'trials':>6} {'CPU h':>7} {'wall h on 2 cores':>18}")
    for name, n, cpu_h, wall_h in totals:
        print(f"{name:<14} {n:>6} {cpu_h:7.1f} {wall_h:18.1f}")


if __name__ == "__main__":
    main()
