"""ASHA rungs read back from where the trials stopped."""

from __future__ import annotations

from figures_check import check_plot
from fixture_store import RNN, RNN_TRIALS

from tunelab import analysis


def test_rungs_and_trials_alive(store):
    runs, history = analysis.load(RNN, store.uri)
    r = analysis.rungs(runs, history)
    assert r.time_attr == "epoch"
    stopped = {t[4] for t in RNN_TRIALS if t[5] == "stopped_early"}
    assert r.rungs == sorted(stopped | {6})
    assert r.alive == [sum(t[4] >= rung for t in RNN_TRIALS) for rung in r.rungs]
    assert r.progress["rnn00005"] == 1 and r.status["rnn00006"] == "diverged"


def test_asha_figure(store, tmp_path):
    runs, history = analysis.load(RNN, store.uri)
    plot = analysis.plot_asha(runs, history)
    check_plot(plot, tmp_path)
    left, right = plot.figure.axes
    assert [p.get_height() for p in left.patches] == [len(RNN_TRIALS), *plot.data.alive]
    assert len(right.patches) == len(RNN_TRIALS)
