"""The figures a report opens with: the optimisation history and the slice plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
from figures_check import check_plot
from fixture_store import RNN, RNN_TRIALS

from tunelab import analysis
from tunelab.trainables import metrics


def test_completion_order_sorts_by_end_and_keeps_the_best_so_far(store):
    runs, _ = analysis.load(RNN, store.uri)
    order = analysis.completion_order(runs)
    # The fixture's trial i starts at i seconds and ends 1000 ms per epoch (+500) later.
    ends = {f"t{i:03d}": 1000 * i + 1000 * t[4] + 500 for i, t in enumerate(RNN_TRIALS)}
    assert order["trial"].tolist() == sorted(ends, key=lambda t: (ends[t], t))
    assert order["order"].tolist() == list(range(1, len(RNN_TRIALS) + 1))
    best, expected = math.inf, []
    for v in order["value"]:
        best = min(best, v) if math.isfinite(v) else best
        expected.append(best)
    assert order["best_so_far"].tolist() == expected
    assert all(a >= b for a, b in zip(expected, expected[1:]))


def test_optimization_history_marks_stopped_early_and_counts_infeasible(store, tmp_path):
    runs, _ = analysis.load(RNN, store.uri)
    plot = analysis.plot_optimization_history(runs)
    check_plot(plot, tmp_path)
    assert plot.name == "optimization_history"
    (ax,) = plot.figure.axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"best {metrics.VAL_PPL} so far" in labels
    assert "infeasible: 2 (rejected before training)" in labels
    assert metrics.STOPPED_EARLY in labels and metrics.COMPLETED in labels
    stopped = next(c for c in ax.collections if c.get_label() == metrics.STOPPED_EARLY)
    assert np.all(stopped.get_facecolor()[:, 3] == 0)  # hollow: a value from fewer epochs
    assert ax.get_yscale() == "log"  # a perplexity
    assert "2 infeasible configs" in plot.caption


def test_slice_has_a_panel_per_sampled_parameter_with_log_axes_where_sampled_so(store, tmp_path):
    runs, _ = analysis.load(RNN, store.uri)
    plot = analysis.plot_slice(runs)
    check_plot(plot, tmp_path)
    assert plot.name == "slice" and plot.data == ["cell", "dropout", "lr"]  # not the seed
    panels = {ax.get_xlabel(): ax for ax in plot.figure.axes if getattr(ax, "_colorbar", None) is None}
    assert set(panels) == {"cell", "dropout", "lr"}
    assert panels["lr"].get_xscale() == "log"  # the parent says lr was sampled on a log scale
    assert panels["dropout"].get_xscale() == "linear"
    assert [t.get_text() for t in panels["cell"].get_xticklabels()] == ["lstm", "gru"]


def test_slice_needs_a_varied_parameter(store):
    runs, _ = analysis.load(RNN, store.uri)
    with pytest.raises(analysis.AnalysisError, match="no parameter varied"):
        analysis.plot_slice(runs.slice(0, 1))
