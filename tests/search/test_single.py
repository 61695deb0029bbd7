"""One config of a search file in this process (search/_single.py): what `tunelab inspect` sizes and
`tunelab train` trains, called directly, on the synthetic trainable (no model: milliseconds)."""

from __future__ import annotations

import json

import pytest

from tunelab import spaces
from tunelab.search import _single

SPEC = {
    "name": "one-config", "trainable": "synthetic", "metric": "val_loss", "mode": "min",
    "fixed": {"floor": 0.5},
    "space": {
        "x": {"uniform": [-1.0, 0.5]},
        "y": {"loguniform": [0.01, 1.0]},
        "epochs": {"int": [1, 4]},
        "checkpoint": {"choice": [False, True]},
        "sleep_s": {"uniform": [0.0, 0.01], "when": {"checkpoint": True}},
    },
    "data": {"corpus": "none"},
}


def load(**changes) -> spaces.Search:
    return spaces.load({**SPEC, **changes})


def test_the_config_fills_the_space_from_the_warm_start_then_midpoints_and_first_choices():
    config, filled = _single.inspect_config(load(points_to_evaluate=[{"x": 0.25}]))
    assert filled == {"x": 0.25, "y": pytest.approx(0.1), "epochs": 2, "checkpoint": False}  # log-midpoint for y
    assert "sleep_s" not in filled and config["sleep_s"] == 0.0  # its condition does not hold: the default
    assert config["floor"] == 0.5 and config["x"] == 0.25
    assert _single.inspect_config(load())[1]["x"] == -0.25  # the midpoint without a warm start


def test_inspect_gives_the_config_its_costs_and_feasibility():
    out = _single.inspect(load())
    assert list(out) == ["config", "from_space", "flops_per_token", "feasible", "reason"]
    assert out["flops_per_token"] == 0 and out["feasible"] is True and out["reason"] is None
    json.dumps(out)  # what the CLI prints
    bad = _single.inspect(load(space={"x": {"uniform": [-1.0, 0.5]}}, fixed={"epochs": 0}))
    assert bad["feasible"] is False and bad["reason"] == "epochs=0 must be at least 1"


def test_prepare_training_checks_then_runs_the_trainable_in_this_process(capsys):
    training = _single.prepare_training(load())
    assert (training.trainable, training.file, training.data) == ("synthetic", "<dict>", None)
    assert training.from_space["epochs"] == 2 and training.config["floor"] == 0.5
    assert capsys.readouterr().out == ""  # nothing trained yet
    training.run()
    header, *rows = capsys.readouterr().out.splitlines()
    assert "val_loss" in header.split() and [r.split()[0] for r in rows] == ["1", "2"]


def test_prepare_training_refuses_an_infeasible_config_or_missing_data(tmp_path):
    with pytest.raises(spaces.SpecError, match="config: the config to train is infeasible: epochs=0"):
        _single.prepare_training(load(space={"x": {"uniform": [-1.0, 0.5]}}, fixed={"epochs": 0}))
    smoke = spaces.load(spaces.CATALOGUE / "ptb_smoke.yaml", [f"data.dir={tmp_path}"])
    with pytest.raises(spaces.SpecError, match="ptb_smoke.yaml: data: "):
        _single.prepare_training(smoke)
