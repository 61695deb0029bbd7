"""The arith trainable: what it reports, the extremum metrics, attention maps, divergence, out of memory,
and exact resume in process and through Ray Tune."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import tunelab.trainables.arith.train as arith_train
from tunelab.trainables import REGISTRY, metrics
from tunelab.trainables._report import ARTIFACTS
from tunelab.trainables.arith.config import ATTENTION_ARTIFACT
from _ray_resume import straight_and_crashed

pytestmark = pytest.mark.slow  # every test here trains

# 24 training equations of a + b mod 7, batches of 16, 60 steps, a report every 20.
TINY = dict(p=7, d_model=16, num_layers=1, num_heads=2, batch_size=16, steps=60, eval_every=20, device="cpu", seed=3)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a Ray trial with cpu: 1
    yield
    torch.set_num_threads(threads)


def run_local(config, state=None):
    """Run the trainable in this process; return its reports as (metrics, state copy) pairs."""
    reports = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(arith_train, "report", lambda m, state=None: reports.append((m, copy.deepcopy(state))))
        mp.setattr(arith_train, "load_state", lambda: state)
        arith_train.train(config)
    return reports


@pytest.fixture(scope="module")
def gpt():
    return run_local({**TINY, "model": "gpt"})


@pytest.fixture(scope="module")
def mixed_lstm():
    return run_local({**TINY, "model": "lstm", "orders": [2, 3], "p": 5})


def t_f(ms, key, larger):
    """Seed 002's t_f from the reports: step of the minimum / first step of the maximum."""
    values = [m[key] for m in ms]
    best = max(values) if larger else min(values)
    return ms[values.index(best)][metrics.STEP]


def test_reports_at_every_evaluation_with_counters_flops_and_compute(gpt):
    entry = REGISTRY["arith"]
    flops_per_token = entry.flops_per_token({**TINY, "model": "gpt"})
    nonembed = entry.summary({**TINY, "model": "gpt"})["params_nonembed"]
    ms = [m for m, _ in gpt]
    assert [m[metrics.STEP] for m in ms] == [20, 40, 60]
    for m, state in gpt:
        assert set(metrics.COMMON) - set(metrics.FINAL) <= set(m)
        assert m[metrics.TOKENS] == m[metrics.STEP] * 16 * 6 and m[metrics.FLOPS] == flops_per_token * m[metrics.TOKENS]
        assert m[metrics.COMPUTE] == nonembed * 16 * m[metrics.STEP]  # C = P·B·T
        assert m[metrics.EPOCH] == m[metrics.STEP] * 16 / 24
        assert m[metrics.VAL_PPL] == pytest.approx(math.exp(m[metrics.VAL_LOSS]))
        assert 0 <= m[metrics.TRAIN_ACC] <= 1 and m[metrics.PARAM_NORM] > 0
        assert state is not None and state["step"] == m[metrics.STEP]
        assert metrics.VAL_ACC_O2 not in m  # one order: no per-order metrics
    assert [m[metrics.FINISHED] for m in ms] == [0, 0, 1]
    assert ms[-1][metrics.TRAIN_LOSS] < ms[0][metrics.TRAIN_LOSS]  # it learns


def test_the_last_report_holds_the_extremum_metrics(gpt):
    ms = [m for m, _ in gpt]
    last = ms[-1]
    expected = {
        metrics.TRAIN_LOSS_T_F: t_f(ms, metrics.TRAIN_LOSS, False), metrics.VAL_LOSS_T_F: t_f(ms, metrics.VAL_LOSS, False),
        metrics.TRAIN_ACC_T_F: t_f(ms, metrics.TRAIN_ACC, True), metrics.VAL_ACC_T_F: t_f(ms, metrics.VAL_ACC, True),
    }
    assert {k: last[k] for k in expected} == expected
    assert last[metrics.LOSS_DELTA_T] == expected[metrics.VAL_LOSS_T_F] - expected[metrics.TRAIN_LOSS_T_F]
    assert last[metrics.ACC_DELTA_T] == expected[metrics.VAL_ACC_T_F] - expected[metrics.TRAIN_ACC_T_F]
    assert not any(metrics.VAL_ACC_T_F in m for m in ms[:-1])


