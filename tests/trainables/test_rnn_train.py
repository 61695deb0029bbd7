"""The rnn trainable: what it reports, divergence, out-of-memory, and exact resume through Ray Tune."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import tunelab.trainables.rnn.train as rnn_train
from tunelab.trainables import REGISTRY, metrics
from tunelab.trainables._errors import ConfigError
from tunelab.trainables.rnn.config import RNNConfig
from tunelab.trainables.rnn.data import load_data
from _ray_resume import straight_and_crashed

pytestmark = pytest.mark.slow  # every test here trains

# 1 layer of 32 on 2% of the train split (47 windows of 20×20 tokens per epoch), 10% of valid/test.
TINY = dict(
    hidden_size=32, num_layers=1, dropout=0.1, train_fraction=0.02, eval_fraction=0.1, epochs=4,
    lr=1.0, decay_start=2, device="cpu", seed=7,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # As in a Ray trial with cpu: 1 (Ray sets OMP_NUM_THREADS=1). On a busy 2-core machine two torch
    # threads that wait on each other are many times slower than one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(data_dir):
    return load_data({"corpus": "ptb", "dir": str(data_dir / "ptb")})


def run_local(config, data, state=None):
    """Run the trainable in this process; return its reports as (metrics, state copy) pairs."""
    reports = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rnn_train, "report", lambda m, state=None: reports.append((m, copy.deepcopy(state))))
        mp.setattr(rnn_train, "load_state", lambda: state)
        rnn_train.train(config, data)
    return reports


@pytest.fixture(scope="module")
def straight(corpus):
    return run_local(TINY, corpus)


def test_reports_every_metric_once_per_epoch(straight):
    required = set(metrics.COMMON) - set(metrics.FINAL)
    flops_per_token = REGISTRY["rnn"].flops_per_token(TINY)
    assert [m[metrics.EPOCH] for m, _ in straight] == [1, 2, 3, 4]
    for k, (m, state) in enumerate(straight, start=1):
        assert required <= set(m), required - set(m)
        assert m[metrics.STEP] == 47 * k and m[metrics.TOKENS] == 18_560 * k  # 928 steps × 20 streams
        assert m[metrics.FLOPS] == flops_per_token * m[metrics.TOKENS]
        assert m[metrics.VAL_PPL] == pytest.approx(math.exp(m[metrics.VAL_LOSS]))
        assert m[metrics.TRAIN_PPL] == pytest.approx(math.exp(m[metrics.TRAIN_LOSS]))
        assert m[metrics.PARAMS] == 10_000 * 32 + 4 * (32 * 32 * 2 + 64) + 32 * 10_000 + 10_000
        assert m[metrics.DIVERGED] == m[metrics.OOM] == 0
        assert state is not None and state["epoch"] == k
    ms = [m for m, _ in straight]
    assert [m[metrics.LR] for m in ms] == [1.0, 1.0, 0.5, 0.25]  # step schedule from decay_start=2
    assert [m[metrics.FINISHED] for m in ms] == [0, 0, 0, 1]
    assert metrics.TEST_PPL in ms[-1] and not any(metrics.TEST_PPL in m for m in ms[:-1])
    assert ms[-1][metrics.BEST_VAL_PPL] == min(m[metrics.VAL_PPL] for m in ms)
    assert ms[-1][metrics.VAL_PPL] < ms[0][metrics.VAL_PPL] < 2_000  # it learns (uniform: 10,000)
    assert all(a[metrics.WALL_S] < b[metrics.WALL_S] for a, b in zip(ms, ms[1:]))


def test_test_ppl_uses_the_best_val_weights(straight, corpus):
    # Evaluating the checkpointed best weights again gives the reported test_ppl.
    m, state = straight[-1]
    trial = rnn_train.setup(RNNConfig(**TINY), corpus)
    trial.model.load_state_dict(state["best_weights"])
    loss, _ = rnn_train.evaluate(trial, trial.test)
    assert math.exp(loss) == pytest.approx(m[metrics.TEST_PPL], rel=1e-9)


def test_resume_in_process_is_exact(straight, corpus):
    resumed = run_local(TINY, corpus, state=straight[1][1])
    assert [m[metrics.EPOCH] for m, _ in resumed] == [3, 4]
    for key in (metrics.VAL_PPL, metrics.TRAIN_LOSS, metrics.PARAM_NORM, metrics.TEST_PPL, metrics.STEP):
        assert resumed[-1][0][key] == straight[-1][0][key]


def test_divergence_ends_the_trial_with_a_report(corpus):
    reports = run_local({**TINY, "lr": 1e4, "clip": 0.0}, corpus)
    m, state = reports[-1]
    assert m[metrics.DIVERGED] == 1 and m[metrics.FINISHED] == 0 and state is None
    assert m[metrics.EPOCH] < TINY["epochs"]
    assert all(r[metrics.DIVERGED] == 0 for r, _ in reports[:-1])


def test_out_of_memory_ends_the_trial_with_a_report(corpus, monkeypatch):
    real_epoch = rnn_train.run_epoch

    def epoch(trial, lr):
        if trial.epoch == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_epoch(trial, lr)

    monkeypatch.setattr(rnn_train, "run_epoch", epoch)
    reports = run_local({**TINY, "epochs": 3}, corpus)
    assert [m[metrics.OOM] for m, _ in reports] == [0, 1]
    assert reports[-1][0][metrics.VAL_PPL] == math.inf and reports[-1][0][metrics.EPOCH] == 1
    assert set(metrics.COMMON) - set(metrics.FINAL) <= set(reports[-1][0])


def test_config_errors_before_training(corpus):
    with pytest.raises(ConfigError, match="hiden_size"):
        run_local({**TINY, "hiden_size": 32}, corpus)
    with pytest.raises(ConfigError, match="eval_fraction"):
        run_local({**TINY, "eval_fraction": 1e-5}, corpus)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            run_local({**TINY, "device": "cuda"}, corpus)


@pytest.fixture(scope="module")
def tuned(ray_session, corpus, tmp_path_factory):
    """One Tuner, three trials: ``straight`` runs 4 epochs; ``crash`` raises right after its epoch-2
    report on its first attempt and Ray restores it from that checkpoint; ``diverge`` has a huge lr."""
    return straight_and_crashed("tunelab.trainables.rnn.train", TINY, corpus, tmp_path_factory.mktemp("rnn_ray"),
                                crash_after=2, updates={"diverge": {"lr": 1e4, "clip": 0.0}})

def test_resume_through_ray_tune_is_exact(tuned):
    straight, resumed = tuned["straight"], tuned["crash"]
    a, b = straight.metrics, resumed.metrics
    assert a[metrics.EPOCH] == b[metrics.EPOCH] == 4 and a[metrics.FINISHED] == b[metrics.FINISHED] == 1
    assert b[metrics.VAL_PPL] == pytest.approx(a[metrics.VAL_PPL], abs=1e-6)
    for key in (metrics.TRAIN_LOSS, metrics.TEST_PPL, metrics.BEST_VAL_PPL, metrics.PARAM_NORM):
        assert b[key] == pytest.approx(a[key], abs=1e-6), key
    for key in (metrics.STEP, metrics.TOKENS, metrics.FLOPS):
        assert b[key] == a[key], key
    # The restored attempt went on from epoch 2's checkpoint: its wall-clock adds to the first attempt's.
    history = resumed.metrics_dataframe
    assert list(history[metrics.EPOCH])[-2:] == [3, 4]
    assert list(history[metrics.WALL_S]) == sorted(history[metrics.WALL_S])


def test_divergence_through_ray_tune(tuned):
    diverged = tuned["diverge"]
    assert diverged.error is None
    assert diverged.metrics[metrics.DIVERGED] == 1 and diverged.metrics[metrics.FINISHED] == 0
    assert metrics.final_status(diverged.metrics) == metrics.STATUS_DIVERGED
