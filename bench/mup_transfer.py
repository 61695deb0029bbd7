"""µP on a laptop: does the GPT's best learning rate stay put across width, and does tuning narrow pay?

    python bench/mup_transfer.py                     # the measurement: about an hour on 2 CPU cores
    python bench/mup_transfer.py --quick             # the smoke test: widths 32 and 64, a few steps

Two experiments, each a set of real searches (``search.run``, ``search.transfer``: Ray Tune, Optuna,
MLflow into one SQLite store under ``--storage``), read back from MLflow with ``analysis.load``. A
search already finished under ``--storage`` is read, not run again; an interrupted one is resumed, so
the bench can be stopped and started again.

1. **The optimum's shift** (spaces/gpt_mup_widths.yaml): a grid over sp / mup × width 32..256 ×
   peak learning rate 2^-10..2^-4 × seeds 0, 1, every trial the same 300 steps. Per parametrization
   and width, the rate with the lowest mean final val_loss over the seeds (``trainables.gpt.report``,
   the same table and figure ``tunelab report`` draws); the shift is the widest width's optimum over
   the narrowest's. Targets: mup within a factor of 2 (one grid step); sp at least 4x.
2. **Tune narrow, train wide** (spaces/gpt_mup_transfer.yaml): a 12-trial TPE search of the peak rate
   and warm-up at width 32, whose 2 best configs ``tunelab transfer`` trains at width 256, against the
   same TPE search (same trial count, same seed) run at width 256 directly. Three narrow searches are
   transferred (``VARIANTS``): mup with base_width 256 (the file's: the wide model is then a plain
   GPT), mup with base_width 32, and sp (no µP: what does not transfer). Compute is training FLOPs, the
   sum of every trial's last ``flops`` report. Target: mup's narrow + transfer within 1% of the direct
   search's best val_loss at no more than 1/3 of its compute.

``--part shift`` or ``--part transfer`` runs one experiment (the other's searches are not touched).
Writes ``table.md`` and ``lr_width.png`` under ``--out`` (default bench/results/mup_transfer) and prints
the tables.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# Ray's workers import the trainables from this checkout too, wherever the bench is started from.
ROOT = Path(__file__).resolve().parent.parent
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT.parent), os.environ.get("PYTHONPATH")) if p)
sys.path.insert(0, str(ROOT.parent))

from tunelab import analysis  # noqa: E402
from tunelab import search  # noqa: E402
from tunelab import spaces  # noqa: E402
from tunelab import _mlflow  # noqa: E402
from tunelab.search._paths import STATE_FILE, read_state  # noqa: E402
from tunelab.trainables import metrics, tags  # noqa: E402
from tunelab.trainables.gpt import report as gpt_report  # noqa: E402
from tunelab.trainables.gpt import tokens  # noqa: E402

OUT = ROOT / "bench" / "results" / "mup_transfer"
WIDTHS_FILE = ROOT / "spaces" / "gpt_mup_widths.yaml"
TRANSFER_FILE = ROOT / "spaces" / "gpt_mup_transfer.yaml"
WIDE = 256
TOP = 2
# The smoke test: two widths, three rates, a handful of steps, 4-trial searches.
QUICK = ["max_steps=20", "warmup_steps=2", "eval_interval=10", "eval_iters=2"]
QUICK_GRID = ["space.n_embd={choice: [32, 64]}", "space.max_lr={choice: [0.00390625, 0.015625, 0.0625]}",
              "space.seed={choice: [0]}", "budget.trials=12"]
QUICK_TPE = ["budget.trials=4", "sampler.n_startup_trials=2"]
# The narrow searches transferred: the file's (mup, base_width 256: the wide model is a plain GPT), mup
# based at the narrow width, and no µP at all.
VARIANTS = {"mup-base256": [], "mup-base32": ["base_width=32"], "sp": ["parametrization=sp"]}


def ensure(name: str, storage: Path, start: Callable[[], object]) -> tuple[str, str, float]:
    """Run search ``name`` with ``start`` unless ``storage`` holds it finished (resume it if it was
    interrupted). Returns (name, tracking URI, wall-clock seconds of its parent run: the search's whole
    time, resumes included)."""
    if not (storage / name / STATE_FILE).exists():
        start()
    elif _parent(storage, name)[1].data.tags.get(tags.STATE) != metrics.FINISHED_STATE:
        search.resume(name, storage)
    uri, run = _parent(storage, name)
    return name, uri, (run.info.end_time - run.info.start_time) / 1000


def run_file(name: str, file: Path, storage: Path, overrides: Sequence[str]) -> tuple[str, str, float]:
    """``ensure`` of search ``name`` from ``file`` with ``overrides``."""
    return ensure(name, storage, lambda: search.run(spaces.load(file, [*overrides, f"name={name}", f"storage={storage}"])))


def run_transfer(source: str, name: str, storage: Path, overrides: Sequence[str]) -> tuple[str, str, float]:
    """``ensure`` of ``search.transfer`` of ``source``'s TOP best configs with ``overrides``."""
    return ensure(name, storage, lambda: search.transfer(source, storage, top=TOP, overrides=overrides, new_name=name))


def _parent(storage: Path, name: str):
    """(tracking URI, parent run) of search ``name``, as its folder names them."""
    state = read_state(storage, name)
    return state["tracking_uri"], _mlflow.client_for(state["tracking_uri"]).get_run(state["parent_run_id"])