def test_the_last_checkpoint_carries_the_attention_maps(gpt):
    states = [s for _, s in gpt]
    assert all(ARTIFACTS not in s for s in states[:-1])
    maps = json.loads(states[-1][ARTIFACTS][ATTENTION_ARTIFACT])
    weights = np.array(maps["weights"])
    assert weights.shape == (2, 1, 2, 6, 6)  # (samples, layers, heads, S, S)
    assert np.allclose(weights.sum(-1), 1, atol=1e-4)  # each row a distribution ...
    assert (np.triu(weights, k=1) == 0).all()  # ... over the positions up to its own (causal)
    for tokens in maps["tokens"]:
        bos, a, plus, b, eq, r = tokens
        assert (bos, plus, eq) == ("BOS", "+", "=") and int(r) == (int(a) + int(b)) % 7
    assert maps["step"] == 60


def test_mixed_orders_report_each_order(mixed_lstm):
    # 25 binary (12 train) and 125 ternary (62 train) equations mod 5.
    for m, _ in mixed_lstm:
        for order, n_val in ((2, 13), (3, 63)):
            assert set(metrics.BY_ORDER[order]) <= set(m)
        weighted = (13 * m[metrics.VAL_ACC_O2] + 63 * m[metrics.VAL_ACC_O3]) / 76
        assert m[metrics.VAL_ACC] == pytest.approx(weighted)
        weighted = (12 * m[metrics.TRAIN_LOSS_O2] + 62 * m[metrics.TRAIN_LOSS_O3]) / 74
        assert m[metrics.TRAIN_LOSS] == pytest.approx(weighted)
    assert metrics.ACC_DELTA_T in mixed_lstm[-1][0] and ARTIFACTS not in mixed_lstm[-1][1]  # no attention


@pytest.mark.parametrize("model", ["gpt", "lstm"])
def test_resume_in_process_is_exact(model, gpt, mixed_lstm):
    config, straight = ({**TINY, "model": "gpt"}, gpt) if model == "gpt" else \
        ({**TINY, "model": "lstm", "orders": [2, 3], "p": 5}, mixed_lstm)
    resumed = run_local(config, state=straight[0][1])
    assert [m[metrics.STEP] for m, _ in resumed] == [40, 60]
    for key in (metrics.VAL_LOSS, metrics.TRAIN_LOSS, metrics.VAL_ACC, metrics.PARAM_NORM, metrics.TOKENS,
                *metrics.T_F.values(), metrics.ACC_DELTA_T):
        assert resumed[-1][0][key] == straight[-1][0][key], key


def test_divergence_ends_the_trial_with_a_report():
    reports = run_local({**TINY, "diverge_loss": 0.01})
    (m, state), = reports
    assert m[metrics.DIVERGED] == 1 and m[metrics.FINISHED] == 0 and state is None
    assert metrics.final_status(m) == metrics.STATUS_DIVERGED


def test_out_of_memory_while_training_ends_the_trial_with_a_report(monkeypatch):
    real = arith_train.Trial.train_interval

    def interval(self, stop):
        if stop > 20:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, stop)

    monkeypatch.setattr(arith_train.Trial, "train_interval", interval)
    reports = run_local({**TINY, "model": "lstm"})
    assert [m[metrics.OOM] for m, _ in reports] == [0, 1]
    assert reports[-1][0][metrics.VAL_ACC] == 0.0 and reports[-1][0][metrics.STEP] == 20


@pytest.fixture(scope="module")
def tuned(ray_session, tmp_path_factory):
    """One Tuner, two trials of the GPT: ``straight`` runs through; ``crash`` raises right after its
    step-20 report on its first attempt, and Ray restores it from that checkpoint."""
    return straight_and_crashed("tunelab.trainables.arith.train", {**TINY, "model": "gpt"}, None,
                                tmp_path_factory.mktemp("arith_ray"), crash_after=1)

def test_resume_through_ray_tune_is_exact(tuned, gpt):
    straight, resumed = tuned["straight"], tuned["crash"]
    a, b, local = straight.metrics, resumed.metrics, gpt[-1][0]
    for key in (metrics.VAL_LOSS, metrics.TRAIN_LOSS, metrics.PARAM_NORM, metrics.STEP, metrics.FLOPS,
                metrics.COMPUTE, *metrics.T_F.values(), metrics.LOSS_DELTA_T):
        assert b[key] == a[key] == local[key], key
    history = resumed.metrics_dataframe
    assert list(history[metrics.STEP])[-2:] == [40, 60]
    # The last checkpoint holds the attention maps in its artifacts folder, beside the state.
    with resumed.checkpoint.as_directory() as path:
        maps = json.loads((Path(path) / ARTIFACTS / ATTENTION_ARTIFACT).read_text())
    assert maps == json.loads(gpt[-1][1][ARTIFACTS][ATTENTION_ARTIFACT])
