"""Pareto fronts of quality against FLOPs and wall-clock."""

from __future__ import annotations

import math

import pytest
from figures_check import check_plot
from fixture_store import RNN

from tunelab import analysis


def test_pareto_front_by_hand():
    cost = [1, 2, 3, 4, 2, math.nan, 5]
    quality = [10, 8, 9, 5, 8, 1, math.inf]
    assert analysis.pareto_front(cost, quality) == [0, 1, 3]  # 4 ties 1 at a cost no lower; 2 is beaten
    assert analysis.pareto_front(cost, [-q for q in quality], mode="max") == [0, 1, 3]
    assert analysis.pareto_front([], []) == []


@pytest.mark.parametrize("x", ["flops", "wall_s"])
def test_pareto_figure(store, tmp_path, x):
    runs, _ = analysis.load(RNN, store.uri)
    plot = analysis.plot_pareto(runs, x=x)
    check_plot(plot, tmp_path)
    cost = runs.column(f"last_{x}").to_pylist()
    best = runs.column("best_val_ppl").to_pylist()
    trials = runs.column("trial_id").to_pylist()
    front = [trials[i] for i in analysis.pareto_front(cost, [math.nan if b is None else b for b in best])]
    assert plot.data == front
    for t in front:  # nobody beats a front trial on both
        i = trials.index(t)
        assert not any(c <= cost[i] and b is not None and b < best[i] for c, b in zip(cost, best))


def test_pareto_needs_the_cost(store):
    runs, _ = analysis.load(RNN, store.uri)
    with pytest.raises(analysis.AnalysisError, match="no trial logged 'joules'"):
        analysis.plot_pareto(runs, x="joules")
