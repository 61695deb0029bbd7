"""Our train step against the peers themselves: nanoGPT and pytorch/examples' word_language_model.

    python bench/peers.py                     # 2 threads, 3 rounds: about 10 minutes on 2 idle cores
    python bench/peers.py --baseline main     # and main's trainables beside them
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

Our side runs at the same shapes and threads, in a subprocess too (``--measure``), from this
checkout and, with ``--baseline REV``, from that revision's ``trainables/`` as a third side: the GPT
trainable's step (``Trial.train_interval`` one step at a time: window gather, learning-rate update,
forward, backward, clip, AdamW, accuracy) timed per step like nanoGPT's; the RNN trainable's
``run_epoch`` over a train stream of exactly ``log-interval`` windows, timed per call like
word_language_model's windows. Steps before ``--warmup`` (nanoGPT's iteration 0 holds its
evaluation) and the first window are left out.

On a shared machine a slow step measures the neighbours, so each run counts its fastest step
(window), as ``bench/gpt_throughput.py`` counts its best round. Rounds interleave the sides (the
order alternating); the table shows tokens/s from the median over rounds and the ratio ours/peer
(> 1: ours is faster), with the per-round ratios beside it to show how noisy the machine was.
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
    window: int = 10  # batches per timed window (word_language_model's --log-interval)
    windows: int = 5  # timed windows per run, after one warm-up window

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
    "gpt-char": GPTCase("gpt-char", 6, 6, 384, 256, 12, dropout=0.2, steps=6),
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
    # PASSIVE: OpenMP workers sleep instead of spinning while they wait, so that CPU time counts work
    # (spinning grows with the neighbours' load); the same for every side.
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE")
    return env


def run_peer(cmd: list[str], cwd: Path, threads: int) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=peer_env(threads), capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out.stdout


def run_clocked(cmd: list[str], cwd: Path, threads: int, pattern: str) -> list[tuple[re.Match, float]]:
    """Run a peer, reading its output as it prints (unbuffered); returns each line matching ``pattern``
    with the CPU seconds (user + system, all its threads) the process had used when it printed it.

    CPU time barely moves when neighbours take the cores, where wall time doubles; it is read from
    /proc/PID/stat, at the clock tick's 10 ms resolution (runs span seconds).
    """
    env = {**peer_env(threads), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tick = os.sysconf("SC_CLK_TCK")
    hits, lines = [], []
    for line in proc.stdout:
        lines.append(line)
        m = re.search(pattern, line)
        if m:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            hits.append((m, (int(fields[11]) + int(fields[12])) / tick))  # utime, stime
    err = proc.stderr.read()
    if proc.wait():
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{''.join(lines)[-2000:]}\n{err[-2000:]}")
    return hits


def prepare_nanogpt(root: Path, data: Path, threads: int) -> None:
    """nanoGPT's own character data: its prepare.py on TinyShakespeare (no download: input.txt is there)."""
    shutil.copy(data / "tinyshakespeare" / "input.txt", root / "data" / "shakespeare_char" / "input.txt")
    run_peer([sys.executable, "data/shakespeare_char/prepare.py"], root, threads)


