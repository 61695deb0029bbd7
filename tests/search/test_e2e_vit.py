"""A real ViT search on digits: pre- and post-norm blocks, real Ray Tune, Optuna's grid, MLflow, and
the report's classification table."""

from __future__ import annotations

import pytest

from tunelab import _mlflow
from tunelab import analysis
from tunelab import search
from tunelab import spaces
from tunelab.trainables import metrics
from tunelab.trainables import tags

pytestmark = pytest.mark.slow
EPOCHS = 2


@pytest.fixture(scope="module")
def vit_search(ray_session, tmp_path_factory):
    storage = tmp_path_factory.mktemp("vit")
    # The catalogue's digits search cut down to its norm grid: one layer, adamw, two epochs.
    s = spaces.load(spaces.CATALOGUE / "vit_digits.yaml", [
        f"epochs={EPOCHS}", "n_layer=1", "optimizer=adamw", "n_embd=32", "budget.trials=2", f"storage={storage}",
    ])
    assert list(s.space.params) == ["norm"]
    outcome = search.run(s)
    client = _mlflow.client_for(outcome.tracking_uri)
    exp = client.get_experiment_by_name(outcome.name).experiment_id
    return outcome, client, _mlflow.children(client, exp, outcome.parent_run_id)


def test_pre_and_post_norm_trials_record_val_acc_every_epoch(vit_search):
    outcome, client, kids = vit_search
    assert sorted(r.data.params["norm"] for r in kids) == ["post", "pre"]
    for run in kids:
        assert run.data.tags[tags.STATUS] == metrics.COMPLETED
        history = client.get_metric_history(run.info.run_id, metrics.VAL_ACC)
        assert [m.step for m in history] == list(range(1, EPOCHS + 1))
        assert all(0.0 < m.value <= 1.0 for m in history)
        assert 0.0 < run.data.metrics[metrics.TEST_ACC] <= 1.0
        assert run.data.metrics[metrics.TOKENS] == EPOCHS * 1_297
    parent = client.get_run(outcome.parent_run_id)
    best = max(m.value for r in kids for m in client.get_metric_history(r.info.run_id, metrics.VAL_ACC))
    assert parent.data.metrics[f"best_{metrics.VAL_ACC}"] == pytest.approx(best)


def test_the_report_has_seed_001s_table(vit_search, tmp_path):
    outcome, client, kids = vit_search
    runs, history = analysis.load(outcome.name, outcome.tracking_uri)
    table = analysis.accuracy_table(runs, history)
    assert sorted(table["norm"]) == ["post", "pre"]
    best = {r.data.params["norm"]: max(m.value for m in client.get_metric_history(r.info.run_id, metrics.VAL_ACC))
            for r in kids}
    assert dict(zip(table["norm"], table["best_val_acc"])) == pytest.approx(best)
    assert (table["n_params"] == runs.column(f"last_{metrics.PARAMS}").to_pylist()[0]).all()
    out = analysis.report(outcome.name, outcome.tracking_uri, tmp_path / "report")
    md = (out / "report.md").read_text()
    for text in ("## Classification", "best_val_acc", "train_acc_at_best", "accuracy_epoch.png", "accuracy_wall_s.png"):
        assert text in md, text
    section = md.split("## Classification")[1]
    assert "| trial | status |" in section and "| t000 |" in section  # trials named as in MLflow, not by Ray id
