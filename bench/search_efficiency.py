"""Search efficiency: how much compute each search method needs to find a good config, on benchmarks
whose every config's outcome is known.

    python bench/search_efficiency.py --quick          # 1 tabular and the curve benchmark, 5 seeds
    python bench/search_efficiency.py                  # every benchmark's held-out datasets, 10 seeds, 100 trials
    python bench/search_efficiency.py --datasets dev   # the development datasets (where defaults are chosen)
    python bench/search_efficiency.py --quick --seeds 2 --trials 8     # the smoke test

Every method runs as a real search: tunelab's through ``search.run`` on the benchmark's search file with
``--set`` overrides (Ray Tune, the Optuna ask/tell searcher, the scheduler, MLflow into one SQLite store
under ``--out``), read back from MLflow with ``analysis.load``; the peer, Ray's own
``ray.tune.search.optuna.OptunaSearch`` + ``ASHAScheduler`` (stock TPE; stopped trials told COMPLETE),
is built with Ray's API on the same trainable, space (as Optuna distributions), seed and concurrency,
and read back from its ``ResultGrid``. Each (benchmark, method) runs once per seed: ``sampler.seed`` and
the trainable's ``seed`` (which recorded training a tabular config reads) are both the seed.

What is measured: a trial's compute is its last ``cost`` report (tabular: the recorded ``train_time``,
reported as ``wall_s``; curves: ``flops``). Trials are taken in the order they started; after each, the
incumbent is the finished trial (``finished`` = 1) with the best reported value, and the run's regret
is that of the incumbent's config, from the table's mean over recorded seeds:

    normalised regret = (f(incumbent mean) - f(best mean)) / (f(median mean) - f(best mean))

(signs flipped for max), over every config of the table: 0 is the table's best config, 1 a config as
good as the median one. f is log for HPOLib (its MSEs span 1e-5 to 1e4), the identity elsewhere. The
compute budget B is the median over seeds of random + FIFO's total compute for the run's trials; the
table gives median [interquartile range] over seeds after 25/50/100% of B and after all trials (equal
trials), and the compute (in B) each method needs for its median run to reach random + FIFO's final
median regret. A PNG plots median regret (IQR shaded) against compute.

The tabular benchmarks report once per trial, so ASHA and Hyperband have nothing to stop there: the
methods that differ only by scheduler run on multi-fidelity benchmarks (the curve bank) only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

# Ray's workers import the trainables from this checkout too, wherever the bench is started from.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH")]))
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import numpy as np

from tunelab import analysis
from tunelab import search
from tunelab import spaces
from tunelab.trainables import curves, metrics, tabular

ROOT = Path(__file__).resolve().parents[1]
FRACTIONS = (0.25, 0.5, 1.0)
BASELINE = "random+FIFO"


# --- what a benchmark is ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Truth:
    """Every config's true quality, for regret.

    Attributes:
        means: the metric of every config of the table, averaged over its recorded seeds.
        locate: ``params -> row of means`` (a trial's config; the ones the table varies are enough).
        mode: "min" or "max".
        log: regret on log values (metrics spanning orders of magnitude).
    """

    means: np.ndarray
    locate: Callable[[Mapping[str, Any]], int]
    mode: str
    log: bool = False

    def _f(self, v: Any) -> Any:
        v = np.log(v) if self.log else np.asarray(v, dtype=float)
        return v if self.mode == "min" else -v  # lower is better from here on

    @property
    def best(self) -> float:
        return float(np.min(self._f(self.means)))

    @property
    def median(self) -> float:
        return float(np.median(self._f(self.means)))

    def regret(self, params: Mapping[str, Any]) -> float:
        """Normalised regret of a config: 0 at the table's best mean, 1 at its median mean."""
        return (float(self._f(self.means[self.locate(params)])) - self.best) / (self.median - self.best)


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One row group of the table: a search file on one dataset.

    Attributes:
        name: its label, e.g. ``hpolib/protein_structure``.
        file: the search file (relative to the repository).
        overrides: ``--set`` arguments that make it this benchmark (``dataset=...``).
        truth: ``search -> Truth`` (called once, on the driver).
        cost: the metric whose last report is a trial's compute.
        multi_fidelity: trials report more than once, so schedulers can stop them (ASHA, Hyperband).
    """

    name: str
    file: str
    overrides: tuple[str, ...]
    truth: Callable[[spaces.Search], Truth]
    cost: str = metrics.WALL_S
    multi_fidelity: bool = False


def tabular_truth(s: spaces.Search) -> Truth:
    """The truth of a tabular benchmark: its table's mean over recorded seeds, per grid point."""
    tables = tabular.load_tables(s.spec.trainable)
    bench = tables.bench
    table = tables.datasets[s.base_config["dataset"]]
    return Truth(table.mean(), bench.index, bench.mode, log=bench.name == "hpolib")


def _tabular(trainable: str, dataset: str) -> Benchmark:
    return Benchmark(f"{trainable}/{dataset}", f"spaces/bench_{trainable}.yaml", (f"dataset={dataset}",),
                     tabular_truth)


# Defaults are chosen on DEV only; EVAL is for the table that is reported (issue 8, "held out").
DEV = {
    "hpobench": ("australian", "blood_transfusion", "car", "credit_g"),
    "hpolib": ("naval_propulsion", "parkinsons_telemonitoring"),
    "nasbench201": ("cifar10",),
}
EVAL = {
    "hpobench": ("kc1", "phoneme", "segment", "vehicle"),
    "hpolib": ("protein_structure", "slice_localization"),
    "nasbench201": ("cifar100", "imagenet"),
}


def curve_truth(s: spaces.Search) -> Truth:
    """The truth of a curve benchmark: each configuration's final metric, averaged over its recorded
    seeds (the bank's curves, as the ``curves`` trainable replays them)."""
    bank = curves.load_data(s.spec.data.model_dump())[s.base_config["bank"]]
    keys = sorted(bank.curves)
    means = np.array([np.mean([c[-1][s.spec.metric] for c in bank.curves[k]]) for k in keys])
    row = {k: i for i, k in enumerate(keys)}
    names = list(curves.BANKS[bank.name])

    def locate(params: Mapping[str, Any]) -> int:
        cfg = curves.CurvesConfig(bank=bank.name, **{n: params[n] for n in names if n in params})
        return row[bank.snap(cfg.point())]

    return Truth(means, locate, s.spec.mode)


# Curve benchmarks: real multi-fidelity curves recorded by bench/curve_bank.py, replayed by the `curves`
# trainable; a trial's compute is its FLOPs (the recorded wall time is that of a shared machine).
CURVES = [Benchmark("curves/gpt_shakespeare_char", "spaces/bench_curves_gpt.yaml", (), curve_truth,
                    cost=metrics.FLOPS, multi_fidelity=True)]
QUICK_TABULAR = "hpolib/protein_structure"


def benchmarks(which: str) -> list[Benchmark]:
    """The tabular benchmarks on the ``dev`` or ``eval`` datasets, then the curve benchmarks."""
    sets = DEV if which == "dev" else EVAL
    return [_tabular(t, d) for t, ds in sets.items() for d in ds] + list(CURVES)


# --- the methods -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Method:
    """One way to search.

    Attributes:
        name: its label.
        overrides: ``--set`` arguments on the benchmark's search file (tunelab methods).
        peer: Ray's stock ``OptunaSearch`` + ``ASHAScheduler`` built with Ray's API instead.
        multi_fidelity: only where trials report more than once (the scheduler is all that differs).
        numeric: only where every parameter is numeric (CMA-ES samples choices at random).
    """

    name: str
    overrides: tuple[str, ...] = ()
    peer: bool = False
    multi_fidelity: bool = False
    numeric: bool = False

    def applies(self, bench: Benchmark, s: spaces.Search) -> bool:
        if self.multi_fidelity and not bench.multi_fidelity:
            return False
        return not (self.numeric and any(p.kind in ("choice", "grid") for p in s.space.params.values()))


METHODS = (
    Method(BASELINE, ("sampler.name=random", "scheduler.name=fifo")),
    Method("random+ASHA", ("sampler.name=random", "scheduler.name=asha"), multi_fidelity=True),
    Method("random+Hyperband", ("sampler.name=random", "scheduler.name=hyperband"), multi_fidelity=True),
    Method("tunelab default", ()),  # the search file as it is: TPE + its scheduler
    Method("TPE+FIFO", ("sampler.name=tpe", "scheduler.name=fifo")),
    Method("TPE+ASHA", ("sampler.name=tpe", "scheduler.name=asha"), multi_fidelity=True),
    # tunelab's searcher with Optuna's TPE defaults (independent, no constant liar), as Ray's peer samples
    Method("TPE univariate", ("sampler.name=tpe", "sampler.multivariate=false", "sampler.constant_liar=false")),
    Method("Ray OptunaSearch+ASHA", peer=True),
    Method("GP+FIFO", ("sampler.name=gp", "scheduler.name=fifo")),
    Method("CMA-ES+FIFO", ("sampler.name=cmaes", "scheduler.name=fifo"), numeric=True),
)
QUICK_METHODS = (BASELINE, "tunelab default", "Ray OptunaSearch+ASHA")


# --- running one search -------------------------------------------------------------------------------

@dataclasses.dataclass
class Trial:
    start: float
    params: dict[str, Any]
    value: float | None
    cost: float
    finished: bool


@dataclasses.dataclass
class RunResult:
    """One method on one benchmark with one seed: its trials in start order, and its wall time."""

    benchmark: str
    method: str
    seed: int
    wall_s: float
    trials: list[Trial]
    cost: str = metrics.WALL_S  # what a trial's cost is


def _load(bench: Benchmark, overrides: Sequence[str] = ()) -> spaces.Search:
    return spaces.load(ROOT / bench.file, [*bench.overrides, *overrides])


def _search_overrides(bench: Benchmark, method: Method, seed: int, trials: int, storage: Path) -> list[str]:
    exp = f"{bench.name.replace('/', '-')}-{_slug(method.name)}-s{seed}"
    return [*method.overrides, f"name={exp}", f"storage={storage}", f"sampler.seed={seed}", f"seed={seed}",
            f"budget.trials={trials}"]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def run_tunelab(bench: Benchmark, method: Method, seed: int, trials: int, storage: Path) -> RunResult:
    """``search.run`` on the benchmark's file with the method's overrides; the trials as MLflow holds them."""
    s = _load(bench, _search_overrides(bench, method, seed, trials, storage))
    start = time.perf_counter()
    outcome = search.run(s)
    wall = time.perf_counter() - start
    runs, _ = analysis.load(outcome.name, outcome.tracking_uri, outcome.parent_run_id)
    rows = runs.to_pylist()  # one per trial, in start order
    keys = list(s.space.params)
    out = [Trial(r["start_time"].timestamp(), {k: r[k] for k in keys if k in r}, r.get(f"last_{s.spec.metric}"),
                 float(r.get(f"last_{bench.cost}") or 0.0), bool(r.get(f"last_{metrics.FINISHED}")))
           for r in rows]
    return RunResult(bench.name, method.name, seed, wall, out, bench.cost)


def optuna_distributions(space: spaces.CompiledSpace) -> dict[str, Any]:
    """A search file's (unconditional) space as Optuna distributions, for Ray's OptunaSearch."""
    import optuna.distributions as d

    out = {}
    for name, p in space.params.items():
        if p.when:
            raise ValueError(f"{name}: Ray's OptunaSearch takes no conditional parameters")
        if p.kind in ("uniform", "loguniform"):
            out[name] = d.FloatDistribution(*p.values, log=p.kind == "loguniform", step=p.step)
        elif p.kind in ("int", "logint"):
            out[name] = d.IntDistribution(*p.values, log=p.kind == "logint", step=int(p.step or 1))
        else:
            out[name] = d.CategoricalDistribution(list(p.values))
    return out


def run_peer(bench: Benchmark, method: Method, seed: int, trials: int, storage: Path) -> RunResult:
    """The same search through Ray's own OptunaSearch (stock TPE, seeded) and ASHAScheduler."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    s = _load(bench, _search_overrides(bench, method, seed, trials, storage))
    spec, base, entry = s.spec, dict(s.base_config), s.entry
    fn = entry.trainable

    def trainable(config, data=None):
        fn({**base, **config}, data)

    sched = spec.scheduler
    searcher = OptunaSearch(space=optuna_distributions(s.space), metric=spec.metric, mode=spec.mode, seed=seed)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, data=entry.load_data(spec.data.model_dump())),
                            s.resources),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.budget.max_concurrent),
            scheduler=ASHAScheduler(time_attr=sched.time_attr, max_t=sched.max_t,
                                    grace_period=sched.grace_period, reduction_factor=sched.reduction_factor),
            num_samples=trials, metric=spec.metric, mode=spec.mode,
            reuse_actors=entry.reuse_workers,  # as tunelab does: the overhead is not what is compared
        ),
        run_config=tune.RunConfig(name=spec.name, storage_path=str(storage / "ray-peer")),
    )
    start = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - start
    out = []
    for r in grid:
        m = r.metrics or {}
        # Start order is creation order: Ray's experiment tag, which opens the trial's folder name
        # after its id (``trainable_086ec99b_25_batch_size=8,...``), counts trials as the searcher
        # suggests them. (``timestamp`` has whole seconds, which dozens of instant trials share.)
        number = re.search(rf"_{m['trial_id']}_(\d+)", Path(r.path).name)
        out.append(Trial(int(number.group(1)),
                         {k: r.config[k] for k in s.space.params if k in r.config}, m.get(spec.metric),
                         float(m.get(bench.cost) or 0.0), bool(m.get(metrics.FINISHED))))
    out.sort(key=lambda t: t.start)
    return RunResult(bench.name, method.name, seed, wall, out, bench.cost)


# --- scoring --------------------------------------------------------------------------------------------

def trace(run: RunResult, truth: Truth) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative compute, regret of the incumbent) after each trial of a run, in start order."""
    sign = 1 if truth.mode == "min" else -1
    costs, regrets = [], []
    spent, best, regret = 0.0, math.inf, math.inf
    for t in run.trials:
        spent += t.cost
        if t.finished and t.value is not None and math.isfinite(t.value) and sign * t.value < best:
            best, regret = sign * t.value, truth.regret(t.params)
        costs.append(spent)
        regrets.append(regret)
    return np.asarray(costs), np.asarray(regrets)


def regret_at(costs: np.ndarray, regrets: np.ndarray, budget: float) -> float:
    """The incumbent's regret once ``budget`` compute is spent (inf before any trial fits in it)."""
    i = int(np.searchsorted(costs, budget, side="right"))
    return float(regrets[i - 1]) if i else math.inf


def compute_to_reach(costs: np.ndarray, regrets: np.ndarray, target: float) -> float:
    """The compute after which the incumbent's regret is at most ``target`` (inf if never)."""
    hit = np.nonzero(regrets <= target)[0]
    return float(costs[hit[0]]) if len(hit) else math.inf


def _median_iqr(xs: Sequence[float]) -> tuple[float, float, float]:
    """Median, first and third quartile; inf (no incumbent yet, target never reached) counts as the worst."""
    x = np.minimum(np.asarray(xs, dtype=float), _HUGE)
    q1, med, q3 = (float(v) if v < _HUGE / 2 else math.inf for v in np.percentile(x, [25, 50, 75]))
    return med, q1, q3


_HUGE = 1e300


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.3g}"


