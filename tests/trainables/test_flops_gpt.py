"""gpt_flops_per_token against torch's FlopCounterMode on the real model, forward + backward."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tunelab.trainables.flops import gpt_flops_per_token
from tunelab.trainables.gpt.config import GPT2_SMALL, ModelConfig
from tunelab.trainables.gpt.model import GPT

# (n_layer, n_head, n_embd, seq_len, vocab_size, batch): seq_len 32..512, tied/untied, bias or not.
SHAPES = [
    dict(n_layer=2, n_head=2, n_embd=64, n_positions=32, vocab_size=65),
    dict(n_layer=4, n_head=4, n_embd=128, n_positions=64, vocab_size=1000, bias=False),
    dict(n_layer=2, n_head=8, n_embd=256, n_positions=128, vocab_size=8192, tie_embeddings=False),
    dict(n_layer=3, n_head=4, n_embd=96, n_positions=256, vocab_size=512, norm="post"),
    dict(n_layer=1, n_head=2, n_embd=32, n_positions=512, vocab_size=100),
    dict(n_layer=6, n_head=6, n_embd=192, n_positions=200, vocab_size=5000, mlp_ratio=3.0),
]


def counted_flops(mc: ModelConfig, batch: int = 2) -> int:
    """FlopCounterMode's count of one forward + backward of a (batch, n_positions) batch.

    Torch 2.13 counts nothing for the fused CPU attention kernel, so attention runs on the math backend.
    """
    torch.manual_seed(0)
    model = GPT(mc)
    x = torch.randint(0, mc.vocab_size, (batch, mc.n_positions))
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        _, loss = model(x, x)
        loss.backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"L{s['n_layer']}d{s['n_embd']}s{s['n_positions']}")
def test_flops_per_token_matches_flop_counter_within_2_percent(shape):
    mc = ModelConfig(**shape)
    ours = gpt_flops_per_token(mc) * 2 * mc.n_positions
    counted = counted_flops(mc)
    assert abs(ours - counted) / counted < 0.02, (ours, counted)


def test_flops_scale_with_seq_len_only_through_attention():
    mc = ModelConfig(n_layer=2, n_head=2, n_embd=64, n_positions=256, vocab_size=65)
    # Per token: 12·L·s·d for attention (scores + mixing, forward + backward).
    assert gpt_flops_per_token(mc, 256) - gpt_flops_per_token(mc, 128) == 12 * 2 * 128 * 64


def test_gpt2_small_flops_per_token():
    # 6N-style check: 6 × (matmul parameters incl. LM head) + 12·L·s·d, N = 85M + 38.6M.
    mc = ModelConfig(**GPT2_SMALL)
    n_matmul = 12 * 12 * 768 * 768 + 768 * 50257
    assert gpt_flops_per_token(mc) == 6 * n_matmul + 12 * 12 * 1024 * 768
