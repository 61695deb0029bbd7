"""GPT benchmarks: training throughput of the trainable's step against a plain PyTorch loop, and the
accuracy of ``gpt_flops_per_token`` against torch's FlopCounterMode.

    python bench/gpt_throughput.py                      # CPU, about half a minute on 2 cores
    python bench/gpt_throughput.py --device cuda --peak-flops 989e12 --compile

Table (a): tokens/s of ``trainables.gpt.train.train_step`` (memory-mapped windows, per-step
accuracy, learning-rate update, clipping) and of a bare loop over the same model (random batches
already on the device, forward, backward, clip, step). On CUDA both run under bf16 autocast with fused
AdamW, and MFU = flops_per_token × tokens/s / peak, the peak being ``--peak-flops`` (the accelerator's
dense bf16 FLOP/s from its datasheet; no default, so no hardware constant hides in here).

Table (b): our training FLOPs per token against FlopCounterMode over one forward + backward, for six
shapes with seq_len 32..512 (attention on the math backend, which FlopCounterMode can see).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tunelab.trainables.flops import gpt_flops_per_token
from tunelab.trainables.gpt import tokens
from tunelab.trainables.gpt.config import GPTConfig, ModelConfig
from tunelab.trainables.gpt.model import GPT
from tunelab.trainables.gpt.train import make_optimizer, setup, train_step

# Throughput shapes: (name, model and batch fields). CPU ones fit a laptop core or two.
CPU_SHAPES = [
    ("char L4 d128 s128", dict(vocab_size=65, n_positions=128, n_layer=4, n_head=4, n_embd=128, batch_size=16)),
    ("gpt2-vocab L4 d256 s64", dict(vocab_size=50257, n_positions=64, n_layer=4, n_head=8, n_embd=256, batch_size=8)),
]
CUDA_SHAPES = [
    ("seed003 L8 d256 s64", dict(vocab_size=50257, n_positions=64, n_layer=8, n_head=8, n_embd=256, batch_size=256)),
    ("gpt2-small s1024", dict(vocab_size=50304, n_positions=1024, n_layer=12, n_head=12, n_embd=768, batch_size=16)),
]


def _flop_shapes() -> list[dict]:
    """The FLOP-accuracy shapes: the six that tests/trainables/test_flops_gpt.py checks exactly."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tests" / "trainables" / "test_flops_gpt.py"
    spec = importlib.util.spec_from_file_location("test_flops_gpt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SHAPES


def synthetic_tokens(folder: Path, vocab_size: int, n: int = 1 << 20) -> tokens.TokenData:
    """A token folder of uniform random ids (throughput does not depend on the text).

    Args:
        folder: where to write it.
        vocab_size: ids are in [0, vocab_size).
        n: tokens per split.
    """
    folder.mkdir(parents=True, exist_ok=True)
    dtype = "uint16" if vocab_size <= 2**16 else "uint32"
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        rng.integers(0, vocab_size, n).astype(dtype).tofile(folder / f"{split}.bin")
    meta = {"format": tokens.FORMAT, "tokenizer": "synthetic", "vocab_size": vocab_size, "dtype": dtype,
            "splits": {"train": n, "val": n}, "source": "random"}
    (folder / tokens.META).write_text(json.dumps(meta))
    return tokens.TokenData.from_folder(folder)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ours_step(cfg: GPTConfig, data: tokens.TokenData):
    """One optimizer step of the trainable's own code path (setup() + train_step()), as a closure.

    Args:
        cfg: the config (device, shape, batch).
        data: the token folder.
    """
    trial = setup(cfg, data)
    return lambda: train_step(trial, 1e-4)[0]


def plain_step(cfg: GPTConfig):
    """One step of a bare loop (nanoGPT's train.py without its extras) over the same model, as a closure.

    Args:
        cfg: as for ``ours_step``.
    """
    device = torch.device("cuda" if cfg.device == "cuda" else "cpu")
    torch.manual_seed(cfg.seed)
    model = GPT(cfg).to(device)
    fwd = torch.compile(model) if cfg.compile else model
    opt = make_optimizer(cfg, model, device)
    x = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.context + 1), device=device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            _, loss = fwd(x[:, :-1], x[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def tokens_per_s(step, tokens_per_step: int, steps: int, device: torch.device) -> float:
    """Tokens/s over ``steps`` calls of ``step``, synchronising the device before and after."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.item()
    _sync(device)
    return steps * tokens_per_step / (time.perf_counter() - t0)


def throughput_table(device: str, warmup: int, steps: int, rounds: int, peak_flops: float | None,
                     compile_: bool) -> str:
    shapes = CUDA_SHAPES if device == "cuda" else CPU_SHAPES
    head = "| shape | tokens/step | flops/token | ours tok/s | plain tok/s | ours/plain |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if peak_flops:
        head += " MFU ours | MFU plain |"
        rule += "---:|---:|"
    rows = [f"(a) training throughput, device={device}, compile={compile_}, {warmup} warm-up steps, "
            f"best of {rounds} interleaved rounds of {steps} timed steps, "
            f"torch threads={torch.get_num_threads()}", "", head, rule]
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape in shapes:
            cfg = GPTConfig(**shape, flop_budget=None, max_steps=10**6, eval_interval=1, device=device,
                            compile=compile_, dropout=0.0)
            data = synthetic_tokens(Path(tmp) / name.replace(" ", "_"), cfg.vocab_size)
            dev = torch.device(device)
            loops = {"ours": ours_step(cfg, data), "plain": plain_step(cfg)}
            for step in loops.values():
                for _ in range(warmup):
                    step()
            # Interleaved rounds, best of each: the two loops see the same machine load.
            best = {k: 0.0 for k in loops}
            for _ in range(rounds):
                for k, step in loops.items():
                    best[k] = max(best[k], tokens_per_s(step, cfg.tokens_per_step, steps, dev))
            ours, plain = best["ours"], best["plain"]
            fpt = cfg.flops_per_token
            row = f"| {name} | {cfg.tokens_per_step:,} | {fpt:.3e} | {ours:,.0f} | {plain:,.0f} | {ours / plain:.3f} |"
            if peak_flops:
                row += f" {fpt * ours / peak_flops:.1%} | {fpt * plain / peak_flops:.1%} |"
            rows.append(row)
    return "\n".join(rows)


def flop_table(batch: int = 2) -> str:
    rows = ["(b) training FLOPs per token: gpt_flops_per_token vs FlopCounterMode (forward + backward)", "",
            "| n_layer | n_head | n_embd | seq_len | vocab | variant | ours | FlopCounterMode | error |",
            "|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for shape in _flop_shapes():
        mc = ModelConfig(**shape)
        torch.manual_seed(0)
        model = GPT(mc)
        x = torch.randint(0, mc.vocab_size, (batch, mc.n_positions))
        counter = FlopCounterMode(display=False)
        with sdpa_kernel(SDPBackend.MATH), counter:  # the fused CPU kernel counts as zero FLOPs
            _, loss = model(x, x)
            loss.backward()
        counted = counter.get_total_flops() / (batch * mc.n_positions)
        ours = gpt_flops_per_token(mc)
        variant = ",".join(f"{k}={v}" for k, v in shape.items() if k in ("bias", "tie_embeddings", "norm", "mlp_ratio")) or "-"
        rows.append(f"| {mc.n_layer} | {mc.n_head} | {mc.n_embd} | {mc.n_positions} | {mc.vocab_size} | {variant} "
                    f"| {ours:,} | {counted:,.0f} | {(ours - counted) / counted:+.3%} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=None, help="timed steps per round (default: cpu 3, cuda 50)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: cpu 2, cuda 10)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds; the best is shown")
    p.add_argument("--peak-flops", type=float, default=None,
                   help="accelerator peak dense bf16 FLOP/s for MFU, e.g. 989e12 for an H100 SXM")
    p.add_argument("--compile", action="store_true", help="torch.compile the model in both loops")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-flops", action="store_true")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    steps = args.steps or (50 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 2)
    if not args.skip_throughput:
        print(throughput_table(args.device, warmup, steps, args.rounds, args.peak_flops, args.compile))
        print()
    if not args.skip_flops:
        print(flop_table())


if __name__ == "__main__":
    main()
