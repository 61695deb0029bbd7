"""vit_flops_per_image against torch's FlopCounterMode on the real model, forward + backward."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tunelab.trainables.flops import vit_flops_per_image
from tunelab.trainables.vit.config import ViTConfig
from tunelab.trainables.vit.model import ViT

SHAPES = [
    dict(n_layer=2),  # seed 001's 2-layer CIFAR-10 model
    dict(n_layer=6, norm="post"),
    dict(image_size=8, channels=1, patch_size=2, n_embd=64, n_head=4, n_layer=2),  # digits
    dict(n_layer=1, bias=False, patch_size=8, mlp_ratio=3.0),
    dict(image_size=16, channels=3, patch_size=2, n_embd=48, n_head=3, n_layer=3, num_classes=100),
]


def counted_flops(cfg: ViTConfig, batch: int = 2) -> int:
    """FlopCounterMode's count of one forward + backward of a batch of images (math attention backend:
    torch 2.13 counts nothing for the fused CPU kernel)."""
    torch.manual_seed(0)
    model = ViT(cfg)
    images = torch.randn(batch, cfg.channels, cfg.image_size, cfg.image_size)
    labels = torch.zeros(batch, dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        torch.nn.functional.cross_entropy(model(images), labels).backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(f"{k}{v}" for k, v in s.items()))
def test_flops_per_image_matches_flop_counter_within_2_percent(shape):
    cfg = ViTConfig(**shape)
    ours, counted = 2 * vit_flops_per_image(cfg), counted_flops(cfg)
    assert abs(ours - counted) / counted < 0.02, (ours, counted)
    assert ours == counted  # in fact exact: every matmul is counted, nothing else


def test_seed_001_two_layer_model():
    # 3 × forward − the patch projection's input gradient, which is never computed.
    patch, dense, attention, head = 64 * 48 * 256, 65 * (4 * 256**2 + 2 * 256 * 512), 2 * 65**2 * 256, 256 * 10
    forward = 2 * (patch + 2 * (dense + attention) + head)
    assert vit_flops_per_image(ViTConfig(n_layer=2)) == 3 * forward - 2 * patch == 438_064_128
