"""Record a bank of real learning curves with tunelab itself, for the ``curves`` trainable to replay.

    python bench/curve_bank.py gpt                     # about 1 h on 2 cores: 432 GPT trials
    python bench/curve_bank.py gpt --export-only --storage DIR    # export an earlier run again
    python bench/curve_bank.py gpt --describe          # what trainables/curve_banks/gpt_shakespeare_char's curves look like
    python bench/curve_bank.py gpt --set budget.trials=8 --set n_layer=1 ...   # a smaller grid

A bank is a real tunelab search (``search.run``: Ray, the grid sampler in a random order, FIFO so
every configuration runs to its end, MLflow) over a full-factorial grid of a real trainable. Its
curves are read back from MLflow through ``analysis.load`` and written under ``trainables/curve_banks/<bank>/``:

- ``runs.parquet``: one row per trial: ``trial`` (0..n-1 in start order), ``status``, the grid
  parameters (the search file's ``space``: the config values the trial ran with, ``seed`` included)
  and ``params`` (the model's parameter count). The schema metadata (key ``tunelab.bank``) holds
  the bank's description: search file, fixed config, grid, metric, commit, machine, date, wall time.
- ``history.parquet``: one row per evaluation, in order: ``trial``, ``iteration`` (Ray's
  training_iteration, the MLflow step) and the reported ``flops``, ``wall_s``, ``step``, ``tokens``,
  ``train_loss``, ``val_loss``, ``train_ppl``, ``val_ppl``, ``diverged`` and ``finished``.

Recipes (``BANKS``) name the search file and the folder; the GPT one first makes the character-level
token folder of TinyShakespeare (``$TUNELAB_DATA/tinyshakespeare/input.txt``) under the storage folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Ray's workers import the project from this working tree too, not from an installed copy.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import pyarrow as pa
import pyarrow.parquet as pq

from tunelab import analysis
from tunelab import spaces
from tunelab.trainables import metrics as M
from tunelab.trainables import curves
from tunelab.trainables.curves import BANK_META_KEY, HISTORY_FILE, HISTORY_KEYS, RUNS_FILE

DATA = ROOT / "trainables" / "curve_banks"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one bank is made.

    Attributes:
        file: the search file (its ``space`` is the grid; ``grid`` sampler, FIFO).
        folder: the bank's folder under ``trainables/curve_banks``.
        prepare: ``storage -> overrides`` run before the search (e.g. making a token folder).
    """

    file: Path
    folder: str
    prepare: Callable[[Path], list[str]] = lambda storage: []


def _shakespeare_tokens(storage: Path) -> list[str]:
    from tunelab.trainables.gpt import tokens

    out = storage / "tokens" / "shakespeare-char"
    if not (out / "meta.json").exists():
        text = Path(os.environ.get("TUNELAB_DATA", ROOT.parent / "shared" / "data")) / "tinyshakespeare" / "input.txt"
        tokens.prepare(str(text), str(out), tokenizer="char")
    return [f"data.tokens={out}"]


BANKS = {
    "gpt": Recipe(spaces.CATALOGUE / "curve_bank_gpt.yaml", "gpt_shakespeare_char", _shakespeare_tokens),
    "ptb": Recipe(spaces.CATALOGUE / "curve_bank_ptb.yaml", "ptb_lstm"),
}


