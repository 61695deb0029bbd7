"""How a search opens in MLflow 3.17's UI: the URL `tunelab ui` prints and the saved view it points at."""

from __future__ import annotations

import json

from tunelab import _mlflow
from tunelab.search import _ui


def test_the_url_opens_the_runs_table_in_the_model_training_view():
    assert _ui.runs_url("http://127.0.0.1:5000/", "7") == (
        "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey=tunelab")
    assert _ui.runs_url("http://127.0.0.1:5000", None) == (
        "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning")


def test_the_saved_view_sorts_by_the_objective_and_shows_what_was_searched(tmp_path):
    client = _mlflow.client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = _mlflow.ensure_experiment(client, "e", tmp_path / "art")
    _ui.save_view(client, exp, "val_ppl", "min", ["lr", "cell"])
    tags = client.get_experiment(exp).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    envelope = json.loads(tags["mlflow.sharedViewState.tunelab"])
    assert envelope["name"] == "tunelab: trials by best_val_ppl" and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    assert state["orderByKey"] == "metrics.`best_val_ppl`" and state["orderByAsc"] is True
    assert state["selectedColumns"] == ["metrics.`best_val_ppl`", "metrics.`val_ppl`", "params.`lr`", "params.`cell`",
                                        "tags.`tunelab.status`", "attributes.`Dataset`"]
    # an objective the trainables keep no running best of is sorted on itself, largest first for max
    state = _ui.view_state("val_acc", "max", [])
    assert state["orderByKey"] == "metrics.`val_acc`" and state["orderByAsc"] is False
