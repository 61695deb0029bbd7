"""fANOVA parameter importance on a study rebuilt from the runs table."""

from __future__ import annotations

import math

import pytest
from figures_check import check_plot
from fixture_store import RNN
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from tunelab import analysis


@pytest.fixture(scope="module")
def runs(store):
    return analysis.load(RNN, store.uri)[0]


def test_rebuilt_study_has_one_trial_per_finite_run(runs):
    study, params = analysis.rebuild_study(runs)
    finite = [v for v in runs.column("best_val_ppl").to_pylist() if v is not None and math.isfinite(v)]
    assert sorted(t.value for t in study.trials) == sorted(finite)
    assert params == ["cell", "dropout", "lr", "seed"]
    dists = study.trials[0].distributions
    assert isinstance(dists["cell"], CategoricalDistribution) and set(dists["cell"].choices) == {"lstm", "gru"}
    assert isinstance(dists["lr"], FloatDistribution) and dists["lr"].high == 8.0  # the diverged lr=15 has no value
    assert isinstance(dists["seed"], IntDistribution)


def test_importances_sum_to_one_and_are_drawn(runs, tmp_path):
    plot = analysis.plot_importance(runs)
    imp = plot.data  # what param_importance returned
    assert set(imp) == {"cell", "dropout", "lr", "seed"}
    assert sum(imp.values()) == pytest.approx(1.0)
    assert all(v >= 0 for v in imp.values())
    check_plot(plot, tmp_path)
    assert len(plot.figure.axes[0].patches) == 4


def test_too_few_trials(runs):
    with pytest.raises(analysis.AnalysisError, match="at least 2 trials"):
        analysis.param_importance(runs.slice(0, 1))