def nanogpt_step_s(root: Path, case: GPTCase, warmup: int, threads: int) -> tuple[float, float]:
    """Seconds per iteration of nanoGPT's train.py after ``warmup`` iterations: the fastest it
    prints (wall), and its CPU time over them divided by their number."""
    cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", "--device=cpu", "--compile=False",
           "--dtype=float32", f"--out_dir={root / 'out'}", "--eval_interval=1000000", "--eval_iters=1",
           "--log_interval=1", f"--max_iters={warmup + case.steps - 1}", f"--n_layer={case.n_layer}",
           f"--n_head={case.n_head}", f"--n_embd={case.n_embd}", f"--block_size={case.block}",
           f"--batch_size={case.batch}", f"--dropout={case.dropout}", f"--beta2={case.beta2}"]
    hits = run_clocked(cmd, root, threads, r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms")
    times = [float(m[2]) / 1e3 for m, _ in hits if int(m[1]) >= warmup]
    if len(times) != case.steps:
        raise RuntimeError(f"expected {case.steps} timed nanoGPT iterations, parsed {len(times)}")
    cpu = {int(m[1]): c for m, c in hits}
    return min(times), (cpu[warmup + case.steps - 1] - cpu[warmup - 1]) / case.steps


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


def wlm_step_s(root: Path, folder: Path, case: RNNCase, threads: int) -> tuple[float, float]:
    """Seconds per batch of word_language_model after its first printed window: the fastest window
    it prints (wall), and its CPU time over the windows divided by their batches."""
    cmd = [sys.executable, "main.py", f"--data={folder}", "--model=LSTM", f"--emsize={case.hidden}",
           f"--nhid={case.hidden}", f"--nlayers={case.layers}", f"--bptt={case.bptt}",
           f"--batch_size={case.batch}", "--dropout=0", "--epochs=1", f"--log-interval={case.window}",
           f"--save={root / 'model.pt'}"]
    hits = run_clocked(cmd, root / "word_language_model", threads, r"ms/batch\s+([\d.]+)")[:case.windows + 1]
    if len(hits) != case.windows + 1:
        raise RuntimeError(f"expected {case.windows + 1} word_language_model windows, parsed {len(hits)}")
    wall = min(float(m[1]) for m, _ in hits[1:]) / 1e3
    return wall, (hits[-1][1] - hits[0][1]) / (case.windows * case.window)


# --- ours -----------------------------------------------------------------------------------------

def ours_gpt(case: GPTCase, token_folder: Path) -> Callable[[int], float]:
    """A function of ``warmup`` giving the fastest step of our GPT trainable, in seconds."""
    from tunelab.trainables.gpt.config import GPTConfig
    from tunelab.trainables.gpt.tokens import TokenData
    from tunelab.trainables.gpt.train import setup

    cfg = GPTConfig(vocab_size=65, n_positions=case.block, n_layer=case.n_layer, n_head=case.n_head,
                    n_embd=case.n_embd, dropout=case.dropout, bias=False, batch_size=case.batch,
                    flop_budget=None, max_steps=10**6, warmup_steps=100, beta2=case.beta2, device="cpu")
    data = TokenData.from_folder(token_folder)

    def measure(warmup: int) -> tuple[float, float]:
        trial = setup(cfg, data)
        times = []
        for i in range(warmup + case.steps):
            if i == warmup:
                cpu0 = time.process_time()
            t0 = time.perf_counter()
            trial.train_interval(trial.step + 1)  # ends with .item(): the step is done
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        return min(times), (time.process_time() - cpu0) / case.steps

    return measure


def ours_rnn(case: RNNCase) -> Callable[[], float]:
    """A function giving the seconds per batch of our RNN trainable's fastest ``run_epoch`` window."""
    from tunelab.trainables.rnn.config import RNNConfig
    from tunelab.trainables.rnn.data import load_data
    from tunelab.trainables.rnn.train import run_epoch, setup

    cfg = RNNConfig(hidden_size=case.hidden, num_layers=case.layers, bptt=case.bptt, batch_size=case.batch,
                    dropout=0.0, device="cpu")
    full = load_data({"corpus": "ptb", "dir": None})
    n = (case.window * case.bptt + 1) * case.batch  # batchify keeps exactly `window` bptt windows
    data = dataclasses.replace(full, train=full.train[:n], valid=full.valid[:2000], test=full.test[:2000])

    def measure() -> tuple[float, float]:
        trial = setup(cfg, data)
        times = []
        for i in range(case.windows + 1):
            if i == 1:
                cpu0 = time.process_time()
            t0 = time.perf_counter()
            run_epoch(trial, cfg.lr)  # ends with .item()
            if i:
                times.append((time.perf_counter() - t0) / case.window)
        return min(times), (time.process_time() - cpu0) / (case.windows * case.window)

    return measure


# --- our side in its own process, from this checkout or a baseline's ---------------------------------

def measure_ours(name: str, tokens: Path | None, warmup: int) -> tuple[float, float]:
    """Fastest seconds per step of our trainable at ``CASES[name]`` (the ``--measure`` mode)."""
    case = CASES[name]
    if isinstance(case, GPTCase):
        return ours_gpt(case, tokens)(warmup)
    return ours_rnn(case)()


def ours_process(root: Path, name: str, tokens: Path | None, warmup: int, threads: int) -> tuple[float, float]:
    """``measure_ours`` run by ``root``'s own trainables in a subprocess (as the peers run)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", name, "--root", str(root),
           f"--warmup={warmup}", f"--threads={threads}"] + ([f"--tokens={tokens}"] if tokens else [])
    out = run_peer(cmd, root, threads)
    wall, cpu = out.split()[-2:]
    return float(wall), float(cpu)


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
    p.add_argument("--warmup", type=int, default=2, help="GPT steps left out before timing (every side)")
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
        print(*measure_ours(args.measure, args.tokens, args.warmup))
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
                from tunelab.trainables.gpt.tokens import prepare
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
                print(f"round {r + 1} {name}: " + ", ".join(f"{k} {w * 1e3:.1f} ms/step ({c * 1e3:.0f} ms CPU)"
                                                            for k, (w, c) in last.items())
                      + ", " + ", ".join(f"{k}/peer {last['peer'][0] / last[k][0]:.3f} (CPU {last['peer'][1] / last[k][1]:.3f})"
                                         for k in roots), file=sys.stderr, flush=True)

    print(f"torch {torch.__version__}, {args.threads} threads, fp32 CPU, {args.rounds} interleaved rounds; "
          "OMP_WAIT_POLICY=PASSIVE; wall: tokens/s of the fastest step (window) of each run; CPU: tokens per CPU-second over the "
          "timed steps (all threads); medians over rounds; " + "; ".join(f"{k} = {v}" for k, v in labels.items()))
    print()
    print("| case | shape | peer @ commit | peer tok/s wall (CPU) |"
          + "".join(f" {k} tok/s wall (CPU) | {k}/peer wall | {k}/peer CPU | per round wall / CPU |" for k in roots))
    print("|---|---|---|---:|" + "---:|---:|---:|---|" * len(roots))
    for name in args.only:
        case, (peer, commit) = CASES[name], commits[name]
        med = {k: [statistics.median(t[i] for t in v) for i in (0, 1)] for k, v in results[name].items()}
        tps = {k: f"{case.tokens / w:,.0f} ({case.tokens / c:,.0f})" for k, (w, c) in med.items()}
        row = f"| {name} | {case.shape} | {peer} @ {commit[:10]} | {tps['peer']} |"
        for k in roots:
            rounds = ", ".join(f"{pw / ow:.2f}/{pc / oc:.2f}"
                               for (pw, pc), (ow, oc) in zip(results[name]["peer"], results[name][k]))
            row += (f" {tps[k]} | {med['peer'][0] / med[k][0]:.3f} | {med['peer'][1] / med[k][1]:.3f} | {rounds} |")
        print(row)

if __name__ == "__main__":
    main()
