"""The vit trainable: what it reports, test accuracy from the best weights, divergence, out of memory,
augmentation, and exact resume in process and through Ray Tune."""

from __future__ import annotations

import math

import pytest
import torch

import tunelab.trainables.vit.train as vit_train
from tunelab.trainables import REGISTRY, metrics
from tunelab.trainables._config import parse_config
from tunelab.trainables._errors import ConfigError, DataError
from tunelab.trainables.vit.config import ViTConfig
from tunelab.trainables.vit.data import load_digits
from _local import run_trial
from _ray_resume import straight_and_crashed

pytestmark = pytest.mark.slow  # every test here trains

TINY = dict(image_size=8, channels=1, patch_size=4, n_layer=1, n_head=2, n_embd=16, dropout=0.1, epochs=3,
            batch_size=64, train_fraction=0.5, lr=3e-3, warmup_epochs=0.5, device="cpu", seed=3)
ALWAYS = set(metrics.COMMON) - set(metrics.FINAL) - {metrics.TRAIN_PPL, metrics.VAL_PPL, metrics.BEST_VAL_PPL}


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def run_local(config, data, state=None):
    """Run one trial in this process, as ``train`` does; return its reports as (metrics, state copy) pairs."""
    return run_trial(vit_train.Trial(parse_config(ViTConfig, config), data), state)


def test_reports_every_metric_once_per_epoch(digits):
    reports = run_local(TINY, digits)
    images = int(1_297 * 0.5)  # 648 a epoch, in batches of 64: 11 steps
    assert [m[metrics.EPOCH] for m, _ in reports] == [1, 2, 3]
    for m, state in reports:
        assert ALWAYS <= set(m), ALWAYS - set(m)
        assert not {metrics.VAL_PPL, metrics.TEST_PPL} & set(m)  # no perplexity for a classifier
        assert m[metrics.TOKENS] == m[metrics.EPOCH] * images and m[metrics.STEP] == m[metrics.EPOCH] * 11
        assert m[metrics.FLOPS] == REGISTRY["vit"].flops_per_token(TINY) * m[metrics.TOKENS]
        assert m[metrics.PARAMS] == REGISTRY["vit"].summary(TINY)["params"]
        assert 0.0 <= m[metrics.TRAIN_ACC] <= 1.0 and 0.0 <= m[metrics.VAL_ACC] <= 1.0
        assert m[metrics.WALL_S] > 0 and m[metrics.MEM_PEAK_MB] > 0
        assert state is not None and state["epoch"] == m[metrics.EPOCH]
    assert [m[metrics.FINISHED] for m, _ in reports] == [0, 0, 1]
    last = reports[-1][0]
    assert metrics.TEST_ACC in last and not any(metrics.TEST_ACC in m for m, _ in reports[:-1])
    assert last[metrics.LR] == pytest.approx(0.0)  # the cosine ends at min_lr
    assert last[metrics.VAL_ACC] > 0.3 and last[metrics.VAL_LOSS] < reports[0][0][metrics.VAL_LOSS]


def test_test_accuracy_comes_from_the_best_validation_epoch(digits):
    reports = run_local(TINY, digits)
    accs = [m[metrics.VAL_ACC] for m, _ in reports]
    best = max(range(3), key=lambda i: (accs[i], -i))  # the first epoch with the best val_acc
    state = reports[-1][1]
    trial = vit_train.setup(parse_config(ViTConfig, TINY), digits)
    trial.model.load_state_dict(reports[best][1]["model"])
    assert state["best_val_acc"] == accs[best]
    for k, v in state["best_weights"].items():
        torch.testing.assert_close(v, reports[best][1]["model"][k])
    _, acc = vit_train.evaluate(trial, *trial.test)
    assert reports[-1][0][metrics.TEST_ACC] == acc


def test_divergence_ends_the_trial_with_a_report(digits):
    reports = run_local({**TINY, "diverge_loss": 0.5}, digits)
    (m, state), = reports
    assert m[metrics.DIVERGED] == 1 and m[metrics.FINISHED] == 0 and state is None
    assert metrics.final_status(m) == metrics.STATUS_DIVERGED