def summarize(runs: list[RunResult], truths: dict[str, Truth]) -> tuple[str, dict]:
    """The Markdown table per benchmark, and the numbers behind it."""
    lines, numbers = [], {}
    for bench in dict.fromkeys(r.benchmark for r in runs):
        truth = truths[bench]
        by_method: dict[str, list[RunResult]] = {}
        for r in runs:
            if r.benchmark == bench:
                by_method.setdefault(r.method, []).append(r)
        traces = {m: [trace(r, truth) for r in rs] for m, rs in by_method.items()}
        base, base_runs = traces.get(BASELINE), by_method.get(BASELINE)
        if not base:
            continue
        budget = statistics.median(c[-1] for c, _ in base)
        target = _median_iqr([regret_at(c, g, budget) for c, g in base])[0]
        unit = "s of recorded training" if base_runs[0].cost == metrics.WALL_S else base_runs[0].cost
        lines += [f"\n### {bench}", "",
                  f"B = {budget:.4g} ({unit}), the median compute of {BASELINE}'s runs; "
                  f"target = its median regret at B, {target:.3g}.", "",
                  "| method | seeds | trials | s/trial | regret @25% B | @50% B | @100% B | @all trials | "
                  "compute to target |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        numbers[bench] = {"budget": budget, "target": target, "methods": {}}
        for m, tr in traces.items():
            rs = by_method[m]
            at = [[regret_at(c, g, f * budget) for c, g in tr] for f in FRACTIONS]
            final = [float(g[-1]) for _, g in tr]
            # A method's compute to target: when its median run gets there (the median over seeds).
            reach = _median_iqr([compute_to_reach(c, g, target) for c, g in tr])[0] / budget
            per_trial = sum(r.wall_s for r in rs) / max(1, sum(len(r.trials) for r in rs))
            cells = [" ".join((_fmt(a), f"[{_fmt(b)}, {_fmt(c)}]")) for a, b, c in map(_median_iqr, [*at, final])]
            lines.append(f"| {m} | {len(rs)} | {len(rs[0].trials)} | {per_trial:.2f} | " + " | ".join(cells)
                         + f" | {_fmt(reach)} B |")
            numbers[bench]["methods"][m] = {"at": at, "final": final, "reach": reach, "s_per_trial": per_trial}
    return "\n".join(lines), numbers


def plot(runs: list[RunResult], truths: dict[str, Truth], path: Path) -> None:
    """Median regret (IQR shaded) against compute in units of B, one panel per benchmark."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    benches = list(dict.fromkeys(r.benchmark for r in runs))
    names = [m.name for m in METHODS]  # one colour per method in every panel, a legend in each
    colors = {m: f"C{names.index(m) if m in names else len(names) + i}"
              for i, m in enumerate(dict.fromkeys(r.method for r in runs))}
    fig = Figure(figsize=(4.2 * min(3, len(benches)), 3.4 * math.ceil(len(benches) / 3)), layout="constrained")
    axes = fig.subplots(math.ceil(len(benches) / 3), min(3, len(benches)), squeeze=False).ravel()
    for ax, bench in zip(axes, benches):
        truth = truths[bench]
        base = [trace(r, truth) for r in runs if r.benchmark == bench and r.method == BASELINE]
        budget = statistics.median(c[-1] for c, _ in base) if base else 1.0
        grid = np.linspace(0, 1.5, 61)[1:]
        for m in dict.fromkeys(r.method for r in runs if r.benchmark == bench):
            color = colors[m]
            tr = [trace(r, truth) for r in runs if r.benchmark == bench and r.method == m]
            ys = np.array([[regret_at(c, g, x * budget) for x in grid] for c, g in tr])
            q1, med, q3 = (np.where(v < _HUGE / 2, v, np.nan)  # before any incumbent: not drawn
                           for v in np.percentile(np.minimum(ys, _HUGE), [25, 50, 75], axis=0))
            ax.plot(grid, med, label=m, color=color)
            ax.fill_between(grid, q1, q3, alpha=0.15, color=color)
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_title(bench, fontsize=9)
        ax.set_xlabel(f"compute (B = {BASELINE}'s median)")
        ax.set_ylabel("normalised regret")
        ax.axvline(1.0, color="grey", lw=0.5)
        ax.legend(fontsize=7)
    for ax in axes[len(benches):]:
        ax.set_visible(False)
    fig.savefig(path, dpi=120)


# --- driver -----------------------------------------------------------------------------------------------

def run_all(benches: list[Benchmark], methods: Sequence[Method], seeds: Sequence[int], trials: int, out: Path,
            log: Callable[[str], None] = print, save: Path | None = None) -> tuple[list[RunResult], dict[str, Truth]]:
    """Every applicable method on every benchmark, once per seed; each search's own output goes to a log
    under ``out``, and the results so far to ``save`` after every search."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    storage = out / time.strftime("searches-%Y%m%d-%H%M%S")  # a fresh store per invocation
    results: list[RunResult] = []
    truths: dict[str, Truth] = {}
    for bench in benches:
        s = _load(bench)
        truths[bench.name] = bench.truth(s)
        todo = []
        seen: dict[str, str] = {}  # spec hash -> method: the file's settings may equal another method's
        for m in methods:
            if not m.applies(bench, s):
                continue
            if not m.peer:
                same = _load(bench, [*m.overrides, *_search_overrides(bench, Method("same"), 0, trials, out)])
                if same.spec_hash in seen:
                    log(f"{bench.name}: {m.name} is the same search as {seen[same.spec_hash]}; run once")
                    continue
                seen[same.spec_hash] = m.name
            todo.append(m)
        for seed in seeds:
            for m in todo:
                runner = run_peer if m.peer else run_tunelab
                with open(out / "logs" / f"{_slug(bench.name)}-{_slug(m.name)}-s{seed}.log", "w") as f, \
                        contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                    r = runner(bench, m, seed, trials, storage)
                results.append(r)
                if save is not None:
                    _save(results, save)
                log(f"{bench.name:32s} {m.name:24s} seed {seed}: {len(r.trials)} trials in {r.wall_s:.0f} s, "
                    f"final regret {trace(r, truths[bench.name])[1][-1]:.3g}")
    return results, truths


def _save(runs: list[RunResult], path: Path) -> None:
    path.write_text(json.dumps([dataclasses.asdict(r) for r in runs]))


def _read(path: Path) -> list[RunResult]:
    return [RunResult(**{**r, "trials": [Trial(**t) for t in r["trials"]]}) for r in json.loads(path.read_text())]


def report(runs: list[RunResult], truths: dict[str, Truth], out: Path, head: str) -> str:
    """Write the table (``table.md``), its numbers and the figure under ``out``; return the table."""
    table, numbers = summarize(runs, truths)
    (out / "numbers.json").write_text(json.dumps(numbers))
    plot(runs, truths, out / "regret_vs_compute.png")
    text = head + "\n" + table + "\n"
    (out / "table.md").write_text(text)
    return text


def main(argv: Sequence[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_TABULAR} and the curve benchmarks, 5 seeds, methods {', '.join(QUICK_METHODS)}")
    p.add_argument("--datasets", choices=("eval", "dev"), default="eval",
                   help="held-out datasets (the reported table) or the development ones (choosing defaults)")
    p.add_argument("--benchmarks", help="comma-separated benchmark names (e.g. hpolib/protein_structure)")
    p.add_argument("--methods", help=f"comma-separated method names: {', '.join(m.name for m in METHODS)}")
    p.add_argument("--seeds", type=int, help="seeds 0..N-1 (default 10; --quick 5)")
    p.add_argument("--trials", type=int, help="trials per search (default 100; --quick 30)")
    p.add_argument("--out", default="runs/search_efficiency", help="results, MLflow store, logs, figure")
    p.add_argument("--replot", action="store_true", help="only the table and figure, from --out's runs.json")
    args = p.parse_args(argv)

    benches = benchmarks(args.datasets)
    names = args.methods.split(",") if args.methods else None
    if args.quick:
        benches = [b for b in benches if b.name == QUICK_TABULAR or b in CURVES] or \
            [b for b in benchmarks("eval") if b.name == QUICK_TABULAR]
        names = names or list(QUICK_METHODS)
    if args.benchmarks:
        wanted = args.benchmarks.split(",")
        benches = [b for b in benchmarks("dev") + benchmarks("eval") if b.name in wanted]
        benches = list({b.name: b for b in benches}.values())
    known = {m.name: m for m in METHODS}
    if names and (bad := [n for n in names if n not in known]):
        p.error(f"--methods: unknown {bad}; expected names from: {', '.join(known)}")
    methods = [known[n] for n in names] if names else list(METHODS)
    if BASELINE not in {m.name for m in methods}:
        methods.insert(0, known[BASELINE])  # regret budgets are measured against it
    seeds = range(args.seeds or (5 if args.quick else 10))
    trials = args.trials or (30 if args.quick else 100)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    if args.replot:  # the table and figure again from a finished run's runs.json
        runs = _read(out / "runs.json")
        by_name = {b.name: b for b in benchmarks("dev") + benchmarks("eval")}
        truths = {n: by_name[n].truth(_load(by_name[n])) for n in dict.fromkeys(r.benchmark for r in runs)}
        text = report(runs, truths, out, (out / "table.md").read_text().split("\n")[0] if (out / "table.md").exists()
                      else "## Search efficiency (replotted)")
        print(text)
        return text
    start = time.perf_counter()
    runs, truths = run_all(benches, methods, seeds, trials, out, save=out / "runs.json")
    elapsed = time.perf_counter() - start
    head = (f"## Search efficiency: {len(seeds)} seeds, {trials} trials per search, {os.cpu_count()} CPUs, "
            f"{elapsed / 60:.1f} min\n\nnormalised regret: 0 = the table's best mean, 1 = its median config "
            f"(log values for hpolib); median [IQR] over seeds.")
    text = report(runs, truths, out, head)
    print(text)
    print(f"figure: {out / 'regret_vs_compute.png'}")
    return text


if __name__ == "__main__":
    main()
