"""A lab's own trainables as plugins: entry points of group ``tunelab.trainables`` (trainables/_registry.py).

Each test writes installed distributions into a temporary folder (a package and its ``.dist-info``
with ``entry_points.txt``, which is what ``pip install`` leaves), puts the folder on the path, and
lets ``importlib.metadata`` find them: one good plugin and three broken ones.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tunelab import _mlflow
from tunelab import trainables
from tunelab.trainables import Registry
from tunelab.trainables import tags

ROOT = Path(__file__).resolve().parents[2]

LABTRAIN = '''\
"""A lab's model, as a tunelab trainable: its config, check, and Ray Tune function."""

from tunelab.trainables import Entry, config_dataclass, metrics, parse_config


@config_dataclass
class QuadConfig:
    a: float = 0.0
    epochs: int = 2
    seed: int = 0


def check(cfg, constraints):
    if "a_max" in constraints and cfg.a > constraints["a_max"]:
        return f"a {cfg.a:.3g} above a_max {constraints['a_max']}"
    return None


def flops(cfg):
    return 0


def load_data(data):
    return None


def train(config, data=None):
    from ray import tune

    cfg = parse_config(QuadConfig, config)
    for epoch in range(1, cfg.epochs + 1):
        loss = 1.0 + (cfg.a - 0.5) ** 2 + 1.0 / epoch
        tune.report({metrics.EPOCH: epoch, metrics.VAL_LOSS: loss, metrics.FINISHED: int(epoch == cfg.epochs)})


NOT_A_TRAINABLE = 42

ENTRY = Entry(name="quad", config_cls=QuadConfig, train_module="labtrain", constraint_check=check, flops=flops,
              data_loader=load_data, constraint_names=("a_max",))
'''

# A lab's models as plain functions (entry points naming functions, not Entries): no config class, no
# `finished` flag, metric names of their own.
LABFUNC = '''\
import tunelab


def train(config):
    for epoch in range(1, 4):
        tunelab.report({"epoch": epoch, "val_mae": abs(config["a"] - 0.3) + 1.0 / epoch, "grad_norm": 0.5})


def boom(config):
    raise ValueError(f"no good: a={config['a']:.2f}")
