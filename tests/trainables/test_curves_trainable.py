"""The curves trainable without Ray: a bank written here is replayed exactly; values snap to its grid."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunelab import spaces
from tunelab.search.cli import main
from tunelab.trainables import REGISTRY, ConfigError, DataError, curves
from tunelab.trainables import metrics as M

BANK = "gpt_shakespeare_char"
# A 2 x 2 grid (n_layer x min_lr), the other parameters at one value, 2 recorded seeds: 8 curves.
LAYERS, LRS = (1, 4), (1e-4, 1e-2)
OTHER = {"n_embd": 64, "n_head": 4, "batch_size": 8, "warmup_frac": 0.02}


def _curve(trial: int, n: int, diverge: bool = False) -> list[dict]:
    # Made-up but distinct numbers: every value names its trial and its point.
    out = []
    for i in range(1, n + 1):
        loss = 3.0 - 0.1 * i - 0.01 * trial
        out.append({M.FLOPS: 1e9 * i + trial, M.WALL_S: 0.5 * i + 0.001 * trial, M.STEP: 10 * i, M.TOKENS: 640 * i,
                    M.TRAIN_LOSS: loss + 0.05, M.VAL_LOSS: loss, M.TRAIN_PPL: math.exp(loss + 0.05),
                    M.VAL_PPL: math.exp(loss), M.DIVERGED: 0, M.FINISHED: int(i == n)})
    if diverge:
        out[-1].update({M.VAL_LOSS: math.inf, M.VAL_PPL: math.inf, M.DIVERGED: 1, M.FINISHED: 0})
    return out


def write_bank(folder, diverge_trial: int | None = None) -> dict[tuple, list[list[dict]]]:
    """A bank of 8 curves under ``folder/gpt_shakespeare_char``; returns (n_layer, min_lr) -> curves by seed."""
    runs, hist, truth = [], [], {}
    trial = 0
    for n_layer in LAYERS:
        for lr in LRS:
            for seed in (0, 1):
                curve = _curve(trial, 3 + trial % 3, diverge=trial == diverge_trial)
                runs.append({"trial": trial, "status": "completed", "n_layer": n_layer, "min_lr": lr, **OTHER,
                             "seed": seed, M.PARAMS: 1000 * n_layer})
                hist += [{"trial": trial, "iteration": i, **p} for i, p in enumerate(curve, start=1)]
                truth.setdefault((n_layer, lr), []).append(curve)
                trial += 1
    out = folder / BANK
    out.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(runs[::-1]), out / curves.RUNS_FILE)  # order on disk must not matter
    pq.write_table(pa.Table.from_pylist(hist[::-1]), out / curves.HISTORY_FILE)
    return truth


@pytest.fixture
def bank(tmp_path):
    truth = write_bank(tmp_path)
    return curves.load_data({"dir": str(tmp_path)}), truth


def _replay(banks, **config):
    return curves.replay(REGISTRY["curves"].parse(config), banks)


def test_replays_every_recorded_point_in_order(bank):
    banks, truth = bank
    for (n_layer, lr), recorded in truth.items():
        seen = set()
        for seed in range(20):
            reports = _replay(banks, n_layer=n_layer, min_lr=lr, seed=seed)
            k = [c[0][M.FLOPS] for c in recorded].index(reports[0][M.FLOPS])  # flops name the trial
            seen.add(k)
            assert [{key: r[key] for key in curves.HISTORY_KEYS} for r in reports] == recorded[k]
            assert [r[M.PARAMS] for r in reports] == [1000 * n_layer] * len(reports)
            assert reports[-1][M.FINISHED] == 1 and all(r[M.FINISHED] == 0 for r in reports[:-1])
        assert seen == {0, 1}  # the noise seed draws both recorded seeds


def test_a_noise_seed_always_draws_the_same_curve(bank):
    banks, _ = bank
    assert _replay(banks, n_layer=1, min_lr=1e-4, seed=3) == _replay(banks, n_layer=1, min_lr=1e-4, seed=3)


def test_best_val_ppl_is_the_running_minimum_and_a_diverged_curve_ends_diverged(tmp_path):
    truth = write_bank(tmp_path, diverge_trial=0)
    banks = curves.load_data({"dir": str(tmp_path)})
    (diverged, _) = truth[(1, 1e-4)]
    reports = next(r for r in (_replay(banks, n_layer=1, min_lr=1e-4, seed=s) for s in range(20))
                   if r[0][M.FLOPS] == diverged[0][M.FLOPS])
    assert reports[-1][M.DIVERGED] == 1 and reports[-1][M.FINISHED] == 0
    assert M.final_status(reports[-1]) == M.STATUS_DIVERGED
    assert [r[M.BEST_VAL_PPL] for r in reports] == [p[M.VAL_PPL] for p in diverged[:-1]] + [diverged[-2][M.VAL_PPL]]


def test_off_grid_values_snap_to_the_nearest_on_a_log_scale(bank):
    banks, truth = bank
    b = banks[BANK]

    def key(**point):
        return dict(zip(b.grid, b.snap({**curves.BANKS[BANK], **OTHER, **point})))

    assert key(n_layer=1.9, min_lr=9e-4) == {"n_layer": 1, "min_lr": 1e-4, **OTHER}  # log: 2 is nearer 1 than 4
    assert key(n_layer=2.1, min_lr=1.1e-3) == {"n_layer": 4, "min_lr": 1e-2, **OTHER}
    assert key(n_layer=100, min_lr=1e-9, batch_size=1000, n_embd=3) == {"n_layer": 4, "min_lr": 1e-4, **OTHER}
    # the replay of an off-grid config is the nearest grid point's curve
    assert _replay(banks, n_layer=3.3, min_lr=0.05, seed=1) == _replay(banks, n_layer=4, min_lr=1e-2, seed=1)


def test_unset_parameters_take_the_bank_defaults_and_foreign_ones_are_refused():
    cfg = REGISTRY["curves"].parse({"n_layer": 4})
    assert cfg.point() == {**curves.BANKS[BANK], "n_layer": 4}
    with pytest.raises(ConfigError, match="hidden_size"):
        REGISTRY["curves"].parse({"hidden_size": 200})
    with pytest.raises(ConfigError, match="bank"):
        REGISTRY["curves"].parse({"bank": "nope"})


def test_a_missing_bank_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no curve bank"):
        curves.load_data({"dir": str(tmp_path / "empty")})
    write_bank(tmp_path / "half")
    (tmp_path / "half" / BANK / curves.HISTORY_FILE).unlink()
    with pytest.raises(DataError, match=curves.HISTORY_FILE):
        curves.load_data({"dir": str(tmp_path / "half")})
    with pytest.raises(DataError, match="was not loaded"):
        curves.replay(REGISTRY["curves"].parse({}), {})


def test_cli_exits_2_naming_data_when_the_bank_is_missing(tmp_path, capsys):
    file = spaces.CATALOGUE / "bench_curves_gpt.yaml"
    code = main(["run", str(file), "--set", f"data.dir={tmp_path}", "--storage", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    assert "bench_curves_gpt.yaml" in err and "data" in err and "no curve bank" in err
    assert not (tmp_path / "runs" / "bench-curves-gpt").exists()