def export(search: spaces.Search, out: Path, extra: dict | None = None) -> tuple[pa.Table, pa.Table]:
    """Read a finished bank search back from MLflow (``analysis.load``) and write its two Parquet files.

    Args:
        search: the bank's search, as run (its name and tracking URI find it in MLflow).
        out: the bank's folder (created; existing files replaced); its name is the bank's, a key of
            ``trainables.curves.BANKS``, which gives the grid parameters kept.
        extra: more facts for the bank's description (command, wall time...).

    Returns:
        (runs, history) as written.
    """
    runs, history = analysis.load(search.spec.name, search.tracking_uri)
    grid = [*curves.BANKS[out.name], curves.SEED]
    runs_out, history_out = bank_tables(runs, history, grid)
    info = analysis.search_info(runs)
    file = Path(search.file).resolve()
    meta = {
        "search_file": str(file.relative_to(ROOT) if file.is_relative_to(ROOT) else file),
        "trainable": search.spec.trainable, "metric": search.spec.metric, "mode": search.spec.mode,
        "fixed": {k: v for k, v in search.base_config.items() if k not in grid},
        "grid": {n: sorted(set(runs_out.column(n).to_pylist())) for n in grid},
        "commit": info.get("parent_tags", {}).get("mlflow.source.git.commit"),
        "trials": runs_out.num_rows, **(extra or {}),
    }
    runs_out = runs_out.replace_schema_metadata({BANK_META_KEY: json.dumps(meta, default=str).encode()})
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(runs_out, out / RUNS_FILE, compression="zstd")
    pq.write_table(history_out, out / HISTORY_FILE, compression="zstd")
    return runs_out, history_out


def bank_tables(runs: pa.Table, history: pa.Table, grid: Sequence[str]) -> tuple[pa.Table, pa.Table]:
    """``analysis.load``'s two tables -> the bank's two, keeping only what the replay needs.

    Args:
        runs, history: from ``analysis.load``.
        grid: the grid parameters (columns of ``runs``).
    """
    run_ids = runs.column("run_id").to_pylist()
    index = {r: i for i, r in enumerate(run_ids)}  # runs come sorted by start time
    cols = {"trial": pa.array(range(len(run_ids)), pa.int32()), "status": runs.column("status")}
    for name in grid:
        cols[name] = runs.column(name if name in runs.column_names else f"param_{name}")
    cols[M.PARAMS] = runs.column(f"last_{M.PARAMS}").cast(pa.int64())
    runs_out = pa.table(cols)

    points: dict[tuple[int, int], dict[str, float]] = {}
    keep = set(HISTORY_KEYS)
    for run_id, key, step, value in zip(*(history.column(n).to_pylist() for n in ("run_id", "key", "step", "value"))):
        if key in keep and run_id in index:
            points.setdefault((index[run_id], step), {})[key] = value  # the last logged value of a step wins
    rows = sorted(points)
    hist = {"trial": pa.array([t for t, _ in rows], pa.int32()), "iteration": pa.array([s for _, s in rows], pa.int32())}
    for key in HISTORY_KEYS:
        # MLflow holds the 0/1 flags once, at a trial's last step (search/_children.py): 0 before it.
        missing = 0 if key in M.FLAGS else None
        values = [points[r].get(key, missing) for r in rows]
        if key in (M.STEP, M.TOKENS, M.DIVERGED, M.FINISHED):
            hist[key] = pa.array([None if v is None else int(v) for v in values], pa.int64())
        else:
            hist[key] = pa.array(values, pa.float64())
    return runs_out, pa.table(hist)