def test_out_of_memory_while_training_ends_the_trial_with_a_report(monkeypatch, digits):
    real = vit_train.run_epoch

    def epoch(trial, e):
        if e == 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(trial, e)

    monkeypatch.setattr(vit_train, "run_epoch", epoch)
    reports = run_local(TINY, digits)
    assert [m[metrics.OOM] for m, _ in reports] == [0, 1]
    assert reports[-1][0][metrics.EPOCH] == 1 and reports[-1][0][metrics.VAL_ACC] == 0.0


def test_config_and_data_errors_before_training(digits):
    with pytest.raises(ConfigError, match="image_size=32 does not match the digits data"):
        run_local({**TINY, "image_size": 32}, digits)
    with pytest.raises(ConfigError, match="channels=3"):
        run_local({**TINY, "channels": 3}, digits)
    with pytest.raises(DataError):
        vit_train.train(TINY, None)  # train's own check, before any trial is made


def test_augmentation_crops_within_the_padding_and_flips():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4) + 1
    g = torch.Generator().manual_seed(0)
    out = vit_train.augment(x, pad=1, flip=False, generator=g)
    assert out.shape == x.shape
    for b in range(2):  # each image is a 4×4 window of its zero-padded self, all channels alike
        padded = torch.nn.functional.pad(x[b], (1, 1, 1, 1))
        windows = [padded[:, i:i + 4, j:j + 4] for i in range(3) for j in range(3)]
        assert any(torch.equal(out[b], w) for w in windows)
    flips = vit_train.augment(x.repeat(32, 1, 1, 1), pad=0, flip=True, generator=g)
    flipped = [torch.equal(f, x[i % 2].flip(-1)) for i, f in enumerate(flips)]
    kept = [torch.equal(f, x[i % 2]) for i, f in enumerate(flips)]
    assert all(a or b for a, b in zip(flipped, kept)) and 8 < sum(flipped) < 56


def test_cifar10_format_data_trains_with_crop_and_flip(tmp_path):
    from test_vit_data import write_cifar

    from tunelab.trainables.vit.data import load_data

    write_cifar(tmp_path / "cifar10")
    data = load_data({"corpus": "cifar10", "dir": str(tmp_path / "cifar10")})
    config = dict(patch_size=8, n_layer=1, n_head=2, n_embd=16, epochs=1, batch_size=100, eval_batch_size=1000,
                  device="cpu")
    (m, _), = run_local(config, data)
    assert m[metrics.TOKENS] == 500 and m[metrics.FINISHED] == 1 and math.isfinite(m[metrics.VAL_LOSS])
    assert 0.0 <= m[metrics.TEST_ACC] <= 1.0


@pytest.mark.parametrize("parametrization", [{}, {"parametrization": "mup", "base_width": 8}])
def test_resume_in_process_is_exact(digits, parametrization):
    config = {**TINY, **parametrization}  # µP at twice its base width: the hidden weights' rates resume too
    straight = run_local(config, digits)
    resumed = run_local(config, digits, state=straight[0][1])
    assert [m[metrics.EPOCH] for m, _ in resumed] == [2, 3]
    for key in (metrics.VAL_ACC, metrics.VAL_LOSS, metrics.TRAIN_LOSS, metrics.PARAM_NORM, metrics.TEST_ACC):
        assert resumed[-1][0][key] == straight[-1][0][key]


def test_resume_through_ray_tune_is_exact(ray_session, digits, tmp_path):
    results = straight_and_crashed("tunelab.trainables.vit.train", TINY, digits, tmp_path, crash_after=2)
    straight, resumed = results["straight"], results["crash"]
    for r in (straight, resumed):
        assert r.metrics[metrics.EPOCH] == 3 and r.metrics[metrics.FINISHED] == 1
        assert r.metrics["training_iteration"] == 3
    for key in (metrics.VAL_ACC, metrics.VAL_LOSS, metrics.TRAIN_LOSS, metrics.TEST_ACC):
        assert resumed.metrics[key] == straight.metrics[key], key
