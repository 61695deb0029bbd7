"""Modular-arithmetic equations in memory (seed report 002): tokens, the split, the batches. NumPy only.

Every equation "BOS a ∘ b = r EOS" (order 2) or "BOS a ∘ b ∘ c = r EOS" (order 3, left to right),
r = a ∘ b (∘ c) mod p, appears exactly once. Each order's equations are shuffled by the seed and the
first floor(r_train · n) go to training, the rest to validation, so a mix of orders keeps r_train of
each order on each side (seed 002, question 4). A model reads the sequence without its last token
and predicts it without its first; the loss and the accuracy count only the result token r, the
target at the position of "=": the operands cannot be predicted, and EOS always follows r, so
counting them would only blur the curves (a shorter equation's padding is never a target either).

Nothing is read from disk: the data is a function of (p, op, orders, r_train, seed).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np

from tunelab.trainables.arith.config import OPS, ArithConfig, sequence_length, split_sizes

# Seeds of the two random streams: np.random.default_rng([seed, stream, ...]).
_SPLIT, _BATCHES = 0, 1


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Token ids: the numbers 0 … p-1 are their own ids; then the operators, "=", BOS, EOS (and PAD).

    Attributes:
        p: the modulus.
        pad: whether the vocabulary has a PAD token (orders mixed).
    """

    p: int
    pad: bool = False

    @property
    def tokens(self) -> list[str]:
        """Token text by id, for labels and decoding."""
        return [str(i) for i in range(self.p)] + list(OPS) + ["=", "BOS", "EOS"] + (["PAD"] if self.pad else [])

    def id(self, token: str) -> int:
        return self.tokens.index(token)

    def __len__(self) -> int:
        return len(self.tokens)

    def decode(self, ids: Sequence[int]) -> list[str]:
        tokens = self.tokens
        return [tokens[int(i)] for i in ids]


def apply(op: str, x: np.ndarray, y: np.ndarray, p: int) -> np.ndarray:
    """x ∘ y mod p, elementwise; "/" multiplies by y's inverse (Fermat: y^(p-2) mod p, p prime, y ≠ 0)."""
    if op == "+":
        return (x + y) % p
    if op == "-":
        return (x - y) % p
    if op == "*":
        return (x * y) % p
    inverse = np.array([pow(int(v), p - 2, p) for v in range(p)])
    return (x * inverse[y]) % p


def equations(p: int, op: str, order: int, vocab: Vocabulary, length: int) -> np.ndarray:
    """Every equation of ``order`` operands once, in lexicographic order of the operands, as token ids
    (n, length): "BOS a ∘ b … = r EOS", padded with PAD to ``length``.

    Args:
        p: the modulus.
        op: one of ``OPS``.
        order: 2 or 3 operands.
        vocab: the token ids.
        length: the row length (the longest order's sequence length).
    """
    second = range(1, p) if op == "/" else range(p)  # no division by zero
    operands = np.array(list(itertools.product(range(p), *[second] * (order - 1))), dtype=np.int64)
    result = operands[:, 0]
    for k in range(1, order):
        result = apply(op, result, operands[:, k], p)
    n = len(operands)
    rows = np.full((n, length), vocab.id("PAD") if vocab.pad else vocab.id("EOS"), dtype=np.int64)
    rows[:, 0] = vocab.id("BOS")
    for k in range(order):
        rows[:, 1 + 2 * k] = operands[:, k]
        if k < order - 1:
            rows[:, 2 + 2 * k] = vocab.id(op)
    eq = 2 * order
    rows[:, eq] = vocab.id("=")
    rows[:, eq + 1] = result
    rows[:, eq + 2] = vocab.id("EOS")
    return rows


@dataclasses.dataclass(frozen=True)
class Split:
    """One side of the data.

    Attributes:
        x: inputs, (n, S): each equation without its last token.
        y: targets, (n, S): each equation without its first token.
        answer: (n,) the input position whose target is the result r (the position of "=").
        order: (n,) each equation's order.
    """

    x: np.ndarray
    y: np.ndarray
    answer: np.ndarray
    order: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    @property
    def mask(self) -> np.ndarray:
        """(n, S) bool: True where the target is a result token, the only targets the loss counts."""
        m = np.zeros(self.x.shape, dtype=bool)
        m[np.arange(len(self)), self.answer] = True
        return m

    @property
    def result(self) -> np.ndarray:
        """(n,) the result tokens."""
        return self.y[np.arange(len(self)), self.answer]


@dataclasses.dataclass(frozen=True)
class ArithData:
    """The equations of one trial, split.

    Attributes:
        vocab: the token ids.
        train, val: the two sides.
    """

    vocab: Vocabulary
    train: Split
    val: Split


def make_data(cfg: ArithConfig) -> ArithData:
    """The trial's equations, split per order with the seed (deterministic: same config, same data).

    Args:
        cfg: a parsed config.
    """
    vocab = Vocabulary(cfg.p, pad=len(cfg.orders) > 1)
    length = sequence_length(max(cfg.orders))
    parts: dict[str, list] = {"train": [], "val": []}
    for order in cfg.orders:
        rows = equations(cfg.p, cfg.op, order, vocab, length)
        order_rng = np.random.default_rng([cfg.seed, _SPLIT, order])
        rows = rows[order_rng.permutation(len(rows))]
        n_train, _ = split_sizes(cfg, order)
        parts["train"].append((rows[:n_train], order))
        parts["val"].append((rows[n_train:], order))
    return ArithData(vocab, *(_split(parts[side]) for side in ("train", "val")))


def _split(parts: list[tuple[np.ndarray, int]]) -> Split:
    rows = np.concatenate([r for r, _ in parts])
    order = np.concatenate([np.full(len(r), o, dtype=np.int64) for r, o in parts])
    # In the input (the sequence less its last token) "=" sits at 2·order; its target is r.
    return Split(x=rows[:, :-1], y=rows[:, 1:], answer=2 * order, order=order)


def batch_indices(seed: int, n: int, batch_size: int, step: int) -> np.ndarray:
    """The training equations of optimizer step ``step`` (0-based).

    Batches are consecutive slices of one stream that concatenates a fresh permutation of the n
    training equations per epoch, so every step has min(batch_size, n) equations and each epoch
    uses every equation once. A step's batch is a function of the step alone: nothing to checkpoint.

    Args:
        seed: the trial's seed.
        n: training equations.
        batch_size: the config's batch size (more than n means the whole split, permuted).
        step: the optimizer step, counted from 0.
    """
    b = min(batch_size, n)
    start, stop = step * b, (step + 1) * b
    epochs = range(start // n, (stop - 1) // n + 1)
    stream = np.concatenate([_permutation(seed, n, e) for e in epochs])
    offset = epochs[0] * n
    return stream[start - offset:stop - offset]


def _permutation(seed: int, n: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, _BATCHES, epoch]).permutation(n)
