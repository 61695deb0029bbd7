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

import trainables
from search import _tracking
from trainables import Registry

ROOT = Path(__file__).resolve().parents[2]

LABTRAIN = '''\
"""A lab's model, as a tunelab trainable: its config, check, and Ray Tune function."""

from trainables import Entry, config_dataclass, metrics, parse_config


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


ENTRY = Entry(name="quad", config_cls=QuadConfig, train_module="labtrain", constraint_check=check, flops=flops,
              data_loader=load_data, constraint_names=("a_max",))
'''

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
        notentry = labtrain:check
        synthetic = labtrain:ENTRY
        """, {"labbroken": "import a_module_that_is_not_installed\n"})
    yield root
    sys.modules.pop("labtrain", None)  # imported from a folder that is gone after the test


def test_plugins_load_lazily_once_and_a_broken_one_is_one_line_naming_it(plugins, monkeypatch, caplog):
    builtin = {"synthetic": trainables.REGISTRY["synthetic"]}  # the process's registry, loaded before
    monkeypatch.syspath_prepend(str(plugins))
    registry = Registry(builtin)
    assert "labtrain" not in sys.modules  # nothing loaded before the registry is used
    with caplog.at_level(logging.WARNING, logger="trainables"):
        assert sorted(registry) == ["quad", "synthetic"]
        assert registry["quad"].name == "quad" and registry.get("broken") is None
        assert len(registry) == 2 and "quad" in registry
    assert registry.origin("synthetic") == "built-in"
    assert registry.origin("quad") == "plugin labtrain:ENTRY from labtrain 0.1"
    assert sorted(registry.broken) == ["broken", "notentry", "synthetic"]
    assert "ModuleNotFoundError: No module named 'a_module_that_is_not_installed'" in registry.broken["broken"]
    assert "labtrain:check is a function, not a trainables.Entry" in registry.broken["notentry"]
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
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), str(ROOT)]), "RAY_ADDRESS": "local"}


def _tunelab(env, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_tunelab_trainables_lists_built_ins_and_plugins_with_parameters(plugins):
    proc = _tunelab(_env(plugins), "trainables", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert set(rows) >= {"rnn", "gpt", "synthetic", "quad"}
    assert rows["quad"]["origin"] == "plugin labtrain:ENTRY from labtrain 0.1"
    assert rows["rnn"]["constraints"] == ["model_mb", "params"]
    assert {"name": "hidden_size", "type": "int > 0", "default": 200} in rows["rnn"]["parameters"]
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("tunelab: trainable plugin '") for line in errors), proc.stderr
    text = _tunelab(_env(plugins), "trainables").stdout
    assert "quad  (plugin labtrain:ENTRY from labtrain 0.1; constraints: a_max;" in text
    assert "  a       float  0.0" in text


@pytest.mark.slow
def test_a_plugin_trainable_runs_in_a_real_search(plugins, tmp_path):
    env = _env(plugins)
    search_file = tmp_path / "quad.yaml"
    search_file.write_text(SEARCH)
    proc = _tunelab(env, "run", str(search_file), "--storage", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "quad-search: 2 trials (completed 2)" in proc.stdout
    state = json.loads((tmp_path / "runs" / "quad-search" / "tunelab.json").read_text())
    client = _tracking.client_for(state["tracking_uri"])
    kids = _tracking.children(client, state["experiment_id"], state["parent_run_id"])
    assert len(kids) == 2
    for run in kids:
        a = float(run.data.params["a"])
        assert run.data.tags[_tracking.STATUS_TAG] == "completed"
        assert run.data.metrics["val_loss"] == pytest.approx(1.0 + (a - 0.5) ** 2 + 0.5)

    broken = tmp_path / "broken.yaml"
    broken.write_text(SEARCH.replace("trainable: quad", "trainable: broken"))
    proc = _tunelab(env, "run", str(broken), "--storage", str(tmp_path / "runs2"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"tunelab: error: {broken}: trainable: the trainable plugin 'broken' could not be loaded: plugin labbroken:ENTRY")
    assert not (tmp_path / "runs2").exists()
