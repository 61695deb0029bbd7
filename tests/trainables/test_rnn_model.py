"""RNNModel: its parameter count is param_count's, shapes, state carrying, initialisation, tying."""

from __future__ import annotations

import pytest
import torch

from tunelab.trainables.rnn.config import RNNConfig, param_count
from tunelab.trainables.rnn.model import RNNModel, detach

CONFIGS = [
    dict(),  # Zaremba small LSTM, 4,653,200
    dict(cell="gru"),
    dict(tie_weights=True, dropout=0.5),
    dict(cell="gru", emb_size=64, hidden_size=96, num_layers=3),
    dict(cell="lstm", emb_size=50, hidden_size=30, num_layers=1),
]


@pytest.mark.parametrize("kw", CONFIGS, ids=str)
def test_real_parameter_count_equals_closed_form(kw):
    cfg = RNNConfig(**kw)
    model = RNNModel(cfg, 10_000)
    assert sum(p.numel() for p in model.parameters()) == param_count(cfg, 10_000)


def test_zaremba_small_real_count():
    assert sum(p.numel() for p in RNNModel(RNNConfig(), 10_000).parameters()) == 4_653_200


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_forward_shapes_and_carried_state(cell):
    torch.manual_seed(0)
    cfg = RNNConfig(cell=cell, hidden_size=16, num_layers=2)
    model = RNNModel(cfg, 50).eval()
    x = torch.randint(0, 50, (12, 3))
    hidden = model.init_hidden(3)
    logits, state = model(x, hidden)
    assert logits.shape == (12, 3, 50)
    for h in state if cell == "lstm" else (state,):
        assert h.shape == (2, 3, 16)
    # Running the sequence in two windows, carrying the state, gives the same logits as one window.
    first, mid = model(x[:5], hidden)
    second, _ = model(x[5:], detach(mid))
    torch.testing.assert_close(torch.cat([first, second]), logits)


def test_uniform_init_and_tying():
    cfg = RNNConfig(hidden_size=32, init_scale=0.05, tie_weights=True)
    model = RNNModel(cfg, 100)
    for name, p in model.named_parameters():
        assert p.abs().max() <= 0.05 and p.abs().max() > 0.04, name  # biases too, as in Zaremba's code
    assert model.decoder.weight is model.encoder.weight


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = RNNModel(RNNConfig(hidden_size=16, dropout=0.5), 30)
    x = torch.randint(0, 30, (4, 2))
    model.eval()
    a, _ = model(x, model.init_hidden(2))
    b, _ = model(x, model.init_hidden(2))
    torch.testing.assert_close(a, b)
    model.train()
    c, _ = model(x, model.init_hidden(2))
    assert not torch.allclose(a, c)
