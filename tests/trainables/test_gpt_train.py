"""The gpt trainable: what it reports, divergence, out-of-memory, and exact resume through Ray Tune."""

from __future__ import annotations

import math

import pytest
import torch

import tunelab.trainables.gpt.train as gpt_train
from tunelab.trainables import REGISTRY, metrics
from tunelab.trainables._config import parse_config
from tunelab.trainables._errors import ConfigError, DataError
from tunelab.trainables.gpt import tokens
from tunelab.trainables.gpt.config import GPTConfig, eval_steps
from tunelab.trainables.gpt.schedule import lr_at
from _local import run_trial
from _ray_resume import straight_and_crashed

pytestmark = pytest.mark.slow  # every test here trains

TINY = dict(
    vocab_size=65, n_positions=32, n_layer=2, n_head=2, n_embd=32, batch_size=8, dropout=0.1,
    flop_budget=None, max_steps=40, eval_interval=10, eval_iters=2, max_lr=3e-3, min_lr=3e-4,
    device="cpu", seed=3,
)


@pytest.fixture(scope="module")
def token_data(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt_tokens")
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:100_000]
    (root / "slice.txt").write_text(text, encoding="utf-8")
    return tokens.prepare(root / "slice.txt", root / "char", "char")


def run_local(config, data, state=None):
    """Run one trial in this process, as ``train`` does; return its reports as (metrics, state copy) pairs."""
    return run_trial(gpt_train.Trial(parse_config(GPTConfig, config), data), state)


def test_reports_every_metric_once_per_evaluation(token_data):
    reports = run_local(TINY, token_data)
    cfg = GPTConfig(**TINY)
    assert [m[metrics.STEP] for m, _ in reports] == eval_steps(cfg) == [10, 20, 30, 40]
    required = set(metrics.COMMON) - set(metrics.FINAL)
    for m, state in reports:
        assert required <= set(m), required - set(m)
        assert m[metrics.TOKENS] == m[metrics.STEP] * 8 * 32
        assert m[metrics.FLOPS] == REGISTRY["gpt"].flops_per_token(TINY) * m[metrics.TOKENS]
        assert m[metrics.VAL_PPL] == pytest.approx(math.exp(m[metrics.VAL_LOSS]))
        assert state is not None and state["step"] == m[metrics.STEP]
    *early, (last, _) = [m for m, _ in reports], reports[-1]
    assert [m[metrics.FINISHED] for m in early[0][:-1]] == [0, 0, 0] and last[metrics.FINISHED] == 1
    assert metrics.TEST_PPL in last and not any(metrics.TEST_PPL in m for m in early[0][:-1])
    assert last[metrics.LR] == pytest.approx(3e-4)  # the last update uses min_lr
    assert last[metrics.VAL_LOSS] < reports[0][0][metrics.VAL_LOSS] < math.log(65) + 0.5
    assert last[metrics.BEST_VAL_PPL] == min(m[metrics.VAL_PPL] for m, _ in reports)


def test_schedule_values_seed_003():
    a, b, hi, lo = 100, 1000, 1e-3, 1e-4
    assert lr_at(0, a, b, hi, lo) == 0.0
    assert lr_at(a / 2, a, b, hi, lo) == pytest.approx(hi / 2)
    assert lr_at(a, a, b, hi, lo) == pytest.approx(hi)
    assert lr_at((a + b) / 2, a, b, hi, lo) == pytest.approx((hi + lo) / 2)
    assert lr_at(b, a, b, hi, lo) == pytest.approx(lo)
    assert lr_at(2 * b, a, b, hi, lo) == pytest.approx(lo)
    assert lr_at(0, 0, b, hi, lo) == pytest.approx(hi)  # no warm-up


def test_eval_every_flops_reports_on_flop_rungs(token_data):
    cfg = GPTConfig(**TINY)
    every = 7.5 * cfg.flops_per_step
    reports = run_local({**TINY, "eval_every_flops": every}, token_data)
    flops = [m[metrics.FLOPS] for m, _ in reports]
    for k, f in enumerate(flops[:-1], start=1):
        assert k * every <= f < k * every + cfg.flops_per_step
    assert reports[-1][0][metrics.STEP] == 40


def test_divergence_ends_the_trial_with_a_report(token_data):
    reports = run_local({**TINY, "diverge_loss": 1.0}, token_data)
    assert len(reports) == 1
    m, state = reports[0]
    assert m[metrics.DIVERGED] == 1 and m[metrics.FINISHED] == 0 and state is None


def test_out_of_memory_ends_the_trial_with_a_report(monkeypatch, token_data):
    real_step = gpt_train.train_step

    def step(trial, lr):
        if trial.step == 15:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_step(trial, lr)

    monkeypatch.setattr(gpt_train, "train_step", step)
    reports = run_local(TINY, token_data)
    assert [m[metrics.OOM] for m, _ in reports] == [0, 1]
    assert reports[-1][0][metrics.STEP] == 15 and reports[-1][0][metrics.VAL_PPL] == math.inf


def test_config_and_data_errors_before_training(token_data):
    with pytest.raises(ConfigError, match="vocab_size"):
        run_local({**TINY, "vocab_size": 20}, token_data)
    with pytest.raises(ConfigError, match="n_embd"):
        run_local({**TINY, "n_embd": 31}, token_data)
    with pytest.raises(DataError):
        gpt_train.train(TINY, None)  # train's own check, before any trial is made


@pytest.mark.parametrize("parametrization", [{}, {"parametrization": "mup", "base_width": 16}])
def test_resume_in_process_is_exact(token_data, parametrization):
    config = {**TINY, **parametrization}  # µP at twice its base width: the hidden weights' rates resume too
    straight = run_local(config, token_data)
    resumed = run_local(config, token_data, state=straight[1][1])
    assert [m[metrics.STEP] for m, _ in resumed] == [30, 40]
    for key in (metrics.VAL_PPL, metrics.TRAIN_LOSS, metrics.PARAM_NORM, metrics.TEST_PPL):
        assert resumed[-1][0][key] == straight[-1][0][key]


def test_resume_through_ray_tune_is_exact(ray_session, token_data, tmp_path):
    results = straight_and_crashed("tunelab.trainables.gpt.train", TINY, token_data, tmp_path, crash_after=2)
    straight, resumed = results["straight"], results["crash"]
    for r in (straight, resumed):
        assert r.metrics[metrics.STEP] == 40 and r.metrics[metrics.FINISHED] == 1
        assert r.metrics["training_iteration"] == 4
    assert abs(resumed.metrics[metrics.VAL_PPL] - straight.metrics[metrics.VAL_PPL]) < 1e-6
    assert resumed.metrics[metrics.VAL_PPL] == straight.metrics[metrics.VAL_PPL]
    assert resumed.metrics[metrics.TEST_PPL] == straight.metrics[metrics.TEST_PPL]
