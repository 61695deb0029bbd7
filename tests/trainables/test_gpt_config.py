"""GPTConfig: parsing, budget arithmetic, evaluation points, constraints (torch-free, made-up numbers)."""

from __future__ import annotations

import math

import pytest

from tunelab.trainables import REGISTRY
from tunelab.trainables._config import parse_config
from tunelab.trainables._errors import ConfigError
from tunelab.trainables.flops import gpt_flops_per_token
from tunelab.trainables.gpt.config import (
    GPTConfig, check, eval_steps, memory_estimate_mb, model_mb, param_count, params_nonembed,
    steps_from_budget, summary,
)

TINY = dict(vocab_size=65, n_positions=32, n_layer=2, n_head=2, n_embd=32, batch_size=4)


def cfg(**kw) -> GPTConfig:
    return parse_config(GPTConfig, {**TINY, "flop_budget": None, "max_steps": 100, "eval_interval": 10, **kw})


def test_defaults_construct_and_registry_entry_agrees():
    entry = REGISTRY["gpt"]
    c = entry.parse({})
    assert c == GPTConfig()
    assert entry.flops_per_token({}) == gpt_flops_per_token(c) == c.flops_per_token
    assert set(entry.parameters) >= {"n_layer", "flop_budget", "max_steps", "lr_ratio", "eval_every_flops"}


def test_seq_len_none_means_n_positions():
    assert cfg().context == 32
    assert cfg(seq_len=16).context == 16
    assert cfg(seq_len=16).flops_per_token < cfg().flops_per_token


def test_steps_from_budget_floor_and_grad_accum():
    c = cfg()
    per_step = c.flops_per_token * 4 * 32  # batch_size × seq_len
    assert c.flops_per_step == per_step
    for k in (1, 7, 1000):
        exact = cfg(flop_budget=float(k * per_step), max_steps=None, eval_interval=1)
        assert steps_from_budget(exact) == exact.steps == k
        below = cfg(flop_budget=float(k * per_step + per_step - 1), max_steps=None, eval_interval=1)
        assert below.steps == k
    # Gradient accumulation multiplies the tokens per step, so the same budget buys half the steps.
    budget = float(1000 * per_step)
    assert cfg(flop_budget=budget, max_steps=None, grad_accum=2).steps == 500
    assert cfg(flop_budget=budget, max_steps=None, grad_accum=2, seq_len=16).steps == math.floor(
        budget / (gpt_flops_per_token(cfg(seq_len=16)) * 4 * 16 * 2))
    assert cfg(max_steps=123).steps == 123


def test_warmup_and_peak_lr():
    assert cfg().warmup == 10  # floor(100 × 0.1), seed 003
    assert cfg(warmup_frac=0.25).warmup == 25
    assert cfg(warmup_steps=3).warmup == 3
    assert cfg(min_lr=5e-4, lr_ratio=10).peak_lr == pytest.approx(5e-3)  # seed 003: max_lr = 10 · min_lr
    assert cfg(max_lr=2e-3).peak_lr == 2e-3


@pytest.mark.parametrize("bad, field", [
    ({"n_embd": 30, "n_head": 4}, "n_head"),
    ({"seq_len": 64}, "n_positions"),
    ({"flop_budget": 1e12}, "exactly one"),
    ({"max_steps": None}, "exactly one"),
    ({"flop_budget": 1e3, "max_steps": None}, "buys no optimizer step"),
    ({"eval_interval": 101}, "eval_interval"),
    ({"eval_every_flops": 1e30}, "eval_every_flops"),
    ({"warmup_steps": 101}, "warmup_steps"),
    ({"min_lr": 0.1, "max_lr": 0.01}, "min_lr"),
    ({"optimizer": "lion"}, "optimizer"),
    ({"n_layer": 0}, "n_layer"),
    ({"n_layer": 2.5}, "n_layer"),
    ({"dropout": 1.0}, "dropout"),
    ({"nlayer": 2}, "nlayer"),
    ({"norm": "sandwich"}, "norm"),
])
def test_config_errors(bad, field):
    with pytest.raises(ConfigError, match=field):
        cfg(**bad)


def test_eval_steps_by_interval_always_end_on_the_last_step():
    assert eval_steps(cfg(eval_interval=30)) == [30, 60, 90, 100]
    assert eval_steps(cfg(eval_interval=50)) == [50, 100]


def test_eval_every_flops_lands_on_the_first_step_past_each_multiple():
    c = cfg(eval_every_flops=1.0)  # placeholder to read flops_per_step
    every = 3.5 * c.flops_per_step
    c = cfg(eval_every_flops=every)
    points = eval_steps(c)
    assert points[-1] == 100
    for k, s in enumerate(points[:-1], start=1):
        assert s * c.flops_per_step >= k * every > (s - 1) * c.flops_per_step
    assert len(points) == math.floor(100 / 3.5) + 1


def test_param_count_closed_form_known_values():
    gpt2 = GPTConfig(vocab_size=50257, n_positions=1024, n_layer=12, n_head=12, n_embd=768, batch_size=1,
                     flop_budget=None, max_steps=1, eval_interval=1)
    assert param_count(gpt2) == 124_439_808
    assert params_nonembed(gpt2) == 124_439_808 - 50257 * 768 - 1024 * 768
    assert summary(gpt2)["params"] == 124_439_808


def test_check_model_mb_window_seed_003():
    window = {"model_mb": [50, 98]}
    # seed 003: n_embd 256, 4 layers, GPT-2 vocabulary, 64 positions -> about 61 MB: kept.
    ok = cfg(vocab_size=50257, n_positions=64, n_layer=4, n_head=8, n_embd=256)
    assert 50 < model_mb(ok) < 98
    assert check(ok, window) is None
    small = cfg(vocab_size=50257, n_positions=64, n_layer=4, n_head=8, n_embd=128)
    assert "model_mb" in check(small, window) and "outside [50.0, 98.0]" in check(small, window)
    big = cfg(vocab_size=50257, n_positions=64, n_layer=8, n_head=8, n_embd=512)
    assert "model_mb" in check(big, window)
    # Through the registry, as the searcher calls it.
    assert REGISTRY["gpt"].check({**TINY, "n_embd": 30, "n_head": 4}, window) is not None


def test_check_other_constraints():
    c = cfg()
    n = param_count(c)
    assert check(c, {"params": [n, n]}) is None
    assert "params" in check(c, {"params": [n + 1, 2 * n]})
    assert check(c, {"memory_mb": 1e6}) is None
    assert "memory estimate" in check(c, {"memory_mb": memory_estimate_mb(c) / 2})
    assert "unknown constraint 'flops'" in check(c, {"flops": 1})
    assert "[lo, hi]" in check(c, {"model_mb": 5})
    assert check(cfg(device="cpu"), {"gpu_memory": 1e-9}) is None  # only checked against a GPU


def test_summary_is_consistent():
    c = cfg(flop_budget=1e12, max_steps=None, eval_interval=5)
    s = summary(c)
    assert s["steps"] == c.steps and s["tokens"] == c.steps * 4 * 32
    assert s["flops"] == s["tokens"] * s["flops_per_token"] <= 1e12
    assert s["evaluations"] == len(eval_steps(c))
    assert s["memory_estimate_mb"] > s["model_mb"]
