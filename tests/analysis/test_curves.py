"""Learning curves against epochs, wall-clock and FLOPs."""

from __future__ import annotations

import pytest
from figures_check import check_plot
from fixture_store import GPT, RNN

from tunelab import analysis


@pytest.fixture(scope="module")
def tables(store):
    return analysis.load(RNN, store.uri)


@pytest.mark.parametrize("x", ["epoch", "wall_s", "flops"])
def test_curves_against_each_axis(tables, tmp_path, x):
    plot = analysis.plot_curves(*tables, x=x)
    check_plot(plot, tmp_path)
    loss, ppl = plot.figure.axes
    assert loss.get_ylabel().startswith("cross-entropy") and ppl.get_yscale() == "log"
    # 8 trials, a train and a validation line each where logged (the diverged trial has no finite value)
    assert len(loss.lines) == 2 * 7
    legend = plot.figure.legends[0]
    assert {"train", "validation"} <= {t.get_text() for t in legend.get_texts()}


def test_curves_limit_and_choose_trials(tables, store):
    plot = analysis.plot_curves(*tables, max_trials=3)
    assert len(plot.figure.axes[0].lines) == 2 * 3 and "3 best of 8" in plot.caption
    plot = analysis.plot_curves(*tables, trials=["rnn00004"])
    assert len(plot.figure.axes[0].lines) == 2
    runs, history = analysis.load(GPT, store.uri)
    assert analysis.plot_curves(runs, history, x="flops").figure.axes[0].get_xscale() == "log"


def test_curves_against_an_unlogged_axis(tables):
    with pytest.raises(analysis.AnalysisError, match="no trial logged 'tokens_seen'"):
        analysis.plot_curves(*tables, x="tokens_seen")
