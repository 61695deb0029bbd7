"""A lab's model as a plain function, the Ray Tune way: ``tunelab.run(search, trainable=train)``.

Real Ray, Optuna and MLflow. The functions report a metric of their own (``val_mae``), with
``tunelab.report`` or with ``ray.tune.report``, and never report ``finished``: a trial that returns
has completed, one that ASHA stops has not, and every number a trial reports reaches MLflow.
"""

from __future__ import annotations

import math
import sys

import optuna
import pytest
import ray.cloudpickle

import tunelab
from tunelab import _mlflow
from tunelab import spaces
from tunelab.search import load_study, MissingObjective
from tunelab.search.cli import main
from tunelab.trainables import tags

# Ray ships a trainable to its workers by pickling it; these live in a test module the workers cannot
# import, so they travel by value, as a function defined in a user's script or notebook does.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

EPOCHS = 4


def mae(config, epoch):
    return abs(config["lr"] - 0.1) + 1.0 / epoch


def train_with_tunelab(config):
    for epoch in range(1, EPOCHS + 1):
        tunelab.report({"epoch": epoch, "val_mae": mae(config, epoch), "lr_used": config["lr"]})


def train_with_ray(config):
    from ray import tune

    for epoch in range(1, EPOCHS + 1):
        tune.report({"epoch": epoch, "val_mae": mae(config, epoch), "lr_used": config["lr"]})


def reports_another_name(config):
    tunelab.report({"epoch": 1, "loss": 0.5})


SEARCH = {
    "name": "fn",
    "metric": "val_mae",
    "mode": "min",
    "space": {"lr": {"loguniform": [1e-3, 1.0]}},
    "sampler": {"name": "random", "seed": 3},
    # Rungs at 1 and 3 (max_t above the loop's 4 epochs): ASHA stops some trials at a rung; the others
    # return after epoch 4, which only the function's return tells the driver.
    "scheduler": {"name": "asha", "time_attr": "epoch", "max_t": 27, "grace_period": 1, "reduction_factor": 3},
    "budget": {"trials": 6, "max_concurrent": 2},
}


@pytest.mark.slow
@pytest.mark.parametrize("train", [train_with_tunelab, train_with_ray], ids=["tunelab.report", "ray.tune.report"])
def test_a_function_that_returns_has_completed_and_its_own_metrics_are_logged(ray_session, tmp_path, train):
    out = tunelab.run(SEARCH, trainable=train, storage=tmp_path / "runs")
    client = _mlflow.client_for(out.tracking_uri)
    state = (out.experiment_dir / "tunelab.json").read_text()
    assert out.name == "fn" and '"parent_run_id"' in state
    kids = _mlflow.children(client, client.get_experiment_by_name("fn").experiment_id, out.parent_run_id)
    assert len(kids) == 6
    statuses = {}
    best_in_mlflow = math.inf
    for run in kids:
        epochs = int(run.data.metrics["epoch"])
        status = run.data.tags[tags.STATUS]
        assert status == ("completed" if epochs == EPOCHS else "stopped_early"), (epochs, status)
        assert run.data.metrics["finished"] == (1.0 if status == "completed" else 0.0)
        lr = float(run.data.params["lr"])
        assert run.data.metrics["lr_used"] == pytest.approx(lr)  # a metric of its own, logged
        history = client.get_metric_history(run.info.run_id, "val_mae")
        assert [m.step for m in history] == list(range(1, epochs + 1))
        best_in_mlflow = min(best_in_mlflow, *(m.value for m in history))
        statuses[run.data.tags[tags.TRIAL_ID]] = status
    assert set(statuses.values()) == {"completed", "stopped_early"}  # both kinds happened
    assert out.best_value == pytest.approx(best_in_mlflow)
    assert out.best_config["lr"] == pytest.approx(min(
        (t for t in out.trials if t.best is not None), key=lambda t: t.best).params["lr"])
    assert sorted(t.status for t in out.trials) == sorted(statuses.values())
    assert {t.name for t in out.trials} == {f"t{i:03d}" for i in range(6)}

    study = load_study(out.experiment_dir, "fn")
    states = {t.user_attrs["ray_trial_id"]: t.state for t in study.get_trials() if "ray_trial_id" in t.user_attrs}
    assert states == {tid: optuna.trial.TrialState.COMPLETE if s == "completed" else optuna.trial.TrialState.PRUNED
                      for tid, s in statuses.items()}


@pytest.mark.slow
def test_an_objective_the_first_report_lacks_stops_the_search_with_one_line(ray_session, tmp_path, capsys):
    with pytest.raises(MissingObjective) as err:
        tunelab.run(SEARCH, trainable=reports_another_name, storage=tmp_path / "runs",
                    overrides={"budget.trials": 4})
    message = str(err.value)
    assert "\n" not in message
    assert "reported no 'val_mae' (the search's metric); it reported: epoch, loss" in message
    client = _mlflow.client_for(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("fn").experiment_id])
    assert runs and all(r.info.status != "RUNNING" for r in runs)  # nothing left open
    (parent,) = [r for r in runs if "tunelab.state" in r.data.tags]
    assert parent.info.status == "FAILED" and parent.data.tags["tunelab.state"] == "FAILED"
    assert main(["ls", "--storage", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["fn", "FAILED"]


def test_an_open_metric_needs_a_mode_and_a_built_in_trainable_s_misspelt_one_fails_when_loaded():
    entry = tunelab.trainables.Entry.of_function("train_with_tunelab", train_with_tunelab)
    no_mode = {k: v for k, v in SEARCH.items() if k != "mode"}
    with pytest.raises(spaces.SpecError, match="mode: required for the metric 'val_mae'"):
        spaces.load(no_mode, entry=entry)
    assert spaces.load(no_mode, ["mode=max"], entry=entry).spec.mode == "max"
    assert spaces.load({**no_mode, "metric": "val_loss"}, entry=entry).spec.mode == "min"  # tunelab's own name
    # the vocabulary's direction, without mode: an accuracy is maximised; a counter has none
    assert spaces.load({**no_mode, "metric": "val_acc"}, entry=entry).spec.mode == "max"
    with pytest.raises(spaces.SpecError, match="mode: required for the metric 'epoch', which has no direction"):
        spaces.load({**no_mode, "metric": "epoch"}, entry=entry)
    vit = spaces.load("vit_digits", ["mode=min"]).spec
    assert (vit.metric, vit.mode) == ("val_acc", "min")  # a mode given is kept, whatever the vocabulary says
    synthetic = {"name": "s", "trainable": "synthetic", "metric": "val_acc", "mode": "max"}
    with pytest.raises(spaces.SpecError, match="unknown metric 'val_acc'; trainable 'synthetic' reports: epoch"):
        spaces.load(synthetic)
    with pytest.raises(spaces.SpecError, match="trainable: missing"):
        spaces.load({"name": "s", "metric": "val_loss"})
