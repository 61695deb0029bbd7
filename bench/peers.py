"""Our train step against the peers themselves: nanoGPT and pytorch/examples' word_language_model.

    python bench/peers.py                     # 2 threads, 3 rounds: about 6 minutes on 2 cores
    python bench/peers.py --rounds 5 --only gpt-tiny gpt-char

Each peer is taken at a pinned commit (``PEERS``) from a local git directory (``--nanogpt``,
``--examples``; by default the mirror this project's tools fetch into, else a blobless clone from
GitHub) into a temporary folder with ``git archive`` and launched as it is, in a subprocess, through
its own script and command-line overrides: CPU, fp32, no compile, no checkpointing worth the name,
one evaluation at most. Nothing of theirs is imported here; we read the timings they print:

- nanoGPT ``train.py`` prints ``iter N: loss L, time Xms`` for every iteration (``--log_interval=1``):
  the wall time from one iteration's end to the next's, batch fetch and ``loss.item()`` included.
  Its data is its own ``data/shakespeare_char/prepare.py`` run on TinyShakespeare ($TUNELAB_DATA).
- word_language_model ``main.py`` prints ``ms/batch`` averaged over every ``--log-interval`` batches.
  Its data folder is Penn Treebank ($TUNELAB_DATA/ptb) with train.txt cut to the batches timed and a
  valid.txt listing the whole training vocabulary once (so its dictionary has PTB's 10,000 words
  and its softmax the full width) ahead of the first 50 validation lines.

Our side runs in this process, at the same shapes and threads: the GPT trainable's step
(``Trial.train_interval`` one step at a time: window gather, learning-rate update, forward, backward,
clip, AdamW, accuracy) timed per step like nanoGPT's; the RNN trainable's ``run_epoch`` over a train
stream of exactly ``log-interval`` windows, timed per call like word_language_model's windows. Steps
before ``--warmup`` (nanoGPT's iteration 0 holds its evaluation) and the first window are left out.

Rounds interleave peer and ours (the order alternating), each side's figure is the median step time
of its run, and the table shows the medians over rounds and their ratio, ours/peer in tokens/s
(> 1: ours is faster); the per-round ratios beside it show how noisy the machine was.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

# The peers, pinned: (GitHub repository, commit, files we take).
PEERS = {
    "nanoGPT": ("karpathy/nanoGPT", "3adf61e154c3fe3fca428ad6bc3818b27a3b8291",
                ["train.py", "model.py", "configurator.py", "config/train_shakespeare_char.py",
                 "data/shakespeare_char/prepare.py"]),
    "word_language_model": ("pytorch/examples", "77f55b912142e11fcfdf5b530231fb9c52f181e8",
                            ["word_language_model/main.py", "word_language_model/data.py",
                             "word_language_model/model.py"]),
}
MIRROR = Path("/work/.mirror")  # where this project's fetch tool puts git directories


@dataclasses.dataclass(frozen=True)
class GPTCase:
    """A nanoGPT shape. ``dropout`` and the rest are what nanoGPT runs there (bias off, vocab 65)."""

    name: str
    n_layer: int
    n_head: int
    n_embd: int
    block: int
    batch: int
    dropout: float
    beta2: float = 0.99  # config/train_shakespeare_char.py
    steps: int = 16

    @property
    def tokens(self) -> int:
        return self.block * self.batch

    @property
    def shape(self) -> str:
        return f"L{self.n_layer} d{self.n_embd} h{self.n_head} T{self.block} B{self.batch} drop {self.dropout}"


@dataclasses.dataclass(frozen=True)
class RNNCase:
    """word_language_model at Zaremba small: LSTM 2×200, bptt 20, batch 20, no dropout, untied
    (``spaces/ptb_zaremba.yaml`` and ``RNNConfig``'s defaults)."""

    name: str = "rnn-zaremba"
    hidden: int = 200
    layers: int = 2
    bptt: int = 20
    batch: int = 20
    window: int = 25  # batches per timed window (word_language_model's --log-interval)
    windows: int = 3  # timed windows per run, after one warm-up window

    @property
    def tokens(self) -> int:
        return self.bptt * self.batch

    @property
    def shape(self) -> str:
        return f"LSTM {self.layers}x{self.hidden} bptt {self.bptt} B{self.batch} drop 0 untied"


CASES: dict[str, GPTCase | RNNCase] = {
    # nanoGPT README's CPU example ("baby GPT"), at batch 32.
    "gpt-tiny": GPTCase("gpt-tiny", 4, 4, 128, 64, 32, dropout=0.0, steps=20),
    # config/train_shakespeare_char.py, at batch 12.
    "gpt-char": GPTCase("gpt-char", 6, 6, 384, 256, 12, dropout=0.2, steps=8),
    "rnn-zaremba": RNNCase(),
}


# --- the peers, as they are -----------------------------------------------------------------------

def checkout(peer: str, git_dir: Path | None, dest: Path) -> str:
    """Extract a peer's pinned files into ``dest``; returns the commit.

    Args:
        peer: a key of ``PEERS``.
        git_dir: a git directory holding the commit; None clones GitHub (blobless) into ``dest``/.git-src.
        dest: the folder to fill.
    """
    repo, commit, files = PEERS[peer]
    if git_dir is None:
        git_dir = dest / ".git-src"
        subprocess.run(["git", "clone", "--bare", "--filter=blob:none", f"https://github.com/{repo}", str(git_dir)],
                       check=True, capture_output=True)
    archive = subprocess.run(["git", f"--git-dir={git_dir}", "archive", commit, *files],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return commit


def peer_env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run_peer(cmd: list[str], cwd: Path, threads: int) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=peer_env(threads), capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out.stdout


def prepare_nanogpt(root: Path, data: Path, threads: int) -> None:
    """nanoGPT's own character data: its prepare.py on TinyShakespeare (no download: input.txt is there)."""
    shutil.copy(data / "tinyshakespeare" / "input.txt", root / "data" / "shakespeare_char" / "input.txt")
    run_peer([sys.executable, "data/shakespeare_char/prepare.py"], root, threads)


def nanogpt_step_s(root: Path, case: GPTCase, warmup: int, threads: int) -> float:
    """Median seconds per iteration that nanoGPT's train.py prints, after ``warmup`` iterations."""
    cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", "--device=cpu", "--compile=False",
           "--dtype=float32", f"--out_dir={root / 'out'}", "--eval_interval=1000000", "--eval_iters=1",
           "--log_interval=1", f"--max_iters={warmup + case.steps - 1}", f"--n_layer={case.n_layer}",
           f"--n_head={case.n_head}", f"--n_embd={case.n_embd}", f"--block_size={case.block}",
           f"--batch_size={case.batch}", f"--dropout={case.dropout}", f"--beta2={case.beta2}"]
    out = run_peer(cmd, root, threads)
    times = [float(ms) / 1e3 for it, ms in re.findall(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms", out, re.M)
             if int(it) >= warmup]
    if len(times) != case.steps:
        raise RuntimeError(f"expected {case.steps} timed nanoGPT iterations, parsed {len(times)}:\n{out[-2000:]}")
    return statistics.median(times)


def prepare_wlm(root: Path, data: Path, case: RNNCase) -> Path:
    """A word_language_model data folder: PTB, train cut to the batches one run times (plus slack)."""
    ptb = data / "ptb"
    folder = root / "ptb-cut"
    folder.mkdir()
    need = ((case.windows + 1) * case.window * case.bptt + 2) * case.batch
    lines, n = [], 0
    for line in (ptb / "ptb.train.txt").read_text().splitlines(keepends=True):
        lines.append(line)
        n += len(line.split()) + 1  # + <eos>
        if n >= need + case.bptt * case.batch:
            break
    (folder / "train.txt").write_text("".join(lines))
    train_words = sorted({w for line in (ptb / "ptb.train.txt").read_text().splitlines() for w in line.split()})
    valid = (ptb / "ptb.valid.txt").read_text().splitlines(keepends=True)[:50]
    (folder / "valid.txt").write_text(" ".join(train_words) + "\n" + "".join(valid))
    (folder / "test.txt").write_text("".join((ptb / "ptb.test.txt").read_text().splitlines(keepends=True)[:50]))
    return folder


def wlm_step_s(root: Path, folder: Path, case: RNNCase, threads: int) -> float:
    """Median seconds per batch over word_language_model's printed windows, the first left out."""
    cmd = [sys.executable, "main.py", f"--data={folder}", "--model=LSTM", f"--emsize={case.hidden}",
           f"--nhid={case.hidden}", f"--nlayers={case.layers}", f"--bptt={case.bptt}",
           f"--batch_size={case.batch}", "--dropout=0", "--epochs=1", f"--log-interval={case.window}",
           f"--save={root / 'model.pt'}"]
    out = run_peer(cmd, root / "word_language_model", threads)
    ms = [float(x) for x in re.findall(r"ms/batch\s+([\d.]+)", out)][1:case.windows + 1]
    if len(ms) != case.windows:
        raise RuntimeError(f"expected {case.windows} timed word_language_model windows, parsed {len(ms)}:\n{out[-2000:]}")
    return statistics.median(ms) / 1e3


# --- ours -----------------------------------------------------------------------------------------

def ours_gpt(case: GPTCase, token_folder: Path) -> Callable[[int], float]:
    """A function of ``warmup`` giving the median seconds per step of our GPT trainable's step."""
    from trainables.gpt.config import GPTConfig
    from trainables.gpt.tokens import TokenData
    from trainables.gpt.train import setup

    cfg = GPTConfig(vocab_size=65, n_positions=case.block, n_layer=case.n_layer, n_head=case.n_head,
                    n_embd=case.n_embd, dropout=case.dropout, bias=False, batch_size=case.batch,
                    flop_budget=None, max_steps=10**6, warmup_steps=100, beta2=case.beta2, device="cpu")
    data = TokenData.from_folder(token_folder)

    def measure(warmup: int) -> float:
        trial = setup(cfg, data)
        times = []
        for i in range(warmup + case.steps):
            t0 = time.perf_counter()
            trial.train_interval(trial.step + 1)  # ends with .item(): the step is done
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    return measure


def ours_rnn(case: RNNCase) -> Callable[[], float]:
    """A function giving the median seconds per batch of our RNN trainable's ``run_epoch`` windows."""
    from trainables.rnn.config import RNNConfig
    from trainables.rnn.data import load_data
    from trainables.rnn.train import run_epoch, setup

    cfg = RNNConfig(hidden_size=case.hidden, num_layers=case.layers, bptt=case.bptt, batch_size=case.batch,
                    dropout=0.0, device="cpu")
    full = load_data({"corpus": "ptb", "dir": None})
    n = (case.window * case.bptt + 1) * case.batch  # batchify keeps exactly `window` bptt windows
    data = dataclasses.replace(full, train=full.train[:n], valid=full.valid[:2000], test=full.test[:2000])

    def measure() -> float:
        trial = setup(cfg, data)
        times = []
        for i in range(case.windows + 1):
            t0 = time.perf_counter()
            run_epoch(trial, cfg.lr)  # ends with .item()
            if i:
                times.append((time.perf_counter() - t0) / case.window)
        return statistics.median(times)

    return measure


# --- our side in its own process, from this checkout or a baseline's ---------------------------------

def measure_ours(name: str, tokens: Path | None, warmup: int) -> float:
    """Median seconds per step of our trainable at ``CASES[name]`` (the ``--measure`` mode)."""
    case = CASES[name]
    if isinstance(case, GPTCase):
        return ours_gpt(case, tokens)(warmup)
    return ours_rnn(case)()


def ours_process(root: Path, name: str, tokens: Path | None, warmup: int, threads: int) -> float:
    """``measure_ours`` run by ``root``'s own trainables in a subprocess (as the peers run)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", name, "--root", str(root),
           f"--warmup={warmup}", f"--threads={threads}"] + ([f"--tokens={tokens}"] if tokens else [])
    out = run_peer(cmd, root, threads)
    return float(out.split()[-1])


def baseline_checkout(rev: str, dest: Path) -> str:
    """This repository's ``rev`` (its trainables) extracted into ``dest``; returns the commit."""
    here = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(here), "rev-parse", rev], check=True, capture_output=True,
                            text=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(here), "archive", commit, "trainables"], check=True,
                             capture_output=True).stdout
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return commit


