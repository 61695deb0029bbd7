"""Seed report 002's analysis: extremum metrics from histories, mean ± std over seeds, the figures,
attention maps, the report's arithmetic section and the notebook; on a made-up store (exact numbers)
and on a real search through Ray."""

from __future__ import annotations

import math

import numpy as np
import pytest
from arith_store import ARITH, STEPS, build_arith_store, fit, grok, top
from figures_check import check_plot
from test_notebooks import execute

from tunelab import analysis
from tunelab.trainables import metrics
from tunelab.trainables.arith import report as arith_report

KEYS = [(m, d, s) for m in ("gpt", "lstm") for d in (64, 128) for s in (0, 1)]


@pytest.fixture(scope="module")
def arith_store(tmp_path_factory):
    return build_arith_store(tmp_path_factory.mktemp("arith_store"))


@pytest.fixture(scope="module")
def tables(arith_store):
    return analysis.load(ARITH, arith_store.uri)


def test_extrema_from_the_histories_are_exact(tables, arith_store):
    runs, history = tables
    table = analysis.extrema(runs, history).set_index("run_id")
    assert set(table.columns) >= {"model", "d_model", "seed", metrics.VAL_ACC_T_F, metrics.ACC_DELTA_T}
    for key, run_id in arith_store.runs.items():
        row = table.loc[run_id]
        f, g, a = fit(*key), grok(*key), top(*key)
        assert row[metrics.TRAIN_ACC] == 1.0 and row[metrics.TRAIN_ACC_T_F] == f
        assert row[metrics.VAL_ACC] == pytest.approx(a) and row[metrics.VAL_ACC_T_F] == g
        assert row[metrics.TRAIN_LOSS] == pytest.approx(0.01) and row[metrics.TRAIN_LOSS_T_F] == 1000
        assert row[metrics.VAL_LOSS] == pytest.approx(0.5) and row[metrics.VAL_LOSS_T_F] == g
        assert row[metrics.LOSS_DELTA_T] == g - 1000 and row[metrics.ACC_DELTA_T] == g - f
        # What the trainable reported on its last report is what the history gives.
        for name in (*metrics.T_F.values(), metrics.LOSS_DELTA_T, metrics.ACC_DELTA_T):
            assert runs.column(f"last_{name}").to_pylist()[runs.column("run_id").to_pylist().index(run_id)] == row[name]


def test_extrema_within_alpha_t(tables, arith_store):
    runs, history = tables
    table = analysis.extrema(runs, history, alphas=[0.5, 1.0])
    assert len(table) == 16 and sorted(set(table["alpha"])) == [0.5, 1.0]
    half = table[table["alpha"] == 0.5].set_index("run_id")
    for key, run_id in arith_store.runs.items():
        row, g = half.loc[run_id], grok(*key)
        assert row[metrics.VAL_ACC_T_F] == 500 and row[metrics.VAL_ACC] == pytest.approx(top(*key) * 500 / g)
        assert row[metrics.TRAIN_LOSS_T_F] == 500 and row[metrics.VAL_LOSS_T_F] == 500  # still falling at T'
    assert analysis.extrema(runs, history, t_max=500).set_index("run_id")[metrics.VAL_ACC_T_F].max() == 500


def test_mean_and_std_over_seeds(tables):
    runs, history = tables
    table = analysis.extrema(runs, history)
    agg = analysis.aggregate(table).set_index(["model", "d_model"])  # the varied parameters but the seed
    assert sorted(agg.index) == [("gpt", 64), ("gpt", 128), ("lstm", 64), ("lstm", 128)] and (agg["n"] == 2).all()
    gpt128 = agg.loc[("gpt", 128)]
    assert gpt128[f"{metrics.VAL_ACC_T_F}_mean"] == 650 and gpt128[f"{metrics.VAL_ACC_T_F}_std"] == pytest.approx(
        math.sqrt(5000))  # 600 and 700
    assert gpt128[f"{metrics.ACC_DELTA_T}_mean"] == 400  # (600 - 200 + 700 - 300) / 2
    # Table 1: models side by side, for one d.
    with pytest.raises(analysis.AnalysisError, match="d_model"):
        analysis.side_by_side(table)
    side = analysis.side_by_side(table[table["d_model"] == 128]).set_index("metric")
    assert list(side.columns) == ["gpt", "lstm"]
    assert side.loc["t_f(A_val)", "gpt"] == "650 ± 70.7" and side.loc["t_f(A_val)", "lstm"] == "750 ± 70.7"
    assert side.loc["A_val", "lstm"] == "0.9 ± 0" and side.loc["trials", "gpt"] == "2"
    config = analysis.config_table(table).set_index(["model", "d_model"])
    assert config.loc[("gpt", 128), "t_f(A_train)"] == "250 ± 70.7" and config.loc[("gpt", 128), "n"] == 2


def test_figures(tables, tmp_path):
    runs, history = tables
    curves = analysis.plot_arith_curves(runs, history, by="d_model", where={"model": "gpt"},
                                        keys=(*analysis._arith.CURVE_PANELS, metrics.PARAM_NORM))
    check_plot(curves, tmp_path)
    bar = curves.figure.axes[-1]  # the colour bar, log2 for d
    assert bar.get_yscale() == "log" and [t.get_text() for t in bar.get_yticklabels()] == ["2^6", "2^7"]
    assert len(curves.figure.axes) == 6  # five panels and the colour bar
    extrema = analysis.plot_extrema(runs, history, "d_model", hue="model")
    check_plot(extrema, tmp_path)
    assert extrema.figure.axes[0].get_yscale() == "log" and extrema.figure.axes[0].get_xscale() == "log"
    agg = extrema.data.set_index(["model", "d_model"])
    assert agg.loc[("lstm", 64), f"{metrics.VAL_ACC_T_F}_mean"] == 850
    check_plot(analysis.plot_extrema(runs, history, "n_params_nonembed", hue="d_model", where={"model": "lstm"}),
               tmp_path)
    alpha = analysis.plot_extrema(runs, history, "d_model", hue="alpha", where={"model": "gpt"})
    check_plot(alpha, tmp_path)
    assert len(alpha.data) == 20  # 2 widths × 10 α
    with pytest.raises(analysis.AnalysisError, match="orders"):
        analysis.plot_order_curves(runs, history)


