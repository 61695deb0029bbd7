"""Transfer: an earlier search's best configs run again with overrides and seeds (search/_transfer.py).

The fast tests build the earlier search by hand (its resolved file, its ``tunelab.json`` and an Optuna
journal with made-up trials of every fate) and check the new search's file; no Ray. The slow one
runs a real search of the synthetic trainable and transfers it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tunelab import _mlflow, spaces, trainables
from tunelab.search import _transfer
from tunelab.search._paths import STATE_FILE, STUDY_FILE
from tunelab.search._searcher import open_storage
from tunelab.search._warmstart import SOURCE_ATTR
from tunelab.trainables import tags
from tunelab.trainables._config import config_dataclass
from tunelab.trainables._registry import Entry, Registry

SOURCE = """\
name: a
trainable: synthetic
metric: val_loss
mode: {mode}
fixed: {{seed: 7}}
space:
  x: {{uniform: [-1.0, 1.0]}}
  y: {{uniform: [-1.0, 1.0]}}
  epochs: {{int: [1, 4]}}
sampler: {{name: tpe, seed: 3}}
budget: {{trials: 8, max_concurrent: 3}}
data: {{corpus: none}}
"""
DISTS = {"x": FloatDistribution(-1.0, 1.0), "y": FloatDistribution(-1.0, 1.0), "epochs": IntDistribution(1, 4)}


def _trial(state, x, value=None, attrs=None):
    return create_trial(state=state, value=value, params={"x": x, "y": 0.0, "epochs": 4}, distributions=DISTS,
                        user_attrs=attrs)


# Of these only the COMPLETE ones with a finite value, run by search a itself, are finished configs.
TRIALS = [
    _trial(TrialState.COMPLETE, 0.1, 1.5),
    _trial(TrialState.COMPLETE, 0.2, 1.2),
    _trial(TrialState.COMPLETE, 0.3, 2.0),
    _trial(TrialState.PRUNED, 0.9, 0.5),  # stopped early: a better value, not a finished config
    _trial(TrialState.FAIL, 0.8),
    _trial(TrialState.COMPLETE, 0.7, math.inf),  # diverged
    _trial(TrialState.COMPLETE, 0.6, 0.1, {SOURCE_ATTR: "search z in /elsewhere"}),  # a warm start's, not a's
    _trial(TrialState.COMPLETE, 0.4, 1.2),  # ties with x=0.2, which came first
]


def _source(tmp_path, mode="min", trials=TRIALS, text=SOURCE):
    """Results folder of search ``a`` under ``tmp_path/runs``, as ``tunelab run`` leaves it."""
    root = tmp_path / "runs"
    folder = root / "a"
    folder.mkdir(parents=True)
    (tmp_path / "a.yaml").write_text(text.format(mode=mode))
    (folder / "search.yaml").write_text(spaces.load(tmp_path / "a.yaml").resolved_yaml())
    (folder / STATE_FILE).write_text(json.dumps({"name": "a", "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                                                 "experiment_id": "1", "parent_run_id": "p0"}))
    direction = "minimize" if mode == "min" else "maximize"
    study = optuna.create_study(storage=open_storage(folder / STUDY_FILE), study_name="a", direction=direction)
    study.add_trials(trials)
    return root


@pytest.mark.parametrize("mode, top, xs", [("min", 2, [0.2, 0.4]), ("min", 3, [0.2, 0.4, 0.1]),
                                           ("max", 2, [0.3, 0.1]), ("min", 10, [0.2, 0.4, 0.1, 0.3])])
def test_the_k_best_finished_configs_by_mode(tmp_path, mode, top, xs):
    source = _transfer.read_source("a", _source(tmp_path, mode))
    assert source.parent_run_id == "p0"
    spec = _transfer.transfer_spec(source, top=top)
    assert [p["x"] for p in spec["points_to_evaluate"]] == xs
    assert spec["budget"]["trials"] == len(xs)


def test_the_new_search_keeps_the_source_and_runs_each_point_to_its_end(tmp_path):
    root = _source(tmp_path)
    spec = _transfer.transfer_spec(_transfer.read_source("a", root), top=2)
    assert spec["name"] == "a-transfer"
    assert (spec["trainable"], spec["metric"], spec["mode"]) == ("synthetic", "val_loss", "min")
    assert spec["fixed"] == {"seed": 7}
    assert set(spec["space"]) == {"x", "y", "epochs"}
    assert spec["points_to_evaluate"] == [{"x": 0.2, "y": 0.0, "epochs": 4}, {"x": 0.4, "y": 0.0, "epochs": 4}]
    assert spec["sampler"] == {"name": "random", "seed": 3}
    assert spec["scheduler"]["name"] == "fifo"
    assert spec["budget"] == {"trials": 2, "max_concurrent": 3}
    assert spec["data"] == {"corpus": "none"}
    assert (spec["storage"], spec["tracking"]) == (str(root.resolve()), {"uri": f"sqlite:///{root / 'mlflow.db'}"})
    search = spaces.load(spec)  # a search file tunelab run takes
    assert search.spec.points_to_evaluate == spec["points_to_evaluate"]
    named = _transfer.transfer_spec(_transfer.read_source("a", root), new_name="wider")
    assert named["name"] == "wider"


def test_overrides_fix_parameters_and_leave_the_space_and_the_points(tmp_path):
    source = _transfer.read_source("a", _source(tmp_path))
    spec = _transfer.transfer_spec(source, top=2, overrides=["epochs=8", "floor=0.5", "budget.max_concurrent=1"])
    assert spec["fixed"] == {"seed": 7, "epochs": 8, "floor": 0.5}
    assert set(spec["space"]) == {"x", "y"}
    assert spec["points_to_evaluate"] == [{"x": 0.2, "y": 0.0}, {"x": 0.4, "y": 0.0}]
    assert spec["budget"] == {"trials": 2, "max_concurrent": 1}
    search = spaces.load(spec)
    assert search.base_config["epochs"] == 8 and "epochs" not in search.space.params


def test_seeds_multiply_the_points_through_a_choice_of_seeds(tmp_path):
    source = _transfer.read_source("a", _source(tmp_path))
    spec = _transfer.transfer_spec(source, top=2, seeds=3, overrides=["epochs=8"])
    assert "seed" not in spec["fixed"]
    assert spec["space"]["seed"] == {"choice": [7, 8, 9]}  # the source's seed + 0..2
    assert [(p["x"], p["seed"]) for p in spec["points_to_evaluate"]] == [
        (0.2, 7), (0.2, 8), (0.2, 9), (0.4, 7), (0.4, 8), (0.4, 9)]
    assert all("epochs" not in p for p in spec["points_to_evaluate"])
    assert spec["budget"]["trials"] == 6
    assert spaces.load(spec).space.params["seed"].values == [7, 8, 9]


# A grid that searched the seed too, as spaces/gpt_mup_widths.yaml does.
GRID_SOURCE = """\
name: a
trainable: synthetic
metric: val_loss
mode: {mode}
space:
  x: {{grid: [0.1, 0.2, 0.3]}}
  seed: {{choice: [0, 1]}}
