"""The GPT module: exact parameter counts, attention paths, norms, weight tying."""

from __future__ import annotations

import math

import pytest
import torch

from tunelab.trainables.gpt.config import GPT2_SMALL, GPTConfig, ModelConfig, param_count, params_nonembed
from tunelab.trainables.gpt.model import GPT, CausalSelfAttention

SMALL = dict(vocab_size=97, n_positions=24, n_layer=3, n_head=4, n_embd=32)


def test_gpt2_small_has_124_439_808_parameters():
    with torch.device("meta"):  # no memory, no init cost
        model = GPT(ModelConfig(**GPT2_SMALL))
    assert model.num_params() == 124_439_808 == param_count(ModelConfig(**GPT2_SMALL))
    assert model.num_params(non_embedding=True) == 124_439_808 - (50257 + 1024) * 768
    assert model.lm_head.weight is model.transformer.wte.weight


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("d, heads", [(64, 4), (768, 12)])
def test_attention_block_projection_parameters(bias, d, heads):
    with torch.device("meta"):
        attn = CausalSelfAttention(ModelConfig(n_embd=d, n_head=heads, bias=bias))
    expected = 4 * d * (d + 1) if bias else 4 * d * d  # seed 002, problem 2
    assert sum(p.numel() for p in attn.parameters()) == expected


@pytest.mark.parametrize("variant", [
    {}, {"bias": False}, {"tie_embeddings": False}, {"norm": "post"}, {"mlp_ratio": 3.0},
    {"bias": False, "tie_embeddings": False, "norm": "post"},
])
def test_closed_form_matches_module(variant):
    mc = ModelConfig(**SMALL, **variant)
    model = GPT(mc)
    assert model.num_params() == param_count(mc)
    assert model.num_params(non_embedding=True) == params_nonembed(mc)


def test_gpt_accepts_the_trial_config():
    cfg = GPTConfig(**SMALL, flop_budget=None, max_steps=1, eval_interval=1)
    assert GPT(cfg).num_params() == param_count(cfg)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_forward_shapes_loss_and_attention_path(norm):
    torch.manual_seed(0)
    model = GPT(ModelConfig(**SMALL, norm=norm)).eval()
    idx = torch.randint(0, 97, (2, 24))
    logits, loss = model(idx, idx)
    assert logits.shape == (2, 24, 97)
    assert abs(loss.item() - math.log(97)) < 0.5  # near uniform at init
    assert model(idx)[1] is None
    logits2, loss2, att = model(idx, idx, return_attention=True)
    assert att.shape == (2, 3, 4, 24, 24)  # (B, n_layer, n_head, T, T)
    torch.testing.assert_close(att.sum(-1), torch.ones(2, 3, 4, 24))
    assert torch.all(att.triu(diagonal=1) == 0)  # causal: no weight on later positions
    # The explicit path computes the same function as scaled_dot_product_attention.
    torch.testing.assert_close(logits2, logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss2, loss)


def test_causality_future_tokens_do_not_change_past_logits():
    torch.manual_seed(0)
    model = GPT(ModelConfig(**SMALL)).eval()
    a = torch.randint(0, 97, (1, 24))
    b = a.clone()
    b[0, 12:] = (b[0, 12:] + 1) % 97
    torch.testing.assert_close(model(a)[0][:, :12], model(b)[0][:, :12])


def test_too_long_sequence_raises_and_generate_crops():
    model = GPT(ModelConfig(**SMALL)).eval()
    with pytest.raises(ValueError, match="n_positions"):
        model(torch.zeros(1, 25, dtype=torch.long))
    out = model.generate(torch.zeros(1, 20, dtype=torch.long), 8, top_k=5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 28)
