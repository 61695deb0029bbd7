"""bench/search_efficiency.py: its regret arithmetic on made-up runs, and a smoke run of --quick."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

_spec = importlib.util.spec_from_file_location("search_efficiency", ROOT / "bench" / "search_efficiency.py")
se = sys.modules["search_efficiency"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(se)


def _truth(mode="min", log=False):
    # Five configs, located by the "row" parameter; means 1..5 (min) or 5..1 (max).
    means = np.array([1.0, 2.0, 3.0, 4.0, 5.0] if mode == "min" else [5.0, 4.0, 3.0, 2.0, 1.0])
    return se.Truth(means, lambda p: p["row"], mode, log=log)


def test_regret_is_0_at_the_best_mean_and_1_at_the_median_mean():
    for mode in ("min", "max"):
        t = _truth(mode)
        assert [t.regret({"row": r}) for r in range(5)] == [0.0, 0.5, 1.0, 1.5, 2.0]
    t = _truth("min", log=True)  # (log 5 - log 1) / (log 3 - log 1)
    assert t.regret({"row": 4}) == pytest.approx(math.log(5) / math.log(3))


def _run(trials):
    return se.RunResult("b", "m", 0, 1.0, [se.Trial(float(i), {"row": r}, v, c, f)
                                           for i, (r, v, c, f) in enumerate(trials)])


def test_the_incumbent_is_the_best_finished_trial_by_its_reported_value():
    # (row, reported value, cost, finished); the stopped trial's low value must not become the incumbent,
    # and the reported value (noisy) picks the incumbent while its regret comes from the table's mean.
    run = _run([(3, 4.1, 10, True), (4, 0.5, 5, False), (2, 2.9, 20, True), (1, 3.0, 5, True), (0, 1.2, 10, True)])
    costs, regrets = se.trace(run, _truth())
    assert costs.tolist() == [10, 15, 35, 40, 50]
    assert regrets.tolist() == [1.5, 1.5, 1.0, 1.0, 0.0]
    assert se.regret_at(costs, regrets, 9.9) == math.inf
    assert se.regret_at(costs, regrets, 35) == 1.0
    assert se.regret_at(costs, regrets, 49) == 1.0
    assert se.regret_at(costs, regrets, 1e9) == 0.0
    assert se.compute_to_reach(costs, regrets, 1.0) == 35
    assert se.compute_to_reach(costs, regrets, -1) == math.inf


def test_the_table_gives_median_and_iqr_and_compute_to_the_baselines_median():
    truth = {"b": _truth()}
    base = [_run([(4, 5, 10, True), (2, 3, 10, True)]), _run([(3, 4, 10, True), (1, 2, 10, True)]),
            _run([(2, 3, 10, True), (0, 1, 10, True)])]
    other = [_run([(1, 2, 10, True), (0, 1, 10, True)]) for _ in range(3)]
    runs = [dataclasses.replace(r, method=se.BASELINE, seed=i) for i, r in enumerate(base)]
    runs += [dataclasses.replace(r, method="other", seed=i) for i, r in enumerate(other)]
    text, numbers = se.summarize(runs, truth)
    assert numbers["b"]["budget"] == 20
    assert numbers["b"]["target"] == 0.5  # baseline finals 1.0, 0.5, 0.0
    assert numbers["b"]["methods"]["other"]["reach"] == 0.5  # every run is at 0.5 after 10 of B = 20
    assert numbers["b"]["methods"][se.BASELINE]["reach"] == 1.0
    assert "| other | 3 | 2 |" in text and "0.5 [0.5, 0.5]" in text


def test_the_peer_gets_the_search_files_space_as_optuna_distributions():
    import optuna.distributions as d

    from tunelab import spaces

    s = spaces.load(spaces.CATALOGUE / "bench_hpolib.yaml")
    dist = se.optuna_distributions(s.space)
    assert dist["init_lr"] == d.FloatDistribution(5e-4, 0.1, log=True)
    assert dist["n_units_1"] == d.IntDistribution(16, 512, log=True)
    assert dist["dropout_2"] == d.FloatDistribution(0.0, 0.6, step=0.3)
    assert dist["lr_schedule"] == d.CategoricalDistribution(["cosine", "const"])


@pytest.mark.slow
def test_quick_mode_runs_real_searches_and_writes_the_table_and_figure(ray_session, tmp_path):
    text = se.main(["--quick", "--seeds", "2", "--trials", "8", "--out", str(tmp_path)])
    runs = json.loads((tmp_path / "runs.json").read_text())
    methods = {r["method"] for r in runs}
    assert {se.BASELINE, "tunelab default", "Ray OptunaSearch+ASHA"} <= methods
    assert {r["benchmark"] for r in runs} == {se.QUICK_TABULAR, *(b.name for b in se.CURVES)}
    assert len(runs) == 2 * len(methods) * (1 + len(se.CURVES))
    for r in runs:
        assert len(r["trials"]) == 8 and all(t["cost"] > 0 for t in r["trials"])
        if r["benchmark"] == se.QUICK_TABULAR:  # one report per trial: nothing for ASHA to stop
            assert all(t["finished"] for t in r["trials"])
        if r["method"] == "Ray OptunaSearch+ASHA":  # in the order Ray made them (its trial counter)
            assert [t["start"] for t in r["trials"]] == list(range(1, 9))
    for m in methods:
        assert f"| {m} | 2 | 8 |" in text
    assert (tmp_path / "regret_vs_compute.png").stat().st_size > 10_000
    assert (tmp_path / "table.md").read_text() == text
    numbers = json.loads((tmp_path / "numbers.json").read_text())
    for m in numbers[se.QUICK_TABULAR]["methods"].values():
        assert all(0 <= x < math.inf for x in m["final"])
    for b in se.CURVES:  # FIFO runs every curve to its end; an ASHA run of 8 trials might finish none
        assert all(0 <= x < math.inf for x in numbers[b.name]["methods"][se.BASELINE]["final"])
