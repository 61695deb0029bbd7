"""Classification searches: seed report 001's table and accuracy curves, from a made-up MLflow store
(STYLE rule 11). A real tiny ViT search is in tests/search/test_e2e_vit.py."""

from __future__ import annotations

import math

import pytest
from fixture_store import RNN, T0, _log_run

from tunelab import analysis
from tunelab.trainables import metrics

VIT = "fixture-vit"
# (n_layer, optimizer, norm, epochs run, status, final val_acc): made-up curves that rise to the final
# value, except the second trial, whose validation accuracy peaks at epoch 2 and falls (overfitting).
TRIALS = [
    (2, "adamw", "pre", 3, metrics.COMPLETED, 0.62),
    (6, "adamw", "post", 3, metrics.COMPLETED, 0.60),
    (2, "sgd", "pre", 3, metrics.COMPLETED, 0.19),
    (2, "momentum", "pre", 1, metrics.STOPPED_EARLY, 0.20),
]
PARAMS = {2: 1_086_730, 6: 3_195_146}


def curve(n_layer: int, final: float, epochs: int, overfits: bool) -> list[dict]:
    rows = []
    for e in range(1, epochs + 1):
        val_acc = final - 0.1 * (3 - e) if not overfits else [0.5, 0.7, 0.60][e - 1]
        rows.append({
            metrics.TRAIN_ACC: val_acc + 0.02 * e, metrics.VAL_ACC: val_acc,
            metrics.TRAIN_LOSS: 2.0 - val_acc - 0.05 * e, metrics.VAL_LOSS: 2.0 - val_acc,
            metrics.EPOCH: e, metrics.WALL_S: 10.0 * e * n_layer, metrics.FLOPS: 1e12 * e * n_layer,
            metrics.MEM_PEAK_MB: 1000.0 + 100 * n_layer + e, metrics.PARAMS: PARAMS[n_layer],
            metrics.FINISHED: float(e == 3), "training_iteration": e,
            **({metrics.TEST_ACC: val_acc - 0.01} if e == 3 else {}),
        })
    return rows


