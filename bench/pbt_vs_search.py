"""PBT against TPE + ASHA and random + FIFO on seed report 004's problem, at equal total training epochs.

    python bench/pbt_vs_search.py                  # population 8, 13 epochs, 10% of PTB's train split, 3 seeds
    python bench/pbt_vs_search.py --smoke          # a tiny version of every search (a minute or two on 2 cores)
    python bench/pbt_vs_search.py --fraction 1.0   # full PTB (what a GPU node runs; spaces/ptb_pbt.yaml)

The problem: the Zaremba-small LSTM (2x200, dropout, SGD, clip 5) on a leading ``--fraction`` of PTB's
training split, validated on a quarter of the validation split. Every method is a real search through
``search.run`` (Ray Tune, Optuna, MLflow into one SQLite store under ``--out``), once per seed
(``sampler.seed`` and the trainable's ``seed`` both the seed):

- **PBT**: ``--population`` members (QMC draws) for ``--epochs`` epochs each, at a constant learning
  rate per member that PBT mutates with ``dropout`` after every epoch (the schedule is found);
- **TPE + ASHA** and **random + FIFO**: over the schedule's parameters (``lr``, ``lr_decay``,
  ``decay_start``, ``dropout``) with Zaremba's step decay, ``--epochs`` per trial, until the search has
  spent the same training FLOPs as PBT's population (``budget.total_flops`` = population x epochs x
  the FLOPs of one epoch: equal epochs, as the model is fixed);
- **PBT warm**: PBT whose population is the TPE + ASHA search's best finished configs (same seed), so
  its cost is that search's plus its own (the table says so).

It prints, per method, the median and interquartile range over seeds of the best validation PPL any
trial reached, the epochs spent and the wall time, and saves ``pbt_schedule.png``: the winning PBT
member's learnt learning rate (along its family tree) beside Zaremba's fixed schedule (1.0, halved
every epoch after the 4th).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Ray's workers import the trainables from this checkout too, wherever the bench is started from.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH")]))
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

from tunelab import _lineage, analysis, search, spaces  # noqa: E402
from tunelab.trainables import metrics  # noqa: E402

PTB_TRAIN_TOKENS = 929_589  # with <eos> (DESIGN.md)
ZAREMBA = {"lr": 1.0, "lr_decay": 2.0, "decay_start": 4}  # the paper's small schedule
METHODS = ("PBT", "TPE+ASHA", "random+FIFO", "PBT warm")


def problem(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The search file every method starts from: the model, the data slice, the seed."""
    return {
        "trainable": "rnn", "metric": "val_ppl", "mode": "min",
        "fixed": {"cell": "lstm", "hidden_size": args.hidden, "num_layers": 2, "bptt": 20, "batch_size": 20,
                  "epochs": args.epochs, "init_scale": 0.1, "clip": 5.0, "optimizer": "sgd",
                  "train_fraction": args.fraction, "eval_fraction": args.eval_fraction, "seed": seed},
        "resources": {"cpu": args.cpu, "gpu": 0}, "data": {"corpus": "ptb", "dir": None}, "storage": str(args.out),
    }


def epoch_flops(s: spaces.Search) -> float:
    """Training FLOPs of one epoch of the problem's model on its slice (what the trainable counts)."""
    cfg = s.base_config
    streams = int(PTB_TRAIN_TOKENS * cfg["train_fraction"]) // cfg["batch_size"]
    return float(s.entry.flops_per_token(cfg)) * (streams - 1) * cfg["batch_size"]


