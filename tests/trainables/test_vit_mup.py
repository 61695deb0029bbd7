"""µP for the ViT, which stacks the GPT's blocks: SP exactly at base_width, and the rules at 2× and 4×
(the patch projection, class token and positions are input weights, the head is the readout)."""

from __future__ import annotations

import math

import pytest
import torch

from tunelab.trainables._config import parse_config
from tunelab.trainables._errors import ConfigError
from tunelab.trainables._skeleton import set_lr
from tunelab.trainables.vit.config import ViTConfig, param_count, summary
from tunelab.trainables.vit.model import ViT
from tunelab.trainables.vit.train import make_optimizer

BASE = 16
SHAPE = dict(image_size=8, channels=1, patch_size=4, n_layer=2, n_head=2)
HIDDEN = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def cfg(width: int = BASE, parametrization: str = "mup", **kw) -> ViTConfig:
    return parse_config(ViTConfig, {**SHAPE, "n_embd": width, "parametrization": parametrization,
                                    "base_width": BASE, **kw})


def built(c: ViTConfig) -> ViT:
    torch.manual_seed(0)
    return ViT(c)


def rates(c: ViTConfig, model: ViT, lr: float = 1e-3) -> dict[str, tuple[float, float]]:
    optimizer = make_optimizer(c, model, torch.device("cpu"))
    set_lr(optimizer, lr)
    by_id = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    return {name: by_id[id(p)] for name, p in model.named_parameters()}


def test_the_field_comes_from_the_blocks_and_is_validated():
    assert ViTConfig().parametrization == "sp" and ViTConfig().base_width == ViTConfig().n_embd
    with pytest.raises(ConfigError, match="parametrization"):
        cfg(parametrization="mu")
    with pytest.raises(ConfigError, match="parametrization=mup"):
        cfg(optimizer="sgd")
    assert param_count(cfg(4 * BASE)) == param_count(cfg(4 * BASE, "sp"))
    assert "width_mult" not in summary(cfg(parametrization="sp"))
    assert summary(cfg(4 * BASE, lr=2e-3))["hidden_lr"] == 5e-4


def test_at_base_width_mup_computes_what_sp_computes():
    sp_cfg, mup_cfg = cfg(BASE, "sp"), cfg(BASE)
    sp, mup = built(sp_cfg), built(mup_cfg)
    images = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(sp(images), mup(images))
    assert rates(mup_cfg, mup) == rates(sp_cfg, sp)


@pytest.mark.parametrize("mult, lr, decay, init", [(2, 5e-4, 1e-3, math.sqrt(0.5)), (4, 2.5e-4, 2e-3, 0.5)])
def test_rules_per_parameter_group(mult, lr, decay, init):
    c = cfg(BASE * mult, weight_decay=5e-4)
    sp, mup = built(cfg(BASE * mult, "sp", weight_decay=5e-4)), built(c)
    got = rates(c, mup)
    for (name, a), (_, b) in zip(sp.named_parameters(), mup.named_parameters()):
        if name.endswith(HIDDEN):
            assert got[name] == (lr, decay) and torch.equal(b, a * init), name
        else:  # patch projection, class token, positions, head, biases, LayerNorms: as SP
            assert got[name] == (1e-3, 5e-4 if b.dim() >= 2 else 0.0) and torch.equal(b, a), name
    # The head (the readout) sees the class token's normalised output times 1/m; its bias is not scaled.
    seen = {}
    mup.ln_f.register_forward_hook(lambda m, args, out: seen.update(ln_f=out))
    mup.head.register_forward_pre_hook(lambda m, args: seen.update(head=args[0]))
    mup(torch.randn(3, 1, 8, 8))
    assert torch.equal(seen["head"], seen["ln_f"] * (1 / mult))
    assert [b.attn.scale for b in mup.blocks] == [c.attn_scale] * 2
    assert c.attn_scale == pytest.approx(math.sqrt(8) / (8 * mult), rel=1e-15)  # √d_head,base / d_head