@pytest.fixture(scope="module")
def vit_store(tmp_path_factory):
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("vit_store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(VIT, artifact_location=(root / "art").resolve().as_uri())
    parent = client.create_run(exp, start_time=T0, run_name=f"{VIT} (search)", tags={
        "tunelab.trainable": "vit", "tunelab.sampler": "grid", "tunelab.scheduler": "fifo"})
    client.log_batch(parent.info.run_id, params=[Param("metric", metrics.VAL_ACC), Param("mode", "max")])
    for i, (n_layer, optimizer, norm, epochs, status, final) in enumerate(TRIALS):
        cfg = {"n_layer": n_layer, "optimizer": optimizer, "norm": norm, "epochs": 3}
        _log_run(client, exp, parent.info.run_id, i, f"vit{i:05d}", cfg, ("n_layer", "optimizer", "norm"),
                 curve(n_layer, final, epochs, overfits=i == 1), status, T0 + 1000 * i)
    client.set_terminated(parent.info.run_id, "FINISHED")
    return uri


def test_accuracy_table_is_seed_001s(vit_store):
    runs, history = analysis.load(VIT, vit_store)
    assert analysis.is_classification(runs, history)
    table = analysis.accuracy_table(runs, history)
    assert table["trial_id"].tolist() == ["vit00001", "vit00000", "vit00002", "vit00003"]  # best val_acc first
    overfit = table.iloc[0]
    assert overfit["best_val_acc"] == pytest.approx(0.7) and overfit["epoch_at_best"] == 2
    assert overfit["train_acc_at_best"] == pytest.approx(0.74) and overfit["val_loss_at_best"] == pytest.approx(1.3)
    assert overfit["train_loss_at_best"] == pytest.approx(2.0 - 0.7 - 0.1)
    assert overfit["wall_s_at_best"] == 120 and overfit["n_params"] == 3_195_146 and overfit["peak_mem_mb"] == 1603
    assert overfit[metrics.TEST_ACC] == pytest.approx(0.59)  # the trial's last report of it
    assert math.isnan(table.set_index("trial_id").loc["vit00003", metrics.TEST_ACC])  # stopped before its end
    assert list(table.columns[:2]) == ["trial_id", "status"] and set(table.columns[2:5]) == {"n_layer", "optimizer", "norm"}


def test_a_language_model_search_is_not_a_classification_search(store):
    runs, history = analysis.load(RNN, store.uri)
    assert metrics.VAL_ACC in set(history.column("key").to_pylist())  # token accuracy is logged
    assert not analysis.is_classification(runs, history)


def test_accuracy_curves_against_epoch_and_wall_clock(vit_store, tmp_path):
    runs, history = analysis.load(VIT, vit_store)
    for x in (metrics.EPOCH, metrics.WALL_S):
        plot = analysis.plot_accuracy(runs, history, x)
        assert plot.name == f"accuracy_{x}" and "accuracy and loss" in plot.caption
        assert len(plot.figure.axes) == 2
        assert [p.stat().st_size > 5000 for p in plot.save(tmp_path)] == [True, True]
    only = analysis.plot_accuracy(runs, history, metrics.WALL_S, loss=False)
    assert len(only.figure.axes) == 1 and only.figure.axes[0].get_xlabel() == "wall-clock training time (s)"
    lines = only.figure.axes[0].get_lines()
    assert len(lines) == 2 * len(TRIALS)  # train and validation per trial
    assert max(max(line.get_ydata()) for line in lines) <= 1.0


def test_report_of_a_classification_search(vit_store, tmp_path):
    out = analysis.report(VIT, vit_store, tmp_path / "vit", log_artifacts=False)
    md = (out / "report.md").read_text()
    for text in ("Objective: maximise `val_acc`", "## Classification", "train_loss_at_best", "test_acc",
                 "accuracy_epoch.png", "accuracy_wall_s.png", "curves_epoch.png", "curves_wall_s.png"):
        assert text in md, text
    assert md.index("## Classification") < md.index("## Learning curves")


@pytest.fixture(scope="module")
def ten_trials(tmp_path_factory):
    """A random search of ten ViT trials, named as the driver names them ("t003 n_layer=2 optimizer=adam
    norm=pre lr=0.000494"): long legend labels."""
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("ten_trials")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("ten", artifact_location=(root / "art").resolve().as_uri())
    parent = client.create_run(exp, start_time=T0, run_name="ten (search)", tags={"tunelab.trainable": "vit"})
    client.log_batch(parent.info.run_id, params=[Param("metric", metrics.VAL_ACC), Param("mode", "max")])
    for i in range(10):
        cfg = {"n_layer": (2, 6)[i % 2], "optimizer": ("sgd", "momentum", "adam", "adamw")[i % 4],
               "norm": ("pre", "post")[i % 3 == 0], "lr": float(f"{1.23456e-4 * (i + 1):.3g}"), "epochs": 3}
        _log_run(client, exp, parent.info.run_id, i, f"vit{i:05d}", cfg, ("n_layer", "optimizer", "norm", "lr"),
                 curve(cfg["n_layer"], 0.3 + 0.03 * i, 3, overfits=False), metrics.COMPLETED, T0 + 1000 * i)
    client.set_terminated(parent.info.run_id, "FINISHED")
    return analysis.load("ten", uri)


@pytest.mark.parametrize("n", [1, 10])
@pytest.mark.parametrize("loss", [False, True])
def test_the_legend_never_squeezes_the_plot_nor_meets_the_caption(ten_trials, tmp_path, n, loss):
    """The report's accuracy figure is one panel: a legend beside it once left the plot 2% of the width.
    Under the axes it takes the width it needs, and stays clear of the caption a saved image carries."""
    runs, history = ten_trials
    trials = runs.column("trial_id").to_pylist()[:n]
    plot = analysis.plot_accuracy(runs, history, metrics.EPOCH, loss=loss, trials=trials)
    fig = plot.figure
    drawn = []

    def on_draw(event):  # every draw of a save: where the axes, the legend and the caption ended up
        r = event.renderer
        drawn.append((fig.bbox.frozen(), [ax.get_window_extent(r).frozen() for ax in fig.axes],
                      fig.legends[0].get_window_extent(r).frozen(),
                      [t.get_window_extent(r).frozen() for t in fig.texts]))

    fig.canvas.mpl_connect("draw_event", on_draw)
    for caption in (True, False):
        plot.save(tmp_path / str(caption), formats=("png",), caption=caption)
    assert drawn and any(texts for *_, texts in drawn)  # the caption was drawn in one of them
    for figure, axes, legend, texts in drawn:
        assert sum(ax.width for ax in axes) / figure.width > 0.7 and axes[0].height > 200  # pixels at dpi 120
        assert legend.y1 < min(ax.y0 for ax in axes) and legend.width < figure.width
        assert not any(legend.overlaps(text) for text in texts)
