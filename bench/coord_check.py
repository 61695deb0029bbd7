"""Coordinate check of the GPT's parametrizations: each layer's mean |activation| against width, sp and mup.

    python bench/coord_check.py                                  # widths 64..1024: under a minute on 2 CPU cores
    python bench/coord_check.py --widths 32,64,128,256 --steps 3 --out /tmp/coord

For each width (``--widths``; n_embd, with ``--heads`` heads, so the head width grows with it) and each
parametrization, a GPT of ``--layers`` blocks, vocabulary 256 and 16 positions trains ``--steps`` AdamW
steps at the constant learning rate ``--lr`` on one fixed batch of 8 random sequences, from the same
seed (``trainables.gpt.coord_check.sizes``: the trainable's own model and optimizer, no clipping, no
schedule); each size is the mean over ``--seeds`` seeds. Under mup, ``base_width`` is the smallest width, where the two parametrizations coincide.
Recorded: the mean |coordinate| of each layer's output (embedding sum, each block's attention and MLP
branches and residual stream, logits) at init and after the last step.

Writes ``coord_check.png``, ``coord_check.svg`` (rows: sp, mup; columns: init, after the last step;
log-log axes) and ``table.md`` under ``--out``, and prints the table: per layer, the slope of log size
against log width (``coord_check.slope``). Under the standard parametrization the trained sizes grow
with width (Adam moves each coordinate of a d-wide matrix product by Θ(d)); under µP they stay flat
(Tensor Programs V, Yang et al. 2022, Figure 5).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from tunelab.trainables.gpt import coord_check

PARAMETRIZATIONS = ("sp", "mup")
OUT = Path(__file__).resolve().parent / "results" / "coord_check"


def measure(widths: Sequence[int], steps: int, lr: float, layers: int, heads: int, seeds: int) -> dict[str, list]:
    """parametrization -> ``coord_check.sizes`` result for these widths, each size the mean over seeds
    0 .. seeds - 1 (as ``mup.coord_check`` averages its ``nseeds``)."""
    config = {**coord_check.SMALL, "n_layer": layers, "n_head": heads, "base_width": min(widths),
              "optimizer": "adamw", "max_lr": lr, "min_lr": 0.0}
    result = {}
    for p in PARAMETRIZATIONS:
        runs = [coord_check.sizes({**config, "parametrization": p, "seed": seed}, widths, steps) for seed in range(seeds)]
        result[p] = [[{name: sum(run[w][t][name] for run in runs) / seeds for name in runs[0][w][t]}
                      for t in range(steps + 1)] for w in range(len(widths))]
    return result


def table(widths: Sequence[int], result: dict[str, list], steps: int) -> str:
    """Slopes of log size against log width, per layer: at init and after the last step."""
    names = list(result["sp"][0][0])
    lines = [f"| layer | sp init | sp step {steps} | mup init | mup step {steps} |", "|---|---:|---:|---:|---:|"]
    for name in names:
        cells = [coord_check.slope(widths, [per_width[t][name] for per_width in result[p]])
                 for p in PARAMETRIZATIONS for t in (0, steps)]
        lines.append(f"| {name} | " + " | ".join(f"{c:+.2f}" for c in cells) + " |")
    return "\n".join(lines)


def plot(widths: Sequence[int], result: dict[str, list], steps: int, out: Path) -> list[Path]:
    """One panel per (parametrization, time): each layer's size against width, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    names = list(result["sp"][0][0])
    fig = Figure(figsize=(9, 6.5), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True, sharey="col")
    for row, p in enumerate(PARAMETRIZATIONS):
        for col, t in enumerate((0, steps)):
            ax = axes[row, col]
            for i, name in enumerate(names):
                ys = [per_width[t][name] for per_width in result[p]]
                ax.plot(widths, ys, marker="o", ms=3, color=f"C{i % 10}", label=name,
                        ls="--" if name.startswith(("attn", "mlp")) else "-")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{p}, {'init' if t == 0 else f'after {t} AdamW steps'}", fontsize=10)
            ax.set_xlabel("width (n_embd)")
            ax.set_ylabel("mean |activation|")
    axes[0, 1].legend(fontsize=7, loc="upper left")
    paths = [out / "coord_check.png", out / "coord_check.svg"]
    for path in paths:
        fig.savefig(path, dpi=120)
    return paths


def main(argv: Sequence[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="64,128,256,512,1024", help="comma-separated n_embd values")
    p.add_argument("--steps", type=int, default=5, help="AdamW steps per width")
    p.add_argument("--lr", type=float, default=1e-2, help="the constant learning rate (mup: of the vector-like weights)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4, help="attention heads at every width")
    p.add_argument("--seeds", type=int, default=3, help="sizes are means over seeds 0..N-1")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=str(OUT), help="folder for the figure (PNG, SVG) and table.md")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    widths = sorted(int(w) for w in args.widths.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    result = measure(widths, args.steps, args.lr, args.layers, args.heads, args.seeds)
    elapsed = time.perf_counter() - start
    head = (f"## Coordinate check: slope of log mean |activation| against log width\n\n"
            f"widths {', '.join(map(str, widths))} (base_width {widths[0]}), {args.layers} layers, {args.heads} heads, "
            f"{args.steps} AdamW steps at lr {args.lr:g}, mean over {args.seeds} seeds; {os.cpu_count()} CPUs, "
            f"torch threads {torch.get_num_threads()}, {elapsed:.0f} s\n")
    text = head + "\n" + table(widths, result, args.steps) + "\n"
    (out / "table.md").write_text(text)
    paths = plot(widths, result, args.steps, out)
    print(text)
    print("wrote " + ", ".join(str(path) for path in paths))
    return text


if __name__ == "__main__":
    main()