'''

FUNC_SEARCH = """\
name: fquad-search
trainable: fquad
metric: val_mae
mode: min
space:
  a: {uniform: [0.0, 1.0]}
sampler: {name: random, seed: 0}
scheduler: {name: fifo}
budget: {trials: 2, max_concurrent: 2, max_failures: 0}
"""

SEARCH = """\
# A search over the lab's plugin trainable `quad` (tests/trainables/test_plugins.py).
name: quad-search
trainable: quad
metric: val_loss
mode: min
fixed: {epochs: 2}
space:
  a: {uniform: [0.0, 1.0]}
constraints: {a_max: 0.95}
sampler: {name: random, seed: 0}
scheduler: {name: fifo}
budget: {trials: 2, max_concurrent: 2}
resources: {cpu: 1, gpu: 0}
data: {corpus: none}
"""


def _dist(root: Path, name: str, entry_points: str, modules: dict[str, str]) -> None:
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tunelab.trainables]\n" + textwrap.dedent(entry_points))
    for module, text in modules.items():
        (root / module).mkdir()
        (root / module / "__init__.py").write_text(text)


@pytest.fixture
def plugins(tmp_path):
    root = tmp_path / "site"
    _dist(root, "labtrain", "quad = labtrain:ENTRY\n", {"labtrain": LABTRAIN})
    _dist(root, "labbroken", """\
        broken = labbroken:ENTRY
        notentry = labtrain:NOT_A_TRAINABLE
        synthetic = labtrain:ENTRY
        """, {"labbroken": "import a_module_that_is_not_installed\n"})
    _dist(root, "labfunc", "fquad = labfunc:train\nfboom = labfunc:boom\n", {"labfunc": LABFUNC})
    yield root
    for module in ("labtrain", "labfunc"):
        sys.modules.pop(module, None)  # imported from a folder that is gone after the test


def test_plugins_load_lazily_once_and_a_broken_one_is_one_line_naming_it(plugins, monkeypatch, caplog):
    builtin = {"synthetic": trainables.REGISTRY["synthetic"]}  # the process's registry, loaded before
    monkeypatch.syspath_prepend(str(plugins))
    registry = Registry(builtin)
    assert "labtrain" not in sys.modules  # nothing loaded before the registry is used
    with caplog.at_level(logging.WARNING, logger="tunelab.trainables"):
        assert sorted(registry) == ["fboom", "fquad", "quad", "synthetic"]
        assert registry["quad"].name == "quad" and registry.get("broken") is None
        assert len(registry) == 4 and "quad" in registry
    assert registry.origin("synthetic") == "built-in"
    assert registry.origin("quad") == "plugin labtrain:ENTRY from labtrain 0.1"
    assert sorted(registry.broken) == ["broken", "notentry", "synthetic"]
    assert "ModuleNotFoundError: No module named 'a_module_that_is_not_installed'" in registry.broken["broken"]
    assert "labtrain:NOT_A_TRAINABLE is a int, neither a function nor a tunelab.trainables.Entry" in \
        registry.broken["notentry"]
    fquad = registry["fquad"]  # a plain function: an open config, feasible, no FLOPs, no data, any metric
    assert fquad.open and fquad.metrics is None and fquad.parameters == ()
    assert fquad.check({"a": 5, "anything": "x"}) is None and fquad.flops_per_token({"a": 1}) is None
    assert fquad.load_data({"corpus": "ptb"}) is None and fquad.trainable.__name__ == "train"
    assert "the name 'synthetic' is taken by another trainable" in registry.broken["synthetic"]
    assert registry["synthetic"] is trainables.REGISTRY["synthetic"]  # the built-in one stays
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all("\n" not in line for line in lines)  # once each, one line each
    assert any(line.startswith("tunelab: trainable plugin 'broken' not loaded (plugin labbroken:ENTRY") for line in lines)
    described = registry.describe("quad")
    assert described["parameters"] == [{"name": "a", "type": "float", "default": 0.0},
                                       {"name": "epochs", "type": "int", "default": 2},
                                       {"name": "seed", "type": "int", "default": 0}]
    assert described["constraints"] == ["a_max"]


def _env(plugins: Path) -> dict[str, str]:
    # The driver and every Ray worker it starts find the plugin on PYTHONPATH; RAY_ADDRESS=local makes
    # the driver start its own Ray, whose workers inherit that path.
    return {**os.environ, "PYTHONPATH": str(plugins), "RAY_ADDRESS": "local"}


def _tunelab(env, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunelab", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_tunelab_trainables_lists_built_ins_and_plugins_with_parameters(plugins):
    proc = _tunelab(_env(plugins), "trainables", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert set(rows) >= {"rnn", "gpt", "synthetic", "quad"}
    assert rows["quad"]["origin"] == "plugin labtrain:ENTRY from labtrain 0.1"
    assert rows["fquad"]["origin"] == "plugin labfunc:train from labfunc 0.1" and rows["fquad"]["open"]
    assert rows["rnn"]["constraints"] == ["model_mb", "params"]
    assert {"name": "hidden_size", "type": "int > 0", "default": 200} in rows["rnn"]["parameters"]
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("tunelab: trainable plugin '") for line in errors), proc.stderr
    text = _tunelab(_env(plugins), "trainables").stdout
    assert "quad  (plugin labtrain:ENTRY from labtrain 0.1; constraints: a_max;" in text
    assert "  a       float  0.0" in text


def _two_completed_runs(env, tmp_path, text: str, name: str) -> list:
    """Run a search file of two trials through the CLI; both complete: their MLflow runs."""
    search_file = tmp_path / f"{name}.yaml"
    search_file.write_text(text)
    proc = _tunelab(env, "run", str(search_file), "--storage", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{name}: 2 trials (completed 2)" in proc.stdout
    state = json.loads((tmp_path / "runs" / name / "tunelab.json").read_text())
    client = _mlflow.client_for(state["tracking_uri"])
    kids = _mlflow.children(client, state["experiment_id"], state["parent_run_id"])
    assert len(kids) == 2 and all(run.data.tags[tags.STATUS] == "completed" for run in kids)
    return kids


@pytest.mark.slow
def test_a_plugin_trainable_runs_in_a_real_search(plugins, tmp_path):
    env = _env(plugins)
    for run in _two_completed_runs(env, tmp_path, SEARCH, "quad-search"):
        a = float(run.data.params["a"])
        assert run.data.metrics["val_loss"] == pytest.approx(1.0 + (a - 0.5) ** 2 + 0.5)

    broken = tmp_path / "broken.yaml"
    broken.write_text(SEARCH.replace("trainable: quad", "trainable: broken"))
    proc = _tunelab(env, "run", str(broken), "--storage", str(tmp_path / "runs2"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"tunelab: error: {broken}: trainable: the trainable plugin 'broken' could not be loaded: plugin labbroken:ENTRY")
    assert not (tmp_path / "runs2").exists()


@pytest.mark.slow
def test_a_function_plugin_runs_a_real_search_and_one_that_raises_exits_non_zero(plugins, tmp_path):
    env = _env(plugins)
    # returned: completed, with no `finished` reported
    for run in _two_completed_runs(env, tmp_path, FUNC_SEARCH, "fquad-search"):
        a = float(run.data.params["a"])
        assert run.data.metrics["val_mae"] == pytest.approx(abs(a - 0.3) + 1 / 3)
        assert run.data.metrics["grad_norm"] == 0.5  # a metric of its own, logged too

    bad = tmp_path / "fboom.yaml"
    bad.write_text(FUNC_SEARCH.replace("trainable: fquad", "trainable: fboom").replace("fquad-search", "fboom"))
    proc = _tunelab(env, "run", str(bad), "--storage", str(tmp_path / "runs"))
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]  # every trial raised
    assert "raised ValueError: no good: a=" in proc.stdout  # each trial's line says what it raised
    assert proc.stderr.strip().splitlines()[-1].startswith("tunelab: 2 of 2 trials raised; the first, t00")
    assert "ValueError: no good: a=" in proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stdout + proc.stderr
