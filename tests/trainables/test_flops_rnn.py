"""rnn_flops_per_token against torch's FlopCounterMode on the real model, forward + backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from tunelab.trainables.flops import rnn_flops_per_token
from tunelab.trainables.rnn.config import RNNConfig
from tunelab.trainables.rnn.model import RNNModel

# Toggling oneDNN off and on makes torch warn about Intel-GPU TF32, irrelevant here.
pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration:UserWarning")

SHAPES = [
    dict(cell="lstm", hidden_size=32, num_layers=2, bptt=10),
    dict(cell="gru", hidden_size=32, num_layers=2, bptt=10),
    dict(cell="lstm", emb_size=48, hidden_size=64, num_layers=3, bptt=7, dropout=0.2),
    dict(cell="gru", hidden_size=40, num_layers=1, bptt=5, tie_weights=True),
    dict(cell="lstm", hidden_size=24, num_layers=1, bptt=35, tie_weights=True, dropout=0.5),
]


def counted_flops(cfg: RNNConfig, vocab: int, batch: int) -> int:
    """FlopCounterMode's count of one training window: forward, loss, backward.

    FlopCounterMode sees matmuls only as aten mm/addmm/bmm/convolution ops. On CPU, nn.LSTM runs as
    one oneDNN op (``aten.mkldnn_rnn_layer``) and on CUDA as one cuDNN op (``aten._cudnn_rnn``),
    which it does not count (torch 2.13: it then counts the decoder only). With oneDNN disabled,
    nn.LSTM falls back to ATen's per-step cell, the same arithmetic as addmm/mm calls it does count;
    nn.GRU takes that path on CPU anyway.
    """
    torch.manual_seed(0)
    model = RNNModel(cfg, vocab)
    x = torch.randint(0, vocab, (cfg.bptt, batch))
    y = torch.randint(0, vocab, (cfg.bptt, batch))
    counter = FlopCounterMode(display=False)
    with torch.backends.mkldnn.flags(enabled=False), counter:
        logits, _ = model(x, model.init_hidden(batch))  # a fresh (detached) state, as in training
        (F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1)) * cfg.bptt).backward()
    return counter.get_total_flops()


def _id(s: dict) -> str:
    return f"{s['cell']}-L{s['num_layers']}h{s['hidden_size']}t{s['bptt']}"


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
def test_flops_per_token_matches_flop_counter_within_2_percent(shape):
    cfg, vocab, batch = RNNConfig(**shape), 500, 4
    ours = rnn_flops_per_token(cfg, vocab) * cfg.bptt * batch
    counted = counted_flops(cfg, vocab, batch)
    assert abs(ours - counted) / counted < 0.02, (ours, counted)
    # In fact exact up to rounding the per-token count to an integer.
    assert abs(ours - counted) <= cfg.bptt * batch, (ours, counted)


def test_zaremba_small_flops_per_token():
    # 3 × forward (2·4·200·400 per LSTM layer × 2 layers + 2·200·10,000 decoder), less the gradient
    # into each window's detached initial state, 2·4·200·200·2 / 20 per token.
    assert rnn_flops_per_token(RNNConfig()) == 3 * (2 * 2 * 4 * 200 * 400 + 2 * 200 * 10_000) - 32_000 == 15_808_000


def test_gru_costs_three_quarters_of_the_lstm_recurrence():
    lstm, gru = RNNConfig(cell="lstm"), RNNConfig(cell="gru")
    decoder = 6 * 200 * 10_000
    assert (rnn_flops_per_token(gru) - decoder) * 4 == (rnn_flops_per_token(lstm) - decoder) * 3
