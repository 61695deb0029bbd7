"""Bad search files: each exits 2 with one line naming the file and the field, and writes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tunelab import spaces
from tunelab.search.cli import main

GOOD = """\
name: t
trainable: rnn
fixed: {hidden_size: 16, epochs: 1}
space:
  lr: {loguniform: [0.5, 20.0]}
  optimizer: {choice: [sgd, momentum]}
  momentum: {uniform: [0.0, 0.9], when: {optimizer: momentum}}
budget: {trials: 2}
"""

BAD = {
    "syntax": ("name: [t\ntrainable: rnn\n", "", "YAML syntax error at line"),
    "unknown key": (GOOD + "budgett: {trials: 2}\n", "budgett", "Extra inputs are not permitted"),
    "unknown trainable": (GOOD.replace("trainable: rnn", "trainable: lstmx"), "trainable", "expected one of"),
    "unknown parameter": (GOOD.replace("  lr:", "  lrr:"), "space.lrr", "unknown parameter of trainable 'rnn'"),
    "bad bounds": (GOOD.replace("[0.5, 20.0]", "[20.0, 0.5]"), "space.lr", "low < high"),
    "log bound <= 0": (GOOD.replace("[0.5, 20.0]", "[0.0, 20.0]"), "space.lr", "must be > 0"),
    "wrong type": (GOOD.replace("hidden_size: 16", "hidden_size: big"), "fixed.hidden_size", "valid integer"),
    "wrong choice": (GOOD.replace("[sgd, momentum]", "[sgd, nesterov]"), "space.optimizer.choice", "nesterov"),
    "condition on missing": (GOOD.replace("when: {optimizer:", "when: {optimiser:"),
                             "space.momentum.when.optimiser", "neither in space nor fixed"),
    "negative budget": (GOOD.replace("trials: 2", "trials: -3"), "budget.trials", "greater than 0"),
    "unknown metric": (GOOD + "metric: val_pll\n", "metric", "unknown metric 'val_pll'"),
    "a key twice": (GOOD + "mode: min\nmode: max\n", "mode", "given twice (lines 9 and 10)"),
    "a block twice": (GOOD + "budget: {trials: 4}\n", "budget", "given twice (lines 8 and 9)"),
    "two distributions": (GOOD.replace("{loguniform: [0.5, 20.0]}", "{loguniform: [0.5, 20.0], int: [1, 2]}"),
                          "space.lr", "exactly one of"),
    "missing data dir": (GOOD + "data: {corpus: ptb, dir: /nonexistent/ptb}\n", "data.dir", "does not exist"),
    "unknown constraint": (GOOD + "constraints: {model_gb: [1, 2]}\n", "constraints.model_gb", "unknown constraint"),
    "grid larger than trials": (GOOD.replace("{choice: [sgd, momentum]}", "{grid: [sgd, momentum, adam]}")
                                .replace("when: {optimizer: momentum}", "when: {cell: lstm}")
                                .replace("fixed: {", "fixed: {cell: lstm, "), "budget.trials", "at least 3"),
    # Explicit configurations (configs:, seed report 000's experiments).
    "configs and space": (GOOD + "configs: [{optimizer: sgd}]\n", "configs", "either configs"),
    "configs unequal": (GOOD.split("space:")[0] + "configs: [{lr: 1.0, optimizer: sgd}, {lr: 2.0}]\n",
                        "configs[1]", "expected the parameters of configs[0] (lr, optimizer)"),
    "configs unknown parameter": (GOOD.split("space:")[0] + "configs: [{lrr: 1.0}]\n", "configs[0].lrr",
                                  "unknown parameter of trainable 'rnn'"),
    "configs wrong type": (GOOD.split("space:")[0] + "configs: [{label: 1, lr: 1.0}]\n", "configs[0].label",
                           "valid string"),
    "configs fixed too": (GOOD.split("space:")[0] + "configs: [{hidden_size: 8}]\n", "configs[0].hidden_size",
                          "also in fixed"),
    "configs fewer trials": (GOOD.split("space:")[0] + "configs: [{lr: 1.0}, {lr: 2.0}, {lr: 3.0}]\nbudget: {trials: 2}\n",
                             "budget.trials", "at least 3 expected, one trial per configuration"),
    "configs invalid config": (GOOD.split("space:")[0] + "configs: [{emb_size: 8, tie_weights: true}]\n", "configs[0]",
                               "not a valid config"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_exits_2_naming_file_and_field(case, tmp_path, capsys):
    text, field, expected = BAD[case]
    path = tmp_path / "search.yaml"
    path.write_text(text)
    storage = tmp_path / "runs"
    code = main(["run", str(path), "--storage", str(storage)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, err  # one line
    assert err.startswith(f"tunelab: error: {path}: {field}: " if field else f"tunelab: error: {path}: "), err
    assert expected in err
    assert not storage.exists()  # nothing started or written


def test_bad_override_names_the_key(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    assert main(["run", str(path), "--set", "budget.trials=zero", "--storage", str(tmp_path / "r")]) == 2
    assert "budget.trials" in capsys.readouterr().err


def test_missing_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tunelab: error: {tmp_path / 'nope.yaml'}: no such file, nor a search of the catalogue (")
    assert "ptb_smoke" in err and err.count("\n") == 1


def test_a_catalogue_name_finds_the_shipped_file_unless_a_file_of_that_name_is_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert spaces.find("ptb_smoke") == spaces.CATALOGUE / "ptb_smoke.yaml"
    assert spaces.find("ptb_smoke.yaml") == spaces.CATALOGUE / "ptb_smoke.yaml"
    assert spaces.load("ptb_smoke").spec.name == "ptb-smoke"
    (tmp_path / "ptb_smoke.yaml").write_text(GOOD)
    assert spaces.find("ptb_smoke.yaml") == Path("ptb_smoke.yaml")  # a file here wins
    assert "ptb_smoke" in spaces.catalogue() and "synthetic_load" in spaces.catalogue()


def test_console_script_exit_status(tmp_path):
    """The installed entry point really exits with status 2 (not just main's return value)."""
    path = tmp_path / "s.yaml"
    path.write_text(BAD["unknown trainable"][0])
    proc = subprocess.run([sys.executable, "-m", "tunelab", "run", str(path)], capture_output=True, text=True,
                          cwd=tmp_path, env={**__import__("os").environ})
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("expected one of: " + ", ".join(sorted(__import__("trainables").REGISTRY)))
    assert not (tmp_path / "runs").exists()


def test_overrides_merge_defaults_fixed_sampled_set(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    s = spaces.load(path, ["lr=0.75", "budget.trials=5", "epochs=3"])
    assert s.base_config["lr"] == 0.75 and "lr" not in s.space.params  # --set beats sampled
    assert s.base_config["epochs"] == 3  # --set beats fixed
    assert s.base_config["hidden_size"] == 16  # fixed beats defaults
    assert s.base_config["bptt"] == 20  # defaults
    assert s.spec.budget.trials == 5


def test_resolved_yaml_round_trips(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    s = spaces.load(path, ["dropout=0.1"])
    again = tmp_path / "resolved.yaml"
    again.write_text(s.resolved_yaml())
    assert spaces.load(again).spec == s.spec


def test_every_catalogue_file_loads_and_compiles():
    files = spaces.load_all(spaces.CATALOGUE)
    assert {"ptb_smoke.yaml", "ptb_zaremba.yaml", "ptb_optimizers.yaml"} <= set(files)
    for name, s in files.items():
        assert Path(s.file).read_text().startswith("#"), f"{name} must open with a comment"
        assert s.space.params, name
        for point in s.spec.points_to_evaluate:
            assert s.entry.check({**s.base_config, **point}, s.spec.constraints) is None, (name, point)


def test_loader_imports_no_torch():
    code = "from tunelab import spaces; import sys; spaces.load_all(spaces.CATALOGUE); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_configs_are_tried_in_turn_one_trial_each():
    s = spaces.load(spaces.CATALOGUE / "seed000_gpt.yaml")
    assert s.spec.budget.trials == 6 and s.spec.scheduler.name == "fifo"
    assert [c["label"] for c in s.space.grid_points()] == ["5", "6", "7", "8", "11", "12"]
    assert s.space.params["n_layer"].choice == [1, 2, 4]
    assert s.space.params["optimizer"].choice == ["adam", "adamw", "sgd", "momentum"]
    # --set fixes a parameter in every configuration; the resolved file loads to the same search.
    t = spaces.load(spaces.CATALOGUE / "seed000_lstm.yaml", ["num_layers=1"])
    assert [set(c) for c in t.space.grid_points()] == [{"label", "optimizer"}] * 6
    again = spaces.load({**__import__("yaml").safe_load(t.resolved_yaml())})
    assert again.space.grid_points() == t.space.grid_points() and again.spec.budget.trials == 6