def summary(name: str, uri: str) -> dict:
    """A search's trials, best final val_loss (completed trials) and total training FLOPs."""
    runs, _ = analysis.load(name, uri)
    rows = runs.to_pylist()
    finals = [r[f"last_{metrics.VAL_LOSS}"] for r in rows
              if r["status"] == metrics.COMPLETED and math.isfinite(r.get(f"last_{metrics.VAL_LOSS}") or math.nan)]
    return {"trials": len(rows), "best": min(finals) if finals else math.nan,
            "flops": sum(r.get(f"last_{metrics.FLOPS}") or 0.0 for r in rows)}


def shift_table(runs) -> str:
    """Per parametrization and width: the best rate, its mean final val_loss ± std (n seeds); and
    the shift from the narrowest width to the widest."""
    optima = gpt_report.lr_optima(runs)
    lr = gpt_report.learning_rate(runs)
    lines = ["| parametrization | width | best max_lr | mean final val_loss | std | seeds |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in optima.to_dict("records"):
        lines.append(f"| {r['parametrization']} | {r['n_embd']} | 2^{math.log2(r[lr]):.0f} = {r[lr]:.4g} | "
                     f"{r['mean']:.4f} | {r['std']:.4f} | {r['n']} |")
    lines.append("")
    for p, s in optima.attrs["shift"].items():
        steps = abs(math.log2(s))
        lines.append(f"- {p}: the optimum moves ×{s:.3g} from width {optima.attrs['narrowest']} to "
                     f"{optima.attrs['widest']} ({steps:.0f} grid step{'s' if steps != 1 else ''})")
    return "\n".join(lines)


def transfer_table(rows: dict[str, dict], direct: str) -> str:
    base = rows[direct]
    lines = ["| method | trials | best final val_loss | vs direct | training FLOPs | vs direct | wall (s) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for method, r in rows.items():
        gap = 100 * (r["best"] - base["best"]) / base["best"]
        lines.append(f"| {method} | {r['trials']} | {r['best']:.4f} | {gap:+.2f}% | {r['flops']:.3g} | "
                     f"{r['flops'] / base['flops']:.2f} | {r['wall']:.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", type=Path, default=Path("runs-mup"), help="results root of the searches")
    p.add_argument("--tokens", type=Path, default=None,
                   help="TinyShakespeare's character token folder (default: made under --storage)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--quick", action="store_true", help="the smoke test")
    p.add_argument("--part", choices=("all", "shift", "transfer"), default="all")
    args = p.parse_args(argv)
    storage = args.storage.resolve()
    folder = args.tokens or storage / "tokens-shakespeare-char"
    if not (folder / "meta.json").exists():
        source = Path(os.environ.get("TUNELAB_DATA", ROOT.parent / "shared" / "data")) / "tinyshakespeare" / "input.txt"
        tokens.prepare(source, folder, "char")
    common = [f"data.tokens={folder.resolve()}", *(QUICK if args.quick else [])]

    shifts = transfers = None
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part in ("all", "shift"):
        shifts = shift_experiment(storage, common, args.out, args.quick)
    if args.part in ("all", "transfer"):
        transfers = transfer_experiment(storage, common, args.quick)
    done = [f"## The optimum's shift\n\n{shifts}" if shifts else "", f"## Tune narrow, train wide\n\n{transfers}" if transfers else ""]
    table = args.out / ("table-quick.md" if args.quick else "table.md")
    table.write_text(f"# bench/mup_transfer.py{' --quick' if args.quick else ''}\n\n" + "\n\n".join(d for d in done if d) + "\n")


def shift_experiment(storage: Path, common: list[str], out: Path, quick: bool) -> str:
    """The grid of spaces/gpt_mup_widths.yaml; saves its figure under ``out``; returns its table."""
    tag = "-quick" if quick else ""
    grid = run_file(f"gpt-mup-widths{tag}", WIDTHS_FILE, storage, [*common, *(QUICK_GRID if quick else [])])
    runs, _ = analysis.load(grid[0], grid[1])
    shifts = f"{runs.num_rows} trials, {grid[2] / 60:.0f} min.\n\n" + shift_table(runs)
    gpt_report.plot_lr_width(runs).save(out, formats=("png",))
    print(f"\n## The optimum's shift ({grid[0]})\n\n{shifts}\n", flush=True)
    return shifts


def transfer_experiment(storage: Path, common: list[str], quick: bool) -> str:
    """The narrow searches of ``VARIANTS``, each transferred, and the direct wide search; returns the table."""
    tag = "-quick" if quick else ""
    tpe = [*common, *(QUICK_TPE if quick else [])]
    wide = [f"n_embd={WIDE}"]
    rows: dict[str, dict] = {}
    for label, settings in VARIANTS.items():
        narrow = run_file(f"gpt-{label}-narrow{tag}", TRANSFER_FILE, storage, [*tpe, *settings])
        moved = run_transfer(narrow[0], f"gpt-{label}-narrow-to-{WIDE}{tag}", storage, wide)
        a, b = summary(*narrow[:2]), summary(*moved[:2])
        rows[f"{label}: TPE at 32 + transfer top {TOP} to {WIDE}"] = {
            "trials": a["trials"] + b["trials"], "best": b["best"], "flops": a["flops"] + b["flops"],
            "wall": narrow[2] + moved[2]}
    direct = run_file(f"gpt-direct-{WIDE}{tag}", TRANSFER_FILE, storage, [*tpe, *wide])
    direct_name = f"TPE at {WIDE} directly (mup at its base width: sp)"
    rows[direct_name] = {**summary(*direct[:2]), "wall": direct[2]}
    transfers = transfer_table(rows, direct_name)
    print(f"## Tune narrow, train wide\n\n{transfers}\n", flush=True)
    return transfers


if __name__ == "__main__":
    main()