def describe(folder: Path) -> str:
    """What a bank's curves look like, as Markdown: final val_loss, divergences, seed noise, and how
    well each evaluation ranks the configurations' final values (Spearman, means over seeds).

    Args:
        folder: a bank's folder (its two Parquet files).
    """
    import numpy as np

    runs = pq.read_table(folder / RUNS_FILE).to_pandas()
    hist = pq.read_table(folder / HISTORY_FILE).to_pandas()
    grid = [n for n in json.loads(pq.read_schema(folder / RUNS_FILE).metadata[BANK_META_KEY.encode()])["grid"]
            if n != curves.SEED]
    n_points = int(hist.groupby("trial")["iteration"].max().max())
    # val_loss at evaluation k (1..n) per trial; a curve that ended early (diverged) keeps its last value
    wide = hist.pivot(index="trial", columns="iteration", values=M.VAL_LOSS).reindex(columns=range(1, n_points + 1))
    wide = wide.ffill(axis=1).join(runs.set_index("trial")[grid + [curves.SEED, "status"]])
    final = wide[n_points]
    per_config = wide.groupby(grid)[list(range(1, n_points + 1))].mean()
    finite = final[np.isfinite(final)]
    best = per_config[n_points].idxmin()
    seeds = wide.pivot_table(index=grid, columns=curves.SEED, values=n_points, aggfunc="first")
    gap = (seeds.max(axis=1) - seeds.min(axis=1)).replace([np.inf], np.nan).dropna()

    def spearman(a, b) -> float:
        ra, rb = a.rank(method="average"), b.rank(method="average")  # inf ranks last
        return float(np.corrcoef(ra, rb)[0, 1])

    lines = [
        f"- {len(per_config)} configurations x {runs[curves.SEED].nunique()} seeds = {len(runs)} curves, "
        f"{n_points} evaluations each; status: "
        + ", ".join(f"{k} {v}" for k, v in runs["status"].value_counts().items()),
        f"- final val_loss: min {finite.min():.3f}, median {final.median():.3f}, max (finite) {finite.max():.3f}; "
        f"{int((~np.isfinite(final)).sum())} curves diverged",
        f"- best configuration (mean over seeds) {dict(zip(grid, (v.item() for v in best)))}: "
        f"{per_config[n_points].min():.3f}",
        f"- seed to seed: median |difference| of final val_loss {gap.median():.3f} (90th percentile {gap.quantile(0.9):.3f})",
        "- Spearman rank correlation of the configurations' val_loss (mean over seeds) at evaluation k "
        "with the final one: " + ", ".join(f"k={k}: {spearman(per_config[k], per_config[n_points]):.2f}"
                                          for k in range(1, n_points)),
    ]
    return "\n".join(lines)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def machine() -> str:
    """The machine in one line: CPU model, cores, memory, OS."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (OSError, ValueError):
        mem_gb = float("nan")
    return f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GiB, {platform.system()} {platform.release()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bank", choices=sorted(BANKS))
    p.add_argument("--storage", default=str(ROOT / "runs" / "curve-banks"), help="results root of the bank's search")
    p.add_argument("--out", default=None, help="bank folder (default trainables/curve_banks/<folder>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override the search file (as `tunelab run --set`)")
    p.add_argument("--export-only", action="store_true", help="export the search already under --storage")
    p.add_argument("--describe", action="store_true", help="only describe the bank already exported")
    args = p.parse_args(argv)

    from tunelab import search

    recipe = BANKS[args.bank]
    storage = Path(args.storage).expanduser().resolve()
    out = Path(args.out) if args.out else DATA / recipe.folder
    if args.describe:
        print(describe(out))
        return 0
    overrides = [f"storage={storage}", *args.overrides]
    extra = {"command": " ".join(["python", "bench/curve_bank.py", *(argv if argv is not None else sys.argv[1:])]),
             "machine": machine(), "date": datetime.date.today().isoformat()}
    if args.export_only:  # the search as it was run, from its folder
        s = spaces.load(storage / spaces.load(recipe.file, overrides).spec.name / "search.yaml")
    else:
        s = spaces.load(recipe.file, [*overrides[:1], *recipe.prepare(storage), *overrides[1:]])
        extra["commit_at_start"] = _git("rev-parse", "HEAD")
        start = time.perf_counter()
        outcome = search.run(s)
        extra["wall_s"] = round(time.perf_counter() - start, 1)
        print(outcome.table())
    runs, history = export(s, out, extra)
    statuses = {k: runs.column("status").to_pylist().count(k) for k in M.STATUSES}
    print(f"{out}: {runs.num_rows} curves ({', '.join(f'{k} {v}' for k, v in statuses.items() if v)}), "
          f"{history.num_rows} evaluations; {sum(f.stat().st_size for f in out.glob('*.parquet')) / 1024:.0f} KiB")
    print(describe(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
