"""Recurrent LM benchmark: training throughput of the trainable's epoch loop against a plain PyTorch loop.

    python bench/rnn_throughput.py                        # CPU (and CUDA when present), about a minute
    python bench/rnn_throughput.py --device cuda --steps 500
    python bench/rnn_throughput.py --cell gru --hidden-size 650 --threads 0   # all cores

Both columns train the same ``RNNModel`` (Zaremba small by default: LSTM 2×200, bptt 20, batch 20,
Penn Treebank's 10k vocabulary) on the same token streams with SGD and gradient clipping. "trainable"
is ``trainables.rnn.train.run_epoch`` over a train split cut to ``--steps`` windows (per-step accuracy
and loss sums on the device, divergence checks, the Zaremba loss scaling); "plain" is the bare loop of
pytorch/examples' word_language_model (detach, forward, loss, backward, clip, step). On CUDA both run
under bf16 autocast. The ratio is trainable / plain; the last column extrapolates one full-PTB epoch
(929,589 training tokens) from the trainable's rate.

After ``--warmup`` untimed steps the two loops run ``--repeats`` times each, alternating, and the best run
of each counts (on a shared machine the slower runs measure the neighbours).
"""

from __future__ import annotations

import argparse
import dataclasses
import time


import torch
import torch.nn.functional as F

from tunelab.trainables.flops import rnn_flops_per_token
from tunelab.trainables.rnn.config import RNNConfig
from tunelab.trainables.rnn.data import PTBData, load_data
from tunelab.trainables.rnn.model import detach
from tunelab.trainables.rnn.train import Trial, run_epoch, setup

PTB_TRAIN_TOKENS = 929_589


def cut(data: PTBData, cfg: RNNConfig, steps: int) -> PTBData:
    """The corpus with its train split cut to exactly ``steps`` bptt windows (and small eval splits)."""
    n = (steps * cfg.bptt + 1) * cfg.batch_size  # batchify keeps T = steps·bptt + 1 rows
    return dataclasses.replace(data, train=data.train[:n], valid=data.valid[:1000], test=data.test[:1000])


def time_trainable(trial: Trial) -> float:
    """Seconds of one ``run_epoch`` over the trial's train streams (device synchronised)."""
    _sync(trial.device)
    t0 = time.perf_counter()
    run_epoch(trial, trial.cfg.lr)  # ends with .item(): synchronised
    return time.perf_counter() - t0


def plain_loop(trial: Trial, steps: int) -> float:
    """Seconds of ``steps`` bare training steps over the same model and streams."""
    cfg, model, data, opt = trial.cfg, trial.model, trial.train, trial.optimizer
    model.train()
    hidden = model.init_hidden(cfg.batch_size)
    _sync(trial.device)
    t0 = time.perf_counter()
    for k in range(steps):
        i = k * cfg.bptt
        x, y = data[i:i + cfg.bptt], data[i + 1:i + 1 + cfg.bptt]
        hidden = detach(hidden)
        with trial.autocast():
            logits, hidden = model(x, hidden)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(trial.device)
    return time.perf_counter() - t0


def bench(cfg: RNNConfig, data: PTBData, steps: int, warmup: int, repeats: int) -> dict[str, float]:
    """Best tokens/s of the trainable's loop and of the plain loop over ``repeats`` alternating runs.

    Both loops train one model (after a warm-up), alternating, so that load from other processes
    falls on both alike; the best of the repeats is the least disturbed.
    """
    tokens = steps * cfg.bptt * cfg.batch_size
    trial = setup(cfg, cut(data, cfg, steps))
    plain_loop(trial, warmup)  # kernels chosen, allocator and caches warm for both loops
    best = {"trainable": 0.0, "plain": 0.0}
    for _ in range(repeats):
        best["trainable"] = max(best["trainable"], tokens / time_trainable(trial))
        best["plain"] = max(best["plain"], tokens / plain_loop(trial, steps))
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: CPU, and CUDA too when available")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default 15 on CPU, 300 on CUDA)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each loop; the best counts")
    parser.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    parser.add_argument("--hidden-size", type=int, default=200)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--bptt", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=20)
    # One thread, as a trial with resources {cpu: 1} gets (Ray sets OMP_NUM_THREADS from it).
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--data-dir", default=None,
                        help="folder with ptb.*.txt (default: $TUNELAB_DATA/ptb or the cache)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = ["cpu", "cuda"] if args.device == "auto" else [args.device]
    if args.device == "auto" and not torch.cuda.is_available():
        devices = ["cpu"]
    data = load_data({"corpus": "ptb", "dir": args.data_dir})
    print(f"{args.cell} {args.num_layers}x{args.hidden_size}, bptt {args.bptt}, batch {args.batch_size}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    header = (f"{'device':<8} {'steps':>6} {'trainable tok/s':>16} {'plain tok/s':>12} {'ratio':>6} "
              f"{'GFLOP/s':>8} {'PTB epoch s':>12}")
    print(header)
    print("-" * len(header))
    for device in devices:
        cfg = RNNConfig(cell=args.cell, hidden_size=args.hidden_size, num_layers=args.num_layers, bptt=args.bptt,
                        batch_size=args.batch_size, device=device)
        steps = args.steps or (15 if device == "cpu" else 300)
        r = bench(cfg, data, steps, args.warmup, args.repeats)
        gflops = rnn_flops_per_token(cfg, data.vocab_size) * r["trainable"] / 1e9
        name = device + (" bf16" if device == "cuda" else "")
        print(f"{name:<8} {steps:>6} {r['trainable']:>16,.0f} {r['plain']:>12,.0f} "
              f"{r['trainable'] / r['plain']:>6.2f} {gflops:>8.1f} {PTB_TRAIN_TOKENS / r['trainable']:>12.0f}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
