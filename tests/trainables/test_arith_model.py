"""The arithmetic trainable's models: seed 002's closed-form parameter counts, and FLOPs against FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tunelab.trainables import REGISTRY
from tunelab.trainables.arith.config import model_config, param_count, params_nonembed, rnn_config
from tunelab.trainables.gpt.config import ModelConfig
from tunelab.trainables.gpt.model import GPT, CausalSelfAttention
from tunelab.trainables.rnn.model import RNNModel

pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration:UserWarning")


def cfg(**kw):
    return REGISTRY["arith"].parse(kw)


def n(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build(c):
    return GPT(model_config(c)) if c.model == "gpt" else RNNModel(rnn_config(c), c.vocab_size)


# --- seed 002's closed forms ----------------------------------------------------------------------

def mha(num_heads: int, head_size: int, bias: bool) -> int:
    """Seed 002, problem 2.1: 4((h·s)² + h·s) with bias, 4(h·s)² without."""
    d = num_heads * head_size
    return 4 * (d * d + d) if bias else 4 * d * d


def decoder(d: int, multiplier: float, layers: int) -> int:
    """Seed 002, problem 2.2 with bias = True: L((4 + 2·multiplier)·d² + 8d)."""
    return layers * int((4 + 2 * multiplier) * d * d + 8 * d)


def lstm(d_x: int, d_h: int, layers: int) -> int:
    """Seed 002, problem 1 with bias = True: 4(d_x + L + (2L - 1)·d_h)·d_h."""
    return 4 * (d_x + layers + (2 * layers - 1) * d_h) * d_h


@pytest.mark.parametrize("heads, head_size", [(4, 32), (8, 16), (1, 64)])
def test_multi_headed_attention_has_4d_d_plus_1_parameters(heads, head_size):
    d = heads * head_size
    with_bias = CausalSelfAttention(ModelConfig(n_embd=d, n_head=heads, bias=True))
    without = CausalSelfAttention(ModelConfig(n_embd=d, n_head=heads, bias=False))
    assert n(with_bias) == mha(heads, head_size, True) == 4 * d * (d + 1)
    assert n(without) == mha(heads, head_size, False)
    assert mha(4, 32, True) == 66_048  # the default width, d = 128


def test_the_default_decoder_matches_seed_002_exactly():
    c = cfg()
    model = build(c)
    assert n(model.transformer.h) == decoder(128, 4, 2) == 395_264
    # n_params_nonembed adds the final LayerNorm (2d); n_params the token (38·128) and position (6·128) tables.
    assert params_nonembed(c) == 395_264 + 256 == model.num_params(non_embedding=True)
    assert param_count(c) == 395_520 + 38 * 128 + 6 * 128 == n(model) == 401_152


def test_the_default_lstm_matches_seed_002_plus_torchs_second_bias():
    c = cfg(model="lstm")
    model = build(c)
    # nn.LSTM keeps two bias vectors per gate (b_ih and b_hh): 4·L·d_h more than the report's one.
    assert n(model.rnn) == lstm(128, 128, 2) + 4 * 2 * 128 == 263_168 + 1_024
    # P without the embedding: the recurrent stack and the decoder (128·38 + 38).
    assert params_nonembed(c) == 264_192 + 128 * 38 + 38 == n(model) - 38 * 128


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("model", ["gpt", "lstm", "gru"])
def test_counts_of_the_size_grid_equal_the_real_models(model, layers, d):
    c = cfg(model=model, num_layers=layers, d_model=d)
    m = build(c)
    assert param_count(c) == n(m)
    if model == "gpt":
        assert n(m.transformer.h) == decoder(d, 4, layers)
        assert params_nonembed(c) == m.num_params(non_embedding=True)
    else:
        assert params_nonembed(c) == n(m) - n(m.encoder)
        if model == "lstm":
            assert n(m.rnn) == lstm(d, d, layers) + 4 * layers * d


@pytest.mark.parametrize("shape", [
    dict(model="gpt"),
    dict(model="gpt", num_layers=3, d_model=64, num_heads=2, orders=[2, 3], p=11),
    dict(model="lstm"),
    dict(model="lstm", num_layers=1, d_model=64, orders=[2, 3], p=11),
    dict(model="gru", num_layers=3, d_model=32),
], ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_flops_per_token_matches_flop_counter_within_2_percent(shape):
    """One training step's forward, masked loss and backward, counted by FlopCounterMode.

    oneDNN is off so that nn.LSTM runs ATen's per-step cell, and attention runs on the math backend:
    the counter sees neither fused kernel (tests/trainables/test_flops_rnn.py, test_flops_gpt.py).
    """
    c = cfg(**shape)
    torch.manual_seed(0)
    model, batch = build(c), 8
    x = torch.randint(0, c.vocab_size, (batch, c.seq_len))
    answer = torch.full((batch,), 4)
    target = torch.randint(0, c.p, (batch,))
    counter = FlopCounterMode(display=False)
    with torch.backends.mkldnn.flags(enabled=False), sdpa_kernel(SDPBackend.MATH), counter:
        if c.model == "gpt":
            logits, _ = model(x)
        else:
            logits = model(x.t(), model.init_hidden(batch))[0].transpose(0, 1)
        F.cross_entropy(logits[torch.arange(batch), answer], target).backward()
    counted = counter.get_total_flops()
    ours = c.flops_per_token * batch * c.seq_len
    assert abs(ours - counted) / counted < 0.02, (ours, counted)
    assert abs(ours - counted) <= batch * c.seq_len, (ours, counted)  # in fact exact, up to rounding