sampler: {{name: grid}}
budget: {{trials: 6}}
data: {{corpus: none}}
"""
GRID_DISTS = {"x": CategoricalDistribution([0.1, 0.2, 0.3]), "seed": CategoricalDistribution([0, 1])}


def test_a_grid_that_searched_the_seed_gives_its_best_points_and_their_own_seeds_onwards(tmp_path):
    values = {(0.1, 0): 3.0, (0.1, 1): 2.5, (0.2, 0): 1.0, (0.2, 1): 2.0, (0.3, 0): 1.5, (0.3, 1): 0.5}
    trials = [create_trial(state=TrialState.COMPLETE, value=v, params={"x": x, "seed": seed}, distributions=GRID_DISTS)
              for (x, seed), v in values.items()]
    source = _transfer.read_source("a", _source(tmp_path, trials=trials, text=GRID_SOURCE))
    spec = _transfer.transfer_spec(source, top=2, seeds=2)
    assert spec["space"] == {"x": {"choice": [0.1, 0.2, 0.3]}, "seed": {"choice": [0, 1, 2]}}
    assert spec["points_to_evaluate"] == [{"x": 0.3, "seed": 1}, {"x": 0.3, "seed": 2},
                                          {"x": 0.2, "seed": 0}, {"x": 0.2, "seed": 1}]
    assert spec["sampler"]["name"] == "random" and spec["budget"]["trials"] == 4
    search = spaces.load(spec)
    assert search.space.params["x"].kind == "choice" and search.space.params["seed"].values == [0, 1, 2]


def test_bad_counts_are_refused(tmp_path):
    source = _transfer.read_source("a", _source(tmp_path))
    with pytest.raises(spaces.SpecError, match=r"^tunelab transfer: --top: at least 1 expected \(got 0\)$"):
        _transfer.transfer_spec(source, top=0)
    with pytest.raises(spaces.SpecError, match=r"^tunelab transfer: --seeds: at least 1 expected \(got 0\)$"):
        _transfer.transfer_spec(source, seeds=0)
    with pytest.raises(spaces.SpecError, match=r"--seeds: --set seed=\.\.\. fixes the seed that --seeds 2 varies"):
        _transfer.transfer_spec(source, seeds=2, overrides=["seed=1"])


@config_dataclass
class _NoSeedConfig:
    x: float = 0.0


def test_seeds_are_refused_for_a_trainable_without_a_seed(tmp_path, monkeypatch):
    source = _transfer.read_source("a", _source(tmp_path))
    entry = Entry(name="synthetic", config_cls=_NoSeedConfig, train_module="tunelab.trainables.synthetic")
    monkeypatch.setattr(trainables, "REGISTRY", Registry({"synthetic": entry}, group="tunelab.no_plugins"))
    with pytest.raises(spaces.SpecError, match="--seeds: trainable 'synthetic' has no 'seed' parameter.*--seeds 1$"):
        _transfer.transfer_spec(source, seeds=2)
    assert _transfer.transfer_spec(source, seeds=1)["budget"]["trials"] == 3


def test_a_missing_search_an_unfinished_one_and_an_unknown_parameter_are_refused_before_anything_runs(tmp_path):
    root = _source(tmp_path)
    with pytest.raises(spaces.SpecError, match=r"name: no search named 'nope' under "):
        _transfer.transfer("nope", root)
    with pytest.raises(spaces.SpecError, match=r"^tunelab transfer: --set bogus: unknown parameter of trainable "
                                               r"'synthetic'; expected one of: "):
        _transfer.transfer("a", root, overrides=["bogus=1"])
    unfinished = _source(tmp_path / "u", trials=[t for t in TRIALS if t.state != TrialState.COMPLETE])
    with pytest.raises(spaces.SpecError, match=r"search 'a' has no finished \(COMPLETE\) trial to transfer$"):
        _transfer.transfer("a", unfinished)
    assert sorted(p.name for p in root.iterdir()) == ["a"]  # nothing written


def test_the_cli_on_a_missing_search_exits_2_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tunelab", "transfer", "nope", "--storage", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"tunelab: error: {tmp_path}: name: no search named 'nope' under {tmp_path}"]


@pytest.mark.slow
def test_transfer_reruns_the_best_configs_with_seeds_and_an_override(ray_session, tmp_path):
    from tunelab import search

    src = search.run(spaces.load(spaces.CATALOGUE / "synthetic_load.yaml", [
        "name=src", "budget.trials=4", "budget.max_concurrent=2", "scheduler.name=fifo", f"storage={tmp_path}"]))
    assert src.state == "FINISHED"
    best = sorted((t.best, t.params["x"]) for t in src.trials)[:2]

    out = search.transfer("src", tmp_path, top=2, seeds=2, overrides=["epochs=2"])
    assert (out.name, out.state, len(out.trials)) == ("src-transfer", "FINISHED", 4)
    client = _mlflow.client_for(out.tracking_uri)
    parent = client.get_run(out.parent_run_id)
    assert parent.data.tags[tags.TRANSFER_FROM] == src.parent_run_id
    assert parent.data.tags[tags.NOTE].startswith("**Transfer** of search **src**")
    assert parent.data.tags[tags.OVERRIDES] == "epochs=2"
    kids = _mlflow.children(client, parent.info.experiment_id, out.parent_run_id)
    assert len(kids) == 4
    assert {r.data.params["epochs"] for r in kids} == {"2"}
    got = sorted((float(r.data.params["x"]), r.data.params["seed"]) for r in kids)
    xs = sorted(x for _, x in best)
    assert got == [(xs[0], "0"), (xs[0], "1"), (xs[1], "0"), (xs[1], "1")]
    assert all(r.data.metrics["epoch"] == 2 for r in kids)