def test_attention_maps_load_and_draw(tables, arith_store, tmp_path):
    runs, _ = tables
    maps = arith_report.load_attention(runs)  # the best trial by val_acc that logged maps: a GPT
    assert maps.run_id in {arith_store.runs[k] for k in KEYS if k[0] == "gpt"}
    assert maps.weights.shape == (2, 2, 4, 6, 6) and np.allclose(maps.weights.sum(-1), 1, atol=1e-4)
    plot = arith_report.plot_attention(maps, 1)
    check_plot(plot, tmp_path)
    ax = plot.figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["BOS", "6", "+", "6", "=", "12"]
    assert len(plot.figure.axes) == 2 * 4 + 1  # layers × heads, and the colour bar
    with pytest.raises(analysis.AnalysisError, match="attention"):
        arith_report.load_attention(runs, arith_store.runs[("lstm", 64, 0)])


def test_read_artifact_gives_a_runs_file_or_none(tables, arith_store, tmp_path):
    from mlflow.tracking import MlflowClient

    runs, _ = tables
    gpt, lstm = arith_store.runs[("gpt", 64, 0)], arith_store.runs[("lstm", 64, 1)]
    assert '"weights"' in analysis.read_artifact(runs, gpt, "attention.json")
    assert analysis.read_artifact(runs, lstm, "attention.json") is None
    (tmp_path / "note.txt").write_text("in a folder")
    MlflowClient(tracking_uri=arith_store.uri).log_artifact(lstm, str(tmp_path / "note.txt"), "notes")
    assert analysis.read_artifact(runs, lstm, "notes/note.txt") == "in a folder"
    assert analysis.read_artifact(runs, lstm, "notes/other.txt") is None


def test_report_has_the_arithmetic_section(arith_store, tmp_path):
    out = analysis.report(ARITH, arith_store.uri, tmp_path / "r", log_artifacts=False)
    text = (out / "report.md").read_text()
    assert "## Modular arithmetic (seed report 002)" in text
    assert "| L_train |" in text and "650 ± 70.7" in text
    assert "table 1" not in text  # d varies besides the model: no side-by-side table, the config table
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert {"arith_curves_d_model_modelgpt", "arith_extrema_d_model_modelgpt", "attention_0", "attention_1"} <= figures
    assert "arith_curves_d_model_modellstm" in figures


def test_notebook_on_the_made_up_search(arith_store, monkeypatch, tmp_path):
    text = execute("arith_grokking", ARITH, arith_store.uri, monkeypatch, tmp_path)
    assert f"{ARITH}: 8 trials" in text and "650 ± 70.7" in text


# --- a real search through Ray --------------------------------------------------------------------

@pytest.mark.slow
def test_child_runs_hold_the_extremum_metrics(arith_search):
    """Each trial's last report carries t_f and Δt, equal to what the analysis reads off its history."""
    runs, history = analysis.load(arith_search.name, arith_search.tracking_uri)
    assert runs.num_rows == 4 and set(runs.column("status").to_pylist()) == {metrics.COMPLETED}
    table = analysis.extrema(runs, history).set_index("run_id")
    last = {c: runs.column(c).to_pylist() for c in runs.column_names if c.startswith("last_")}
    for i, run_id in enumerate(runs.column("run_id").to_pylist()):
        for name in (*metrics.T_F.values(), metrics.LOSS_DELTA_T, metrics.ACC_DELTA_T):
            assert last[f"last_{name}"][i] == table.loc[run_id, name], name
        assert last[f"last_{metrics.STEP}"][i] == 300
    side = analysis.side_by_side(analysis.extrema(runs, history)).set_index("metric")
    assert list(side.columns) == ["gpt", "lstm"] and (side.loc["trials"] == "2").all()
    assert all("±" in cell for cell in side.loc["L_train"])


@pytest.mark.slow
def test_the_attention_artifact_exists_and_draws(arith_search, tmp_path):
    runs, _ = analysis.load(arith_search.name, arith_search.tracking_uri)
    gpt = [r for r, m in zip(runs.column("run_id").to_pylist(), runs.column("model").to_pylist()) if m == "gpt"]
    for run_id in gpt:
        maps = arith_report.load_attention(runs, run_id)
        assert maps.weights.shape == (2, 2, 4, 6, 6) and maps.step == 300
        assert np.allclose(maps.weights.sum(-1), 1, atol=1e-3)
    check_plot(arith_report.plot_attention(arith_report.load_attention(runs), 0), tmp_path)


@pytest.mark.slow
def test_tunelab_report_and_the_notebook_on_a_real_search(arith_search, monkeypatch, tmp_path):
    from tunelab.search.cli import main

    assert main(["report", arith_search.name, "--storage", str(arith_search.experiment_dir.parent),
                 "--out", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "report.md").read_text()
    assert "## Modular arithmetic (seed report 002)" in text and "attention_0.png" in text
    out = execute("arith_grokking", arith_search.name, arith_search.tracking_uri, monkeypatch, tmp_path)
    assert f"{arith_search.name}: 4 trials" in out
