"""The arithmetic equations: every tuple once, the split per order, the result-token mask, the batches."""

from __future__ import annotations

import numpy as np
import pytest

from tunelab.trainables import REGISTRY, ConfigError
from tunelab.trainables.arith.config import ArithConfig
from tunelab.trainables.arith.data import Vocabulary, batch_indices, make_data


def cfg(**kw) -> ArithConfig:
    return REGISTRY["arith"].parse(kw)


def operands(split, vocab: Vocabulary) -> set[tuple]:
    """The equations of a split as tuples of their tokens (padding left out)."""
    pad = vocab.id("PAD") if vocab.pad else None
    return {tuple(int(t) for t in row if t != pad) for row in np.concatenate([split.x, split.y[:, -1:]], axis=1)}


def test_binary_addition_mod_31_has_961_equations_split_480_481():
    data = make_data(cfg(p=31))
    assert data.vocab.tokens == [str(i) for i in range(31)] + ["+", "-", "*", "/", "=", "BOS", "EOS"]
    assert len(data.train) == 480 and len(data.val) == 481  # floor(0.5 · 961)
    assert data.train.x.shape == (480, 6) and data.train.y.shape == (480, 6)
    train, val = operands(data.train, data.vocab), operands(data.val, data.vocab)
    assert len(train) == 480 and len(val) == 481 and not train & val  # each once, no pair on both sides
    pairs = {(row[1], row[3]) for row in train | val}
    assert pairs == {(a, b) for a in range(31) for b in range(31)}  # all p² pairs
    v = data.vocab
    for row in train | val:
        bos, a, plus, b, eq, r, eos = row
        assert (bos, plus, eq, eos) == (v.id("BOS"), v.id("+"), v.id("="), v.id("EOS")) and r == (a + b) % 31


@pytest.mark.parametrize("op, check", [
    ("-", lambda a, b, p: (a - b) % p),
    ("*", lambda a, b, p: (a * b) % p),
    ("/", lambda a, b, p: (a * pow(b, -1, p)) % p),
])
def test_each_operation(op, check):
    p = 7
    data = make_data(cfg(p=p, op=op, r_train=0.5))
    n = p * (p - 1) if op == "/" else p * p  # no division by zero
    assert len(data.train) + len(data.val) == n
    for split in (data.train, data.val):
        a, b = split.x[:, 1], split.x[:, 3]
        assert (split.result == [check(int(x), int(y), p) for x, y in zip(a, b)]).all()
        if op == "/":
            assert (b != 0).all()
            assert ((split.result * b) % p == a).all()  # r · b = a: the inverse really inverts


def test_ternary_equations_are_evaluated_left_to_right():
    data = make_data(cfg(p=5, op="-", orders=[3], r_train=0.3))
    assert len(data.train) + len(data.val) == 125 and len(data.train) == 37  # floor(0.3 · 125)
    x = data.train.x
    assert x.shape == (37, 8)
    assert (data.train.result == (x[:, 1] - x[:, 3] - x[:, 5]) % 5).all()


def test_mixed_orders_split_r_train_of_each_order_to_each_side():
    data = make_data(cfg(p=11, orders=[3, 2]))  # order of the list does not matter
    assert data.vocab.pad and data.vocab.tokens[-1] == "PAD" and len(data.vocab) == 11 + 4 + 4
    for split, sizes in ((data.train, {2: 60, 3: 665}), (data.val, {2: 61, 3: 666})):
        assert {o: int((split.order == o).sum()) for o in (2, 3)} == sizes  # floor(0.5 · 121), floor(0.5 · 1331)
        assert split.x.shape[1] == 8  # the ternary length; binary rows padded
    train, val = operands(data.train, data.vocab), operands(data.val, data.vocab)
    assert len(train) + len(val) == 121 + 1331 and not train & val
    binary = data.train.x[data.train.order == 2]
    pad = data.vocab.id("PAD")
    assert (binary[:, 6] == data.vocab.id("EOS")).all() and (binary[:, 7] == pad).all()


def test_the_mask_selects_the_result_tokens_only():
    data = make_data(cfg(p=11, orders=[2, 3]))
    v = data.vocab
    for split in (data.train, data.val):
        mask = split.mask
        assert mask.sum(axis=1).tolist() == [1] * len(split)  # one result token per equation
        assert (split.x[mask] == v.id("=")).all()  # the target read at "=" ...
        assert (split.y[mask] == split.result).all()  # ... is the result
        assert (split.answer == np.where(split.order == 2, 4, 6)).all()
        # EOS follows every result, and is left out of the mask (as are operands, operators and PAD).
        after = split.y[np.arange(len(split)), split.answer + 1]
        assert (after == v.id("EOS")).all() and not mask[np.arange(len(split)), split.answer + 1].any()


def test_deterministic_in_the_seed():
    a, b, c = (make_data(cfg(p=13, seed=s)) for s in (3, 3, 4))
    assert (a.train.x == b.train.x).all() and (a.val.x == b.val.x).all()
    assert not (a.train.x == c.train.x).all()


def test_batches_walk_through_a_fresh_permutation_each_epoch():
    n, b = 10, 4
    stream = np.concatenate([batch_indices(0, n, b, step) for step in range(5)])  # 20 = two epochs
    assert all(len(batch_indices(0, n, b, s)) == b for s in range(5))
    first, second = stream[:10], stream[10:]
    assert sorted(first) == sorted(second) == list(range(n)) and (first != second).any()
    assert (batch_indices(0, n, b, 3) == stream[12:16]).all()  # a function of the step alone
    whole = batch_indices(1, n, 512, 7)  # a batch larger than the split: the whole split, permuted
    assert sorted(whole) == list(range(n))


@pytest.mark.parametrize("bad, field", [
    ({"p": 12, "op": "/"}, "prime"),
    ({"r_train": 0.01, "p": 7}, "r_train"),
    ({"orders": [2, 2]}, "orders"),
    ({"orders": [4]}, "orders"),
    ({"d_model": 30, "num_heads": 4}, "num_heads"),
    ({"eval_every": 20, "steps": 10}, "eval_every"),
    ({"model": "rnn"}, "model"),
])
def test_bad_configs_fail_before_anything_is_made(bad, field):
    with pytest.raises(ConfigError, match=field):
        REGISTRY["arith"].parse(bad)