def spec(method: str, args: argparse.Namespace, seed: int, budget_flops: float | None) -> dict[str, Any]:
    name = f"{method.lower().replace('+', '-').replace(' ', '-')}-s{seed}"
    base = {**problem(args, seed), "name": name}
    schedule_space = {"lr": {"loguniform": [0.1, 4.0]}, "dropout": {"uniform": [0.0, 0.6]},
                      "lr_decay": {"uniform": [1.1, 2.5]}, "decay_start": {"int": [2, max(3, args.epochs - 1)]}}
    if method.startswith("PBT"):
        base["fixed"]["lr_schedule"] = "constant"
        base["space"] = {k: schedule_space[k] for k in ("lr", "dropout")}
        base["sampler"] = {"name": "qmc", "seed": seed}
        base["scheduler"] = {"name": "pbt", "time_attr": "epoch", "perturbation_interval": args.interval,
                             "quantile_fraction": args.quantile, "mutations": ["lr", "dropout"]}
        base["budget"] = {"trials": args.population, "max_concurrent": args.population}
        if method == "PBT warm":
            base["warm_start"] = {"search": f"tpe-asha-s{seed}", "storage": str(args.out)}
        return base
    base["fixed"]["lr_schedule"] = "step"
    base["space"] = schedule_space
    base["points_to_evaluate"] = [{**ZAREMBA, "dropout": 0.0}]  # the paper's schedule, tried first
    base["budget"] = {"trials": args.population * 4, "max_concurrent": args.concurrent, "total_flops": budget_flops}
    if method == "TPE+ASHA":
        base["sampler"] = {"name": "tpe", "seed": seed, "n_startup_trials": max(2, args.population // 2)}
        base["scheduler"] = {"name": "asha", "time_attr": "epoch", "max_t": args.epochs, "grace_period": 1,
                             "reduction_factor": 3}
    else:
        base["sampler"] = {"name": "random", "seed": seed}
        base["scheduler"] = {"name": "fifo"}
    return base


def run_one(method: str, args: argparse.Namespace, seed: int, budget_flops: float | None) -> dict[str, Any]:
    s = spaces.load(spec(method, args, seed, budget_flops))
    start = time.perf_counter()
    outcome = search.run(s)
    wall = time.perf_counter() - start
    runs, history = analysis.load(s.spec.name, outcome.tracking_uri)
    # one val_ppl per epoch trained (a PBT member that copied another logs the epochs it trained again)
    epochs = history.column("key").to_pylist().count(metrics.VAL_PPL)
    return {"method": method, "seed": seed, "name": s.spec.name, "best": outcome.best_value, "epochs": epochs,
            "wall_s": wall, "trials": runs.num_rows, "tracking_uri": outcome.tracking_uri}


def _median_iqr(xs: Sequence[float]) -> str:
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return "-"
    if len(xs) < 2:
        return f"{xs[0]:.1f}"
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return f"{statistics.median(xs):.1f} [{q[0]:.1f}, {q[2]:.1f}]"


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"| method | best val PPL, median [IQR] | seeds | epochs trained (median) | trials | wall (median) |",
             "|---|---|---|---|---|---|"]
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        epochs = statistics.median(r["epochs"] for r in mine)
        note = " (+ TPE+ASHA's)" if method == "PBT warm" else ""
        lines.append(f"| {method} | {_median_iqr([r['best'] for r in mine])} | {len(mine)} | {epochs:g}{note} | "
                     f"{statistics.median(r['trials'] for r in mine):g} | "
                     f"{statistics.median(r['wall_s'] for r in mine) / 60:.1f} min |")
    head = (f"Zaremba-small LSTM (2x{args.hidden}) on {args.fraction:.1%} of PTB's training split, "
            f"{args.epochs} epochs per trial, PBT population {args.population} (interval {args.interval:g} epoch, "
            f"quantile {args.quantile:g}); equal training FLOPs for TPE+ASHA and random+FIFO.")
    return head + "\n\n" + "\n".join(lines)


def learnt_schedule(name: str, tracking_uri: str) -> list[tuple[float, float]]:
    """(epoch, lr) of the winning PBT member's weights along its family tree."""
    runs, history = analysis.load(name, tracking_uri)
    names = dict(zip(runs.column("trial_id").to_pylist(), runs.column("run_name").to_pylist()))
    short = {t: (n or t).split(" ")[0] for t, n in names.items()}
    best = runs.column(f"best_{metrics.VAL_PPL}").to_pylist()
    i = min(range(runs.num_rows), key=lambda j: best[j] if best[j] is not None else float("inf"))
    winner = short[runs.column("trial_id")[i].as_py()]
    tree = _lineage.family_tree(analysis.lineages(runs), winner, int(runs.column("iterations")[i].as_py() or 0))
    by_member = {short[t]: rid for t, rid in zip(runs.column("trial_id").to_pylist(), runs.column("run_id").to_pylist())}
    df = history.to_pandas()
    df = df[df["key"] == "hp/lr"].sort_values("timestamp")
    points = []
    for seg in reversed(tree):
        mine = df[(df["run_id"] == by_member[seg.member]) & (df["step"] > seg.start) & (df["step"] <= seg.end)]
        points += sorted({int(s): v for s, v in zip(mine["step"], mine["value"])}.items())
    return points


def plot_schedule(points: list[tuple[float, float]], epochs: int, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.4), layout="constrained")
    ax = fig.subplots()
    zaremba = [ZAREMBA["lr"] / ZAREMBA["lr_decay"] ** max(0, e - ZAREMBA["decay_start"]) for e in range(1, epochs + 1)]
    ax.step(range(1, epochs + 1), zaremba, where="post", label="Zaremba small (fixed)", color="#666")
    if points:
        ax.step([p[0] for p in points], [p[1] for p in points], where="post", label="PBT winner (learnt)", color="C0")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny searches: 4 members, 3 epochs, 0.2%% of PTB, 1 seed")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--epochs", type=int, default=13)
    p.add_argument("--fraction", type=float, default=0.1, help="leading fraction of PTB's training split")
    p.add_argument("--eval-fraction", type=float, default=0.25)
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--interval", type=float, default=1.0, help="PBT's perturbation interval, in epochs")
    p.add_argument("--quantile", type=float, default=0.25, help="PBT's quantile_fraction")
    p.add_argument("--concurrent", type=int, default=4, help="trials at once for TPE+ASHA and random+FIFO")
    p.add_argument("--cpu", type=float, default=0.25, help="CPUs per trial (Ray's scheduling share)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--out", type=Path, default=Path("bench/results/pbt_vs_search"))
    args = p.parse_args(argv)
    if args.smoke:
        args.seeds, args.population, args.epochs, args.fraction, args.eval_fraction = 1, 4, 3, 0.002, 0.02
        args.concurrent, args.quantile = 2, 0.5
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out = args.out / stamp
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, configure_logging=False, log_to_driver=False)
    rows: list[dict[str, Any]] = []
    flops = epoch_flops(spaces.load({**spec("PBT", args, 0, None)})) * args.population * args.epochs
    for seed in range(args.seeds):
        for method in methods:
            if method == "PBT warm" and "TPE+ASHA" not in methods:
                continue
            rows.append(run_one(method, args, seed, None if method.startswith("PBT") else flops))
            print(json.dumps(rows[-1]), flush=True)
    (args.out / "runs.json").write_text(json.dumps(rows, indent=1))
    text = table(rows, args)
    pbt = [r for r in rows if r["method"] == "PBT" and r["best"] is not None]
    if pbt:
        winner = min(pbt, key=lambda r: r["best"])
        points = learnt_schedule(winner["name"], winner["tracking_uri"])
        plot_schedule(points, args.epochs, args.out / "pbt_schedule.png")
        text += (f"\n\nThe best PBT run's winner ({winner['name']}) trained at lr "
                 + ", ".join(f"{lr:.3g}" for _, lr in points) + " epoch by epoch (Zaremba: "
                 + ", ".join(f"{ZAREMBA['lr'] / ZAREMBA['lr_decay'] ** max(0, e - ZAREMBA['decay_start']):.3g}"
                             for e in range(1, args.epochs + 1)) + f"); figure: {args.out / 'pbt_schedule.png'}")
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