# --- the table ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (every side runs once per round)")
    p.add_argument("--threads", type=int, default=2, help="torch threads on every side")
    p.add_argument("--warmup", type=int, default=3, help="GPT steps left out before timing (every side)")
    p.add_argument("--only", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--baseline", default=None, metavar="REV",
                   help="also time this git revision's trainables (e.g. main), as a third side")
    p.add_argument("--nanogpt", type=Path, default=None, help="git directory with nanoGPT's pinned commit")
    p.add_argument("--examples", type=Path, default=None, help="git directory with pytorch/examples' pinned commit")
    p.add_argument("--data", type=Path, default=Path(os.environ.get("TUNELAB_DATA", "/work/shared/data")))
    p.add_argument("--measure", choices=list(CASES), help=argparse.SUPPRESS)  # one side, in a subprocess
    p.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--tokens", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ["TUNELAB_DATA"] = str(args.data)
    if args.measure:
        sys.path.insert(0, str(args.root))  # whose trainables we time
        print(measure_ours(args.measure, args.tokens, args.warmup))
        return
    here = Path(__file__).resolve().parents[1]
    git_dirs = {"nanoGPT": args.nanogpt, "word_language_model": args.examples}
    for peer, (repo, _, _) in PEERS.items():
        mirror = MIRROR / repo.replace("/", "+") / "repo"
        if git_dirs[peer] is None and mirror.exists():
            git_dirs[peer] = mirror

    with tempfile.TemporaryDirectory(prefix="tunelab-peers-") as tmp:
        tmp = Path(tmp)
        roots = {"ours": here}
        ours_commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=10", "HEAD"],
                                     capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "trainables"],
                               capture_output=True, text=True).stdout.strip()
        labels = {"ours": f"ours @ {ours_commit}{'+' if dirty else ''}"}
        if args.baseline:
            roots["base"] = tmp / "baseline"
            labels["base"] = f"{args.baseline} @ {baseline_checkout(args.baseline, roots['base'])[:10]}"
        commits, sides = {}, {}
        for name in args.only:
            case = CASES[name]
            peer = "word_language_model" if isinstance(case, RNNCase) else "nanoGPT"
            root = tmp / name
            root.mkdir()
            commits[name] = (peer, checkout(peer, git_dirs[peer], root))
            tokens = None
            if isinstance(case, GPTCase):
                prepare_nanogpt(root, args.data, args.threads)
                from trainables.gpt.tokens import prepare
                tokens = root / "tokens"
                prepare(args.data / "tinyshakespeare" / "input.txt", tokens, "char")
                sides[name] = {"peer": lambda r=root, c=case: nanogpt_step_s(r, c, args.warmup, args.threads)}
            else:
                folder = prepare_wlm(root, args.data, case)
                sides[name] = {"peer": lambda r=root, f=folder, c=case: wlm_step_s(r, f, c, args.threads)}
            for side, src in roots.items():
                sides[name][side] = lambda s=src, n=name, t=tokens: ours_process(s, n, t, args.warmup, args.threads)

        results = {name: {side: [] for side in sides[name]} for name in args.only}
        for r in range(args.rounds):
            for name in args.only:
                order = list(sides[name].items())
                for side, fn in order if r % 2 == 0 else order[::-1]:
                    results[name][side].append(fn())
                last = {side: v[-1] for side, v in results[name].items()}
                print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v * 1e3:.1f} ms/step" for k, v in last.items())
                      + ", " + ", ".join(f"{k}/peer {last['peer'] / last[k]:.3f}" for k in roots),
                      file=sys.stderr, flush=True)

    print(f"torch {torch.__version__}, {args.threads} threads, fp32 CPU, {args.rounds} interleaved rounds; "
          "tokens/s from the median step time of each run, median over rounds; "
          + "; ".join(f"{k} = {v}" for k, v in labels.items()))
    print()
    head = "| case | shape | peer @ commit | peer tok/s |" + "".join(f" {k} tok/s | {k}/peer | per round |" for k in roots)
    print(head)
    print("|---|---|---|---:|" + "---:|---:|---|" * len(roots))
    for name in args.only:
        case, (peer, commit) = CASES[name], commits[name]
        med = {k: statistics.median(v) for k, v in results[name].items()}
        row = f"| {name} | {case.shape} | {peer} @ {commit[:10]} | {case.tokens / med['peer']:,.0f} |"
        for k in roots:
            rounds = ", ".join(f"{pr / o:.2f}" for pr, o in zip(results[name]["peer"], results[name][k]))
            row += f" {case.tokens / med[k]:,.0f} | {med['peer'] / med[k]:.3f} | {rounds} |"
        print(row)


if __name__ == "__main__":
    main()
