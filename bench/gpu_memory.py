"""Accelerator memory of real trials: what a trial reports against what the device allocated, and the
GPT's ``memory_estimate_mb`` (what the ``memory_mb`` and ``gpu_memory`` constraints check) against both.

    python bench/gpu_memory.py                 # CUDA; a few seconds per row
    python bench/gpu_memory.py --only gpt      # one family

Each row runs one short trial of a family through the trial skeleton exactly as Ray would
(``_skeleton.run`` with the family's ``Trial``), collecting its reports instead of sending them:

- reported: the largest ``mem_peak_mb`` over the trial's reports (the skeleton resets the peak before
  each interval, so this is the interval peak: training and its evaluation);
- allocated: ``torch.cuda.max_memory_allocated`` over the whole trial (reset before it starts), which
  also covers building the model and the optimizer;
- reserved: ``torch.cuda.max_memory_reserved``, what the caching allocator took from the device (what
  another process on the same GPU sees as used, short of the CUDA context);
- estimate (GPT only): ``memory_estimate_mb``, meant as an upper bound of allocated; a ratio below 1
  under-counts and would let the constraint pass a trial that does not fit.

Data: PTB and digits from ``$TUNELAB_DATA`` (or the cache); GPT rows read uniform random tokens (memory
does not depend on the text); arithmetic makes its own equations.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path


import torch

from tunelab import trainables
from tunelab.trainables import _skeleton, metrics as M
from tunelab.trainables.gpt.config import memory_estimate_mb

from bench.gpt_throughput import synthetic_tokens

GPT_ROWS = [  # (name, config): the tiny search's shape, seed 003's, GPT-2 small at 1024 tokens
    ("gpt char L2 d64 s64 b16", dict(vocab_size=65, n_positions=64, n_layer=2, n_head=4, n_embd=64, batch_size=16)),
    ("gpt seed003 L8 d256 s64 b256", dict(vocab_size=50257, n_positions=64, n_layer=8, n_head=8, n_embd=256, batch_size=256)),
    ("gpt2-small s1024 b16", dict(vocab_size=50304, n_positions=1024, n_layer=12, n_head=12, n_embd=768, batch_size=16)),
    ("gpt2-small s1024 b16 sgd", dict(vocab_size=50304, n_positions=1024, n_layer=12, n_head=12, n_embd=768, batch_size=16,
                                      optimizer="sgd")),
]
OTHER_ROWS = [  # (name, family, config, data section)
    ("rnn zaremba small lstm", "rnn", dict(cell="lstm", hidden_size=200, num_layers=2, bptt=20, batch_size=20, epochs=1,
                                           train_fraction=0.05, eval_fraction=0.1), {"corpus": "ptb"}),
    ("rnn zaremba medium gru", "rnn", dict(cell="gru", hidden_size=650, num_layers=2, bptt=35, batch_size=20, epochs=1,
                                           dropout=0.5, train_fraction=0.05, eval_fraction=0.1), {"corpus": "ptb"}),
    ("vit digits L2 d64", "vit", dict(image_size=8, channels=1, patch_size=2, n_embd=64, n_head=4, n_layer=2, epochs=2,
                                      batch_size=32), {"corpus": "digits"}),
    ("arith gpt L2 d128", "arith", dict(model="gpt", steps=200, eval_every=100), None),
    ("arith lstm L2 d128", "arith", dict(model="lstm", steps=200, eval_every=100), None),
]


def measure(family: str, config: dict, data) -> dict[str, float]:
    """Run one trial of ``family`` on CUDA; its reported and allocated peaks in MB."""
    entry = trainables.REGISTRY[family]
    cfg = entry.parse({**config, "device": "cuda"})
    module = importlib.import_module(entry.train_module)
    reports: list[dict] = []
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    _skeleton.run(module.Trial(cfg, data), lambda metrics, state=None: reports.append(metrics), lambda: None)
    if any(r.get(M.OOM) for r in reports):
        raise RuntimeError(f"{family} {config}: out of memory")
    return {
        "reported": max(r[M.MEM_PEAK_MB] for r in reports),
        "allocated": torch.cuda.max_memory_allocated() / _skeleton.MB,
        "reserved": torch.cuda.max_memory_reserved() / _skeleton.MB,
        "estimate": memory_estimate_mb(cfg) if family == "gpt" else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=["gpt", "rnn", "vit", "arith"], default=["gpt", "rnn", "vit", "arith"])
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_memory: no CUDA device visible", file=sys.stderr)
        return 2
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if "gpt" in args.only:
            for name, shape in GPT_ROWS:
                folder = synthetic_tokens(Path(tmp) / f"v{shape['vocab_size']}", shape["vocab_size"])
                config = {**shape, "flop_budget": None, "max_steps": 10, "eval_interval": 5, "eval_iters": 2}
                rows.append((name, measure("gpt", config, folder)))
        for name, family, config, section in OTHER_ROWS:
            if family in args.only:
                data = trainables.REGISTRY[family].load_data(section) if section else None
                rows.append((name, measure(family, config, data)))
    print(f"\n{'trial':32} {'reported MB':>12} {'allocated MB':>13} {'reserved MB':>12} {'estimate MB':>12} {'est/alloc':>10}")
    for name, r in rows:
        ratio = r["estimate"] / r["allocated"]
        print(f"{name:32} {r['reported']:12.1f} {r['allocated']:13.1f} {r['reserved']:12.1f} "
              f"{r['estimate']:12.1f} {ratio:10.2f}")
    low = [name for name, r in rows if r["estimate"] < r["allocated"]]
    if low:
        print(f"\nUNDER-COUNTED by memory_estimate_mb: {', '.join(low)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
