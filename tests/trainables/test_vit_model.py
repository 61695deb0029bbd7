"""The ViT: seed report 001's exact parameter counts, its config, and the encoder's attention."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from tunelab.trainables import REGISTRY
from tunelab.trainables._config import parse_config
from tunelab.trainables._errors import ConfigError
from tunelab.trainables.gpt.model import Block
from tunelab.trainables.vit.config import ViTConfig, check, param_count, params_nonembed, summary
from tunelab.trainables.vit.model import ViT
from tunelab.trainables.vit.schedule import step_lr

# Seed report 001, Table 1: parameters by depth, pre- and post-norm alike.
TABLE_1 = {2: 1_086_730, 4: 2_140_938, 6: 3_195_146}
DIGITS = dict(image_size=8, channels=1, patch_size=2, n_embd=32, n_head=4, n_layer=2)


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("n_layer", sorted(TABLE_1))
def test_parameter_counts_equal_seed_001_table_1(n_layer, norm):
    cfg = ViTConfig(n_layer=n_layer, norm=norm)  # the CIFAR-10 default shape
    assert param_count(cfg) == TABLE_1[n_layer]
    assert ViT(cfg).num_params() == TABLE_1[n_layer]


def test_the_default_shape_is_seed_001s():
    cfg = ViTConfig()
    assert (cfg.n_embd, cfg.mlp_width, cfg.bias, cfg.patch_size, cfg.image_size, cfg.channels) == (256, 512, True, 4, 32, 3)
    assert (cfg.num_patches, cfg.n_positions, cfg.num_classes) == (64, 65, 10)
    model = ViT(cfg)
    assert model.pos_embed.shape == (1, 65, 256) and model.cls_token.shape == (1, 1, 256)
    assert model.head.out_features == 10 and isinstance(model.ln_f, torch.nn.LayerNorm)
    # The arithmetic of config.param_count, term by term: patches, class token, positions, 2 blocks, head.
    assert 12_544 + 256 + 16_640 + 2 * 527_104 + 512 + 2_570 == TABLE_1[2]


@pytest.mark.parametrize("variant", [
    {}, {"norm": "post"}, {"bias": False}, {"mlp_ratio": 3.0, "n_layer": 1}, DIGITS, {**DIGITS, "num_classes": 3},
    {"patch_size": 8, "n_embd": 48, "n_head": 3, "n_layer": 3},
])
def test_closed_form_matches_module(variant):
    cfg = ViTConfig(**variant)
    model = ViT(cfg)
    assert model.num_params() == param_count(cfg)
    assert model.num_params(non_embedding=True) == params_nonembed(cfg)
    assert summary(cfg)["params"] == param_count(cfg)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_forward_gives_class_logits_near_uniform_at_init(norm):
    torch.manual_seed(0)
    cfg = ViTConfig(**{**DIGITS, "norm": norm})
    model = ViT(cfg).eval()
    logits = model(torch.randn(5, 1, 8, 8))
    assert logits.shape == (5, 10)
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(5))
    assert abs(loss.item() - math.log(10)) < 0.5


def test_encoder_blocks_attend_to_every_position():
    # The GPT's Block without the mask: the first position now depends on the last one.
    torch.manual_seed(0)
    cfg = ViTConfig(**DIGITS)
    x = torch.randn(1, 6, cfg.n_embd)
    y = x.clone()
    y[0, -1] = torch.randn(cfg.n_embd)  # not a constant shift, which LayerNorm would remove
    encoder, causal = Block(cfg, causal=False).eval(), Block(cfg).eval()
    causal.load_state_dict(encoder.state_dict())
    assert not torch.allclose(encoder(x)[0][0, 0], encoder(y)[0][0, 0])
    torch.testing.assert_close(causal(x)[0][0, 0], causal(y)[0][0, 0])
    # The explicit path (return_attention) computes the same unmasked attention as the fused one.
    out, att = encoder(x, return_attention=True)
    torch.testing.assert_close(out, encoder(x)[0], rtol=1e-5, atol=1e-5)
    assert (att[0, :, 0, -1] > 0).all()


@pytest.mark.parametrize("bad, field", [
    ({"patch_size": 3}, "patch_size"), ({"n_head": 3}, "n_embd"), ({"norm": "sandwich"}, "norm"),
    ({"min_lr": 1.0}, "min_lr"), ({"warmup_epochs": 11}, "warmup_epochs"), ({"num_classes": 1}, "num_classes"),
    ({"optimizer": "lion"}, "optimizer"), ({"vocab_size": 10}, "vocab_size"),
])
def test_bad_configs_raise_naming_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        parse_config(ViTConfig, bad)


def test_registry_entry_and_constraints():
    entry = REGISTRY["vit"]
    assert entry.parse({}) == ViTConfig()
    assert entry.flops_per_token({}) == ViTConfig().flops_per_image
    assert {"norm", "n_layer", "patch_size", "image_size", "optimizer", "lr_schedule"} <= set(entry.parameters)
    assert not {"vocab_size", "n_positions", "tie_embeddings"} & set(entry.parameters)  # GPT-only fields
    cfg = ViTConfig(n_layer=2)
    assert check(cfg, {"params": [1_000_000, 1_100_000]}) is None
    assert "outside" in check(cfg, {"params": [2_000_000, 3_000_000]})
    assert "unknown constraint" in check(cfg, {"gpu_memory": 0.5})


def test_schedules_per_step():
    cfg = ViTConfig(epochs=4, lr=1e-3, warmup_epochs=1, lr_schedule="cosine")
    assert step_lr(cfg, 5, 10) == pytest.approx(5e-4)  # half-way through the warm-up
    assert step_lr(cfg, 10, 10) == pytest.approx(1e-3)
    assert step_lr(cfg, 25, 10) == pytest.approx(5e-4)  # the cosine's middle
    assert step_lr(cfg, 40, 10) == pytest.approx(0.0)
    step = ViTConfig(epochs=4, lr=1e-3, lr_schedule="step", lr_decay=10, decay_every=2)
    assert [step_lr(step, t, 10) for t in (1, 20, 21, 40)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
    assert step_lr(ViTConfig(lr_schedule="constant"), 1000, 10) == ViTConfig().lr


def test_config_imports_no_torch():
    code = "import tunelab.trainables.vit as vit, sys; vit.param_count(vit.ViTConfig()); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
