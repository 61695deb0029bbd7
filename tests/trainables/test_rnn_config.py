"""RNNConfig: parsing errors, parameter counts in closed form, constraints, and the registry entry."""

from __future__ import annotations

import pytest

from tunelab.trainables import REGISTRY, ConfigError
from tunelab.trainables._config import parse_config
from tunelab.trainables.rnn.config import RNNConfig, check, model_mb, param_count, params_nonembed


def test_defaults_are_zaremba_small():
    cfg = RNNConfig()
    shape = (cfg.cell, cfg.hidden_size, cfg.emb, cfg.num_layers, cfg.bptt, cfg.batch_size)
    assert shape == ("lstm", 200, 200, 2, 20, 20)
    assert (cfg.lr, cfg.lr_decay, cfg.decay_start, cfg.epochs, cfg.clip, cfg.init_scale) == (1.0, 2.0, 4, 13, 5.0, 0.1)


def test_zaremba_small_lstm_untied_has_4_653_200_parameters():
    # Embedding 10,000×200, two LSTM layers of 4·(200·200 + 200·200 + 2·200), decoder 200×10,000 + 10,000.
    assert param_count(RNNConfig()) == 2_000_000 + 2 * 321_600 + 2_010_000 == 4_653_200
    assert params_nonembed(RNNConfig()) == 2_653_200
    assert model_mb(RNNConfig()) == pytest.approx(4_653_200 * 4 / 2**20)


def test_gru_and_tied_counts():
    # GRU: 3 gate blocks per layer instead of 4.
    assert param_count(RNNConfig(cell="gru")) == 2_000_000 + 2 * 3 * 80_400 + 2_010_000 == 4_492_400
    # Tied: the decoder's 200×10,000 weights are the embedding's; its biases remain.
    assert param_count(RNNConfig(tie_weights=True)) == 4_653_200 - 2_000_000
    assert params_nonembed(RNNConfig(tie_weights=True)) == 2 * 321_600 + 10_000
    # Embedding narrower than the hidden state: only layer 1's input weights change.
    cfg = RNNConfig(cell="gru", emb_size=100, hidden_size=50, num_layers=3)
    layer1, layer_n = 3 * (100 * 50 + 50 * 50 + 100), 3 * (50 * 50 + 50 * 50 + 100)
    assert param_count(cfg, vocab_size=1000) == 1000 * 100 + layer1 + 2 * layer_n + 50 * 1000 + 1000


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"hiden_size": 200}, "hiden_size"),  # unknown key
        ({"hidden_size": "wide"}, "hidden_size"),  # wrong type
        ({"cell": "rnn"}, "cell"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"lr_schedule": "linear"}, "lr_schedule"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"num_layers": 0}, "num_layers"),
        ({"bptt": 0}, "bptt"),
        ({"batch_size": -1}, "batch_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"train_fraction": 0.0}, "train_fraction"),
        ({"eval_fraction": 1.5}, "eval_fraction"),
        ({"lr": 0.0}, "lr"),
        ({"lr_decay": 0.5}, "lr_decay"),
        ({"momentum": 1.0}, "momentum"),
        ({"clip": -1.0}, "clip"),
        ({"diverge_loss": 0.0}, "diverge_loss"),
        ({"device": "tpu"}, "device"),
        ({"tie_weights": True, "emb_size": 100}, "tie_weights"),
    ],
)
def test_nonsense_configs_raise_config_error(bad, field):
    with pytest.raises(ConfigError, match=field):
        parse_config(RNNConfig, bad)


def test_construction_raises_value_error_directly():
    with pytest.raises(ValueError, match="emb_size"):
        RNNConfig(tie_weights=True, emb_size=100)


def test_check_constraints():
    cfg = RNNConfig()  # 4,653,200 parameters, 17.75 MB
    assert check(cfg, {}) is None
    assert check(cfg, {"model_mb": [10, 20], "params": [4e6, 5e6]}) is None
    assert "model_mb 17.75 outside [50.00, 98.00]" in check(cfg, {"model_mb": [50, 98]})
    assert "params" in check(cfg, {"params": [0, 1e6]})
    assert "[lo, hi]" in check(cfg, {"params": 5})
    reason = check(cfg, {"gpu_memory": 0.5})
    assert "gpu_memory" in reason and "model_mb" in reason


def test_registry_entry():
    entry = REGISTRY["rnn"]
    assert "dropout" in entry.parameters and "eval_fraction" in entry.parameters
    assert entry.defaults()["hidden_size"] == 200
    assert entry.check({"hidden_size": 650}, {"model_mb": [0, 20]}).startswith("model_mb")
    assert "hiden" in entry.check({"hiden": 1})
    assert entry.flops_per_token({}) == 15_808_000
