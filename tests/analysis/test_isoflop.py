"""Iso-FLOP parabolas and the compute-optimal power law, on losses built to follow N* = K C^ALPHA."""

from __future__ import annotations

import pytest
from figures_check import check_plot
from fixture_store import ALPHA, BUDGETS, GPT, RNN, SIZE_FACTORS, K

from tunelab import analysis


@pytest.fixture(scope="module")
def runs(store):
    return analysis.load(GPT, store.uri)[0]


def test_fit_recovers_the_exponent(runs):
    fit = analysis.isoflop_fit(runs)
    assert [b.budget for b in fit.budgets] == list(BUDGETS)
    for b in fit.budgets:
        assert len(b.params) == len(SIZE_FACTORS)
        assert b.n_opt == pytest.approx(K * b.budget**ALPHA, rel=1e-6)
        assert b.inside and b.coeffs[0] > 0
    assert fit.exponent == pytest.approx(ALPHA, abs=1e-6)
    assert fit.coefficient == pytest.approx(K, rel=1e-4)
    assert fit.n_opt(1e16) == pytest.approx(K * 1e16**ALPHA, rel=1e-4)
    assert f"C^{ALPHA:.3f}" in str(fit)


def test_isoflop_figure(runs, tmp_path):
    plot = analysis.plot_isoflop(runs)
    check_plot(plot, tmp_path)
    assert plot.data.exponent == pytest.approx(ALPHA, abs=1e-6)
    assert "C^0.500" in plot.caption


def test_one_budget_has_no_power_law(runs):
    import pyarrow.compute as pc

    one = runs.filter(pc.equal(runs.column("flop_budget"), BUDGETS[0]))
    fit = analysis.isoflop_fit(one)
    assert fit.exponent is None and fit.budgets[0].n_opt is not None
    with pytest.raises(analysis.AnalysisError):
        fit.n_opt(1e15)


def test_a_search_without_flop_budget(store):
    runs = analysis.load(RNN, store.uri)[0]
    with pytest.raises(analysis.AnalysisError, match="no 'flop_budget' parameter"):
        analysis.isoflop_fit(runs)
