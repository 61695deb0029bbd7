"""Curve banks end to end: a real GPT search exported by bench/curve_bank.py, replayed by the curves
trainable in a real tunelab search exactly as MLflow recorded the training; ASHA on the real bank."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from tunelab import analysis
from tunelab import search
from tunelab import spaces
from tunelab.trainables import curves
from tunelab.trainables import metrics as M

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BANK = "gpt_shakespeare_char"
REPLAY = spaces.CATALOGUE / "bench_curves_gpt.yaml"
# A grid of 2 configurations x 2 seeds, 8 evaluations of a 4e9-FLOP budget each: seconds per trial.
TINY = ["flop_budget=4.0e+9", "eval_every_flops=5.0e+8", "n_embd=32", "n_head=2", "batch_size=8", "min_lr=3.0e-3",
        "warmup_frac=0.02", "eval_iters=2", "space.n_layer={choice: [1, 2]}", "budget.trials=4"]


def _curve_bank():
    spec = importlib.util.spec_from_file_location("curve_bank", ROOT / "bench" / "curve_bank.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def _curves_by_run(runs, history, keys=curves.HISTORY_KEYS) -> dict[str, list[dict]]:
    """run_id -> the run's reports in step order, as MLflow holds them (the 0/1 flags, which MLflow
    holds once at the last step, 0 before it)."""
    out: dict[str, dict[int, dict]] = {}
    for run_id, key, step, value in zip(*(history.column(n).to_pylist() for n in ("run_id", "key", "step", "value"))):
        if key in keys:
            out.setdefault(run_id, {}).setdefault(step, {})[key] = value
    flags = {k: 0 for k in keys if k in M.FLAGS}
    return {r: [{**flags, **points[s]} for s in sorted(points)] for r, points in out.items()}


@pytest.fixture(scope="module")
def tiny_bank(ray_session, tmp_path_factory):
    """A real GPT bank search (grid sampler, FIFO) exported to Parquet by curve_bank.py's own main."""
    tmp = tmp_path_factory.mktemp("bank")
    sets = [arg for s in TINY for arg in ("--set", s)]
    assert _curve_bank().main(["gpt", "--storage", str(tmp / "runs"), "--out", str(tmp / "data" / BANK), *sets]) == 0
    gpt = spaces.load(tmp / "runs" / "curve-bank-gpt" / "search.yaml")
    return tmp, analysis.load(gpt.spec.name, gpt.tracking_uri)


def test_the_export_holds_every_recorded_evaluation(tiny_bank):
    tmp, (runs, history) = tiny_bank
    bank = curves.read_bank(tmp / "data" / BANK, BANK)
    assert bank.grid["n_layer"] == (1, 2) and bank.meta["grid"]["seed"] == [0, 1]
    assert bank.meta["trainable"] == "gpt" and bank.meta["commit"] and bank.meta["fixed"]["flop_budget"] == 4e9
    recorded = _curves_by_run(runs, history)
    exported = [c for cs in bank.curves.values() for c in cs]
    assert len(exported) == len(recorded) == 4
    assert all(list(c) in list(recorded.values()) for c in exported)  # value for value, every point
    for curve in exported:
        assert len(curve) >= 8 and curve[-1][M.FINISHED] == 1
        flops = [p[M.FLOPS] for p in curve]
        assert flops == sorted(flops) and flops[-1] <= 4e9


def test_a_real_search_replays_the_recorded_curves_exactly(tiny_bank):
    tmp, (gpt_runs, gpt_history) = tiny_bank
    s = spaces.load(REPLAY, [f"data.dir={tmp / 'data'}", f"storage={tmp / 'replay'}", "scheduler.name=fifo",
                             "sampler.name=random", "budget.trials=6", "seed=null",
                             *[t for t in TINY if t.split("=")[0] in ("n_embd", "n_head", "batch_size", "min_lr", "warmup_frac")]])
    outcome = search.run(s)
    assert [t.status for t in outcome.trials] == [M.COMPLETED] * 6
    runs, history = analysis.load(s.spec.name, s.tracking_uri)
    # what the GPT trials reported, by (n_layer, seed): the replay must be one of these, value for value
    trained = {(r["n_layer"], r["seed"]): _curves_by_run(gpt_runs, gpt_history)[r["run_id"]] for r in gpt_runs.to_pylist()}
    replayed = _curves_by_run(runs, history)
    for r in runs.to_pylist():
        n_layer = 1 if r["n_layer"] < math.sqrt(2) else 2  # the snap, on a log scale
        assert replayed[r["run_id"]] in (trained[(n_layer, 0)], trained[(n_layer, 1)]), r["run_name"]


def test_asha_stops_some_trials_on_the_real_bank(ray_session, tmp_path):
    s = spaces.load(REPLAY, [f"storage={tmp_path}", "budget.trials=18"])
    outcome = search.run(s)
    statuses = [t.status for t in outcome.trials]
    assert statuses.count(M.STOPPED_EARLY) >= 3 and statuses.count(M.COMPLETED) >= 1, statuses
    bank = curves.load_data({})[BANK]
    runs, history = analysis.load(s.spec.name, s.tracking_uri)
    replayed = _curves_by_run(runs, history)
    rungs = (s.spec.scheduler.grace_period, s.spec.scheduler.grace_period * s.spec.scheduler.reduction_factor)
    for r in runs.to_pylist():
        reports = replayed[r["run_id"]]
        key = bank.snap({n: r[n] for n in bank.grid})
        full = bank.curve(key, 0)  # seed 0, as the search file fixes it
        assert reports == list(full[:len(reports)])  # a prefix of the recorded curve, value for value
        if r["status"] == M.STOPPED_EARLY:  # stopped at the report that crossed a rung
            assert len(reports) < len(full)
            crossed = [f for f in rungs if reports[-1][M.FLOPS] >= f > (reports[-2][M.FLOPS] if len(reports) > 1 else 0)]
            assert crossed, (r["run_name"], [p[M.FLOPS] for p in reports])
        else:
            assert r["status"] in (M.COMPLETED, M.STATUS_DIVERGED) and len(reports) == len(full)
