"""µP for the GPT (``parametrization: mup``): the config field, SP exactly at base_width, the rules'
closed forms at 2× and 4× base_width, and the coordinate check."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tunelab import spaces
from tunelab.search.cli import main
from tunelab.trainables._config import parse_config
from tunelab.trainables._errors import ConfigError
from tunelab.trainables._skeleton import set_lr
from tunelab.trainables.gpt import coord_check
from tunelab.trainables.gpt.config import WIDTH, GPTConfig, param_count, summary
from tunelab.trainables.gpt.model import GPT
from tunelab.trainables.gpt.train import make_optimizer

BASE = 32
SHAPE = dict(vocab_size=97, n_positions=24, n_layer=2, n_head=4, batch_size=4)
HIDDEN = re.compile(r"h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")
CPU = torch.device("cpu")


def cfg(width: int = BASE, parametrization: str = "mup", **kw) -> GPTConfig:
    return parse_config(GPTConfig, {**SHAPE, "n_embd": width, "parametrization": parametrization, "base_width": BASE,
                                    "flop_budget": None, "max_steps": 10, "eval_interval": 10, **kw})


def built(c: GPTConfig, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(c)


def rates(c: GPTConfig, model: GPT, lr: float = 1e-3) -> dict[str, tuple[float, float]]:
    """Parameter name -> (learning rate, weight decay) in the optimizer the trainable makes, after
    the schedule sets ``lr``."""
    optimizer = make_optimizer(c, model, CPU)
    set_lr(optimizer, lr)
    by_id = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    return {name: by_id[id(p)] for name, p in model.named_parameters()}


# --- the config field -------------------------------------------------------------------------------

def test_sp_is_the_default_and_the_base_is_the_default_width():
    c = GPTConfig()
    assert c.parametrization == "sp" and c.base_width == c.n_embd == WIDTH
    assert (c.width_mult, c.hidden_lr_mult, c.hidden_init_mult, c.readout_mult) == (1.0, 1.0, 1.0, 1.0)
    assert c.attn_scale == 1 / math.sqrt(WIDTH // 4)
    # At the default width µP changes nothing either.
    assert parse_config(GPTConfig, {"parametrization": "mup"}).width_mult == 1.0


@pytest.mark.parametrize("bad, field", [
    ({"parametrization": "muP"}, "parametrization"),
    ({"parametrization": "ntk"}, "parametrization"),
    ({"base_width": 0}, "base_width"),
    ({"base_width": 64.5}, "base_width"),
    ({"optimizer": "sgd"}, "parametrization=mup"),
    ({"optimizer": "momentum"}, "parametrization=mup"),
])
def test_bad_values_raise_naming_the_field(bad, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        cfg(**bad)


def test_sp_keeps_every_optimizer():
    for optimizer in ("adamw", "adam", "sgd", "momentum"):
        assert cfg(parametrization="sp", optimizer=optimizer).optimizer == optimizer


def _search(**fields):
    return {"name": "mup", "trainable": "gpt", "metric": "val_ppl", "mode": "min",
            "fixed": {**SHAPE, "n_embd": 64, "flop_budget": None, "max_steps": 10, "eval_interval": 10},
            "budget": {"trials": 2}, **fields}


def test_settable_from_a_search_file_fixed_or_searched():
    fixed = spaces.load(_search(fixed={**_search()["fixed"], "parametrization": "mup", "base_width": 32}))
    assert fixed.base_config["parametrization"] == "mup" and fixed.base_config["base_width"] == 32
    searched = spaces.load(_search(space={"parametrization": {"choice": ["sp", "mup"]}}))
    assert searched.space.params["parametrization"].values == ["sp", "mup"]
    with pytest.raises(spaces.SpecError, match="parametrization"):
        spaces.load(_search(fixed={**_search()["fixed"], "parametrization": "mu"}))


def test_inspect_shows_the_field_and_what_it_sets(capsys):
    gpt = str(spaces.CATALOGUE / "gpt_flop_budget.yaml")
    sets = ["n_embd=256", "n_layer=8", "n_head=8", "n_positions=64", "batch_size=256", "min_lr=5e-4"]

    def inspect(*more):
        assert main(["inspect", gpt, *[a for s in (*sets, *more) for a in ("--set", s)]]) == 0
        return json.loads(capsys.readouterr().out)

    sp = inspect()
    assert sp["config"]["parametrization"] == "sp" and "width_mult" not in sp
    mup = inspect("parametrization=mup", "base_width=128")
    assert mup["config"]["parametrization"] == "mup" and mup["config"]["base_width"] == 128
    assert mup["width_mult"] == 2.0 and mup["hidden_lr"] == 2.5e-3  # peak 5e-3 (10 × min_lr), halved
    assert mup["hidden_init_mult"] == math.sqrt(0.5) and mup["readout_mult"] == 0.5
    assert mup["attn_scale"] == pytest.approx(math.sqrt(16) / 32, rel=1e-15)  # √d_head,base / d_head
    assert mup["params"] == sp["params"] and mup["flops_per_token"] == sp["flops_per_token"]


def test_parameter_and_flop_counts_are_the_parametrizations_own_business():
    sp, mup = cfg(2 * BASE, "sp"), cfg(2 * BASE)
    assert param_count(mup) == param_count(sp) == built(mup).num_params() == built(sp).num_params()
    assert summary(mup)["flops_per_token"] == summary(sp)["flops_per_token"]
    idx = torch.randint(0, 97, (2, 24))
    counted = []
    for c in (sp, mup):
        with FlopCounterMode(display=False) as counter:
            built(c)(idx)
        counted.append(counter.get_total_flops())
    assert counted[0] == counted[1]  # the multipliers are elementwise: no matmul FLOPs


# --- at base_width, µP is SP ------------------------------------------------------------------------

@pytest.mark.parametrize("variant", [{}, {"norm": "post"}, {"tie_embeddings": False}, {"bias": False}])
def test_at_base_width_mup_computes_what_sp_computes(variant):
    sp, mup = built(cfg(BASE, "sp", **variant)), built(cfg(BASE, **variant))
    for (name, a), (_, b) in zip(sp.named_parameters(), mup.named_parameters()):
        assert torch.equal(a, b), name
    idx = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(1))
    for model in (sp, mup):
        model.train()
    (logits_sp, loss_sp), (logits_mup, loss_mup) = sp(idx, idx), mup(idx, idx)
    assert torch.equal(logits_sp, logits_mup) and torch.equal(loss_sp, loss_mup)
    assert torch.equal(sp(idx, return_attention=True)[2], mup(idx, return_attention=True)[2])
    # And so do three AdamW steps: the same learning rate and decay reach every parameter.
    for c, model in ((cfg(BASE, "sp", **variant), sp), (cfg(BASE, **variant), mup)):
        optimizer = make_optimizer(c, model, CPU)
        for _ in range(3):
            model(idx, idx)[1].backward()
            optimizer.step()
            optimizer.zero_grad()
    for (name, a), (_, b) in zip(sp.named_parameters(), mup.named_parameters()):
        assert torch.equal(a, b), name


def test_at_base_width_every_parameter_has_sps_learning_rate_and_decay():
    sp, mup = cfg(BASE, "sp"), cfg(BASE)
    assert rates(mup, built(mup)) == rates(sp, built(sp))


# --- the rules at 2× and 4× base_width --------------------------------------------------------------
# Per parameter group, with m = width / base_width (Tensor Programs V, Table 3, Adam; model.py):
#   hidden matrices: learning rate × 1/m, AdamW decay × m, init std × 1/√m;
#   everything else: as SP; the readout's input × 1/m; attention logits × √d_head,base / d_head.

@pytest.mark.parametrize("mult, lr, decay", [(2, 5e-4, 0.2), (4, 2.5e-4, 0.4)])
def test_learning_rate_and_decay_per_parameter_group(mult, lr, decay):
    c = cfg(BASE * mult, weight_decay=0.1)
    got = rates(c, built(c), lr=1e-3)
    hidden = {n for n in got if HIDDEN.search(n)}
    assert len(hidden) == 4 * 2  # four matrices a block, two blocks
    for name, (rate, wd) in got.items():
        if name in hidden:
            assert (rate, wd) == (lr, decay), name
        elif name.endswith("weight") and name.split(".")[-2] in ("wte", "wpe"):
            assert (rate, wd) == (1e-3, 0.1), name  # embeddings (and the tied readout): as SP
        else:
            assert (rate, wd) == (1e-3, 0.0), name  # biases and LayerNorms: as SP, never decayed


def test_an_untied_readout_keeps_sps_rate():
    c = cfg(4 * BASE, tie_embeddings=False)
    assert rates(c, built(c))["lm_head.weight"] == (1e-3, 0.1)


@pytest.mark.parametrize("mult, init, readout, attn", [
    (2, math.sqrt(0.5), 0.5, math.sqrt(8) / 16),  # d_head 16 against 8 at base_width
    (4, 0.5, 0.25, math.sqrt(8) / 32),
])
def test_init_and_multipliers_per_parameter_group(mult, init, readout, attn):
    c = cfg(BASE * mult)
    assert (c.width_mult, c.hidden_lr_mult, c.hidden_init_mult, c.readout_mult) == (mult, 1 / mult, init, readout)
    assert c.attn_scale == pytest.approx(attn, rel=1e-15)
    sp, mup = built(cfg(BASE * mult, "sp")), built(c)  # the same draws, then scaled
    for (name, a), (_, b) in zip(sp.named_parameters(), mup.named_parameters()):
        assert torch.equal(b, a * init if HIDDEN.search(name) else a), name
    # What the draws then are: std 0.02/√m, and 0.02/√(2·n_layer)/√m for the residual projections.
    block = mup.transformer.h[0]
    for weight, std in ((block.attn.c_attn.weight, 0.02 * init), (block.mlp.c_fc.weight, 0.02 * init),
                        (block.attn.c_proj.weight, 0.02 / 2 * init), (block.mlp.c_proj.weight, 0.02 / 2 * init)):
        assert weight.std().item() == pytest.approx(std, rel=0.05)
    assert mup.transformer.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert [b.attn.scale for b in mup.transformer.h] == [c.attn_scale] * 2


@pytest.mark.parametrize("mult", [2, 4])
def test_the_readout_sees_its_input_times_base_over_width(mult):
    model = built(cfg(BASE * mult)).eval()
    seen = {}
    model.transformer.ln_f.register_forward_hook(lambda m, a, out: seen.update(ln_f=out))
    model.lm_head.register_forward_pre_hook(lambda m, args: seen.update(head=args[0]))
    logits, _ = model(torch.randint(0, 97, (2, 24)))
    assert torch.equal(seen["head"], seen["ln_f"] * (1 / mult))
    torch.testing.assert_close(logits, seen["ln_f"] @ model.lm_head.weight.T / mult)


def test_attention_scores_use_the_mup_scale_on_both_paths():
    model = built(cfg(4 * BASE)).eval()
    idx = torch.randint(0, 97, (2, 24))
    logits, _, att = model(idx, return_attention=True)
    torch.testing.assert_close(model(idx)[0], logits, atol=1e-5, rtol=1e-5)  # SDPA with scale= agrees
    # Layer 0's weights from its own q and k: softmax(q·kᵀ · √8/32), causally masked.
    block = model.transformer.h[0]
    x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(24))
    q, k, _ = block.attn.c_attn(block.ln_1(x)).split(4 * BASE, dim=2)
    q, k = (t.view(2, 24, 4, 32).transpose(1, 2) for t in (q, k))  # 4 heads of 32
    scores = (q @ k.transpose(-2, -1)) * (math.sqrt(8) / 32)
    scores = scores.masked_fill(~torch.ones(24, 24, dtype=torch.bool).tril(), float("-inf"))
    torch.testing.assert_close(att[:, 0], scores.softmax(-1))


# --- the coordinate check ---------------------------------------------------------------------------

def test_coordinate_check_logits_grow_with_width_under_sp_and_stay_flat_under_mup():
    # Widths 32..256 (base_width 32), 5 AdamW steps at lr 1e-2 on one fixed batch, seed 0: about a
    # second a parametrization. The slope of log mean|logit| against log width, measured on this
    # machine over seeds 0-9: sp +0.56 .. +1.06 (mean +0.88; the readout's Adam update moves each
    # logit by Θ(width), so the limit is ≥ 1), mup -0.14 .. +0.04 (mean -0.04; the limit is 0). Seed
    # 0 gives +0.97 and -0.03. The bounds sit between the two ranges with room on both sides.
    widths, steps = [32, 64, 128, 256], 5
    slopes = {}
    for p in ("sp", "mup"):
        result = coord_check.sizes({**coord_check.SMALL, "parametrization": p, "base_width": 32, "max_lr": 1e-2,
                                    "seed": 0}, widths, steps)
        assert len(result) == len(widths) and all(len(r) == steps + 1 for r in result)  # t = 0 .. steps
        slopes[p] = coord_check.slope(widths, [r[steps]["logits"] for r in result])
    assert slopes["sp"] > 0.5
    assert abs(slopes["mup"]) < 0.2


def test_slope_is_the_exponent_of_a_power_law():
    assert coord_check.slope([32, 64, 128], [3.0, 6.0, 12.0]) == pytest.approx(1.0)
    assert coord_check.slope([32, 64, 128], [5.0, 5.0, 5.0]) == 0.0
    assert coord_check.slope([1, 4, 16], [1.0, 0.5, 0.25]) == pytest.approx(-0.5)
