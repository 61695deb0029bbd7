"""What spaces/vit_cifar10.yaml costs: one CIFAR-10 epoch of each of its seven trials, measured on a slice
and extrapolated.

    python bench/vit_cost.py                        # CPU: about 3 minutes on 2 cores
    python bench/vit_cost.py --device cuda --steps 50

For each configuration of the search file (its ``points_to_evaluate``, in order) the trainable's own
epoch (``trainables.vit.train.run_epoch``: batches gathered on the device, crop and flip, normalisation,
forward, backward, optimizer step; bf16 autocast on CUDA) runs ``--steps`` batches of 128 images on
random CIFAR-shaped data (the cost does not depend on the pixels), after one warm-up batch, and an
evaluation runs over ``--eval`` validation images. A full epoch is 45,000 training images (352 batches)
and 15,000 evaluated images at most (5,000 validation every epoch, 10,000 test once at the end, counted
here in every epoch to stay on the safe side); a trial is 10 epochs. Threads: torch's default (all cores
of the process) unless ``--threads``.
"""

from __future__ import annotations

import argparse
import math
import time


import numpy as np
import torch

from tunelab import spaces
from tunelab.trainables.vit import train as vit_train
from tunelab.trainables.vit.config import ViTConfig, param_count
from tunelab.trainables.vit.data import ImageData

TRAIN, EVAL = 45_000, 15_000


def synthetic(n_train: int, n_eval: int) -> ImageData:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n_train + n_eval, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, n_train + n_eval).astype(np.int64)
    return ImageData("cifar10", x[:n_train], y[:n_train], x[n_train:], y[n_train:], x[n_train:], y[n_train:],
                     tuple(str(i) for i in range(10)), (125.0,) * 3, (63.0,) * 3, pad=4, flip=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=5, help="timed training batches per configuration")
    p.add_argument("--eval", type=int, default=1_000, help="timed evaluation images per configuration")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    search = spaces.load(spaces.CATALOGUE / "vit_cifar10.yaml")
    points = search.spec.points_to_evaluate
    batch = search.base_config["batch_size"]
    data = synthetic(batch * (args.steps + 1), args.eval)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {args.steps} batches of {batch} "
          f"and {args.eval} evaluated images per configuration")
    head = f"| {'configuration':<24} | {'params':>9} | {'GFLOP/img':>9} | {'s/batch':>7} | {'eval s/1k img':>13} | " \
           f"{'s/epoch':>7} | {'10 epochs':>9} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    total = 0.0
    for point in points:
        cfg = ViTConfig(**{**search.base_config, **point, "device": args.device, "epochs": 1})
        trial = vit_train.setup(cfg, data)
        trial.n_train = batch  # warm-up: one batch
        vit_train.run_epoch(trial, 1)
        trial.n_train = batch * args.steps
        _sync(args.device)
        t0 = time.perf_counter()
        vit_train.run_epoch(trial, 2)
        _sync(args.device)
        per_batch = (time.perf_counter() - t0) / args.steps
        t0 = time.perf_counter()
        vit_train.evaluate(trial, *trial.val)
        _sync(args.device)
        per_eval_image = (time.perf_counter() - t0) / args.eval
        epoch = math.ceil(TRAIN / batch) * per_batch + EVAL * per_eval_image
        total += 10 * epoch
        name = f"L{cfg.n_layer} {cfg.optimizer} {cfg.norm}-norm"
        print(f"| {name:<24} | {param_count(cfg):>9,} | {cfg.flops_per_image / 1e9:>9.3f} | {per_batch:>7.3f} | "
              f"{1000 * per_eval_image:>13.2f} | {epoch:>7.0f} | {_hours(10 * epoch):>9} |")
    print(f"\nthe seven trials, one after another: {_hours(total)} ({total:,.0f} s)")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


if __name__ == "__main__":
    main()
