"""`tunelab inspect` and `tunelab prepare-data`: sizing a config without Ray, tokenising once."""

from __future__ import annotations

import json
import math

from tunelab import spaces
from tunelab.search.cli import main

GPT = str(spaces.CATALOGUE / "gpt_flop_budget.yaml")
REPORT_003 = ["n_embd=256", "n_layer=8", "n_head=8", "n_positions=64", "batch_size=256", "min_lr=5e-4"]


def _inspect(capsys, *sets):
    assert main(["inspect", GPT, *[a for s in sets for a in ("--set", s)]]) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_sizes_report_003s_final_model(capsys):
    out = _inspect(capsys, *REPORT_003)
    assert out["params"] == 19_200_768  # tied GPT: 50257*256 + 64*256 + 8 blocks + final norm
    assert out["feasible"] is True and out["reason"] is None
    tokens_per_step = 256 * 64
    assert out["steps"] == math.floor(1e16 / (out["flops_per_token"] * tokens_per_step))
    assert out["warmup_steps"] == out["steps"] // 10
    assert out["tokens"] == out["steps"] * tokens_per_step
    assert out["peak_lr"] == 5e-3  # max_lr = 10 x min_lr
    assert out["from_space"] == {}


def test_inspect_names_the_peak_learning_rate_once(capsys):
    out = _inspect(capsys, *REPORT_003, "lr_ratio=null", "max_lr=2e-3")
    assert out["config"]["max_lr"] == 2e-3 and "peak_lr" not in out  # max_lr is the peak: said once


def test_inspect_reports_an_infeasible_model_with_its_reason(capsys):
    out = _inspect(capsys, "n_embd=64", "n_layer=2", "n_head=2", "n_positions=32", "batch_size=32", "min_lr=1e-3")
    assert out["feasible"] is False
    assert "model_mb" in out["reason"]


def test_inspect_fills_searched_parameters_and_says_so(capsys):
    out = _inspect(capsys, "n_embd=256", "n_layer=4")
    assert set(out["from_space"]) == {"batch_size", "n_positions", "n_head", "min_lr"}
    assert out["config"]["batch_size"] == 32  # first choice


def test_inspect_bad_set_exits_2(capsys):
    assert main(["inspect", GPT, "--set", "n_embd=wide"]) == 2
    assert "fixed.n_embd" in capsys.readouterr().err


def test_prepare_data_missing_text_exits_2(tmp_path, capsys):
    assert main(["prepare-data", str(tmp_path / "none.txt"), "--tokenizer", "char", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tunelab: error: ") and "none.txt" in err


def test_inspect_an_rnn_search_gives_zaremba_small_sizes(capsys):
    assert main(["inspect", str(spaces.CATALOGUE / "ptb_zaremba.yaml")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["from_space"] == {"cell": "lstm", "dropout": 0.0, "lr": 1.0, "decay_start": 4, "lr_decay": 2.0}
    assert out["params"] == 4_653_200 and out["model_mb"] == 17.75
    assert out["flops_per_token"] == 15_808_000
    assert out["feasible"] is True
