"""A real GPT search under FLOP budgets: TPE + ASHA on flops, a total budget, infeasible shapes."""

from __future__ import annotations

import json
import math

import pytest

from tunelab import _mlflow
from tunelab import search
from tunelab import spaces
from tunelab.search.cli import main
from tunelab.trainables import metrics

pytestmark = pytest.mark.slow
PER_TRIAL, RUNG, TOTAL = 1.0e11, 2.5e10, 4.0e11


@pytest.fixture(scope="module")
def tokens(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("tokens") / "shakespeare-char"
    assert main(["prepare-data", str(data_dir / "tinyshakespeare" / "input.txt"), "--tokenizer", "char",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def gpt_search(ray_session, tokens, tmp_path_factory):
    storage = tmp_path_factory.mktemp("gpt")
    s = spaces.load(spaces.CATALOGUE / "gpt_tiny.yaml", [
        f"data.tokens={tokens}", f"storage={storage}", "budget.trials=6",
        f"flop_budget={PER_TRIAL}", f"eval_every_flops={RUNG}", f"scheduler.max_t={PER_TRIAL}",
        f"scheduler.grace_period={RUNG}", f"budget.total_flops={TOTAL}",
        # width-32 models (and width 64 with one layer) fall under 0.3 MB: infeasible
        "constraints.model_mb=[0.3, 2.0]",
    ])
    outcome = search.run(s)
    client = _mlflow.client_for(outcome.tracking_uri)
    exp = client.get_experiment_by_name(outcome.name).experiment_id
    kids = _mlflow.children(client, exp, outcome.parent_run_id)
    return s, outcome, client, kids


def _config_of(run, s) -> dict:
    """The trial's config: the search's constant part plus the sampled values its run recorded."""
    sampled = {k: json.loads(v) if v[:1].isdigit() else v for k, v in run.data.params.items() if k in s.space.params}
    return {**s.base_config, **sampled}


def test_reports_land_on_the_same_flop_rungs(gpt_search):
    s, outcome, client, kids = gpt_search
    assert kids
    for run in kids:
        cfg = _config_of(run, s)
        per_step = s.entry.summary(cfg)["flops_per_token"] * cfg["batch_size"] * cfg["n_positions"]
        flops = [m.value for m in client.get_metric_history(run.info.run_id, metrics.FLOPS)]
        for k, f in enumerate(flops, start=1):
            # the first step past the k-th multiple of the rung: within one optimizer step of it
            assert k * RUNG <= f < k * RUNG + per_step or (f == flops[-1] and f <= PER_TRIAL), (run.info.run_name, flops)


def test_the_search_stops_within_one_report_of_the_total_budget(gpt_search):
    s, outcome, client, kids = gpt_search
    spent = sum(r.data.metrics[metrics.FLOPS] for r in kids)
    assert spent >= TOTAL or len(outcome.trials) == 6
    # each of the trials running when the budget ran out had at most one more report to make
    assert spent <= TOTAL + s.spec.budget.max_concurrent * (RUNG * 1.1)
    assert any(t.status == metrics.STOPPED_EARLY for t in outcome.trials)


def test_infeasible_shapes_never_start_a_trial(gpt_search):
    s, outcome, client, kids = gpt_search
    parent = client.get_run(outcome.parent_run_id)
    n_infeasible = parent.data.metrics["n_infeasible"]
    assert n_infeasible >= 1
    for run in kids:
        cfg = _config_of(run, s)
        assert s.entry.check(cfg, s.spec.constraints) is None
        assert 0.3 <= s.entry.summary(cfg)["model_mb"] <= 2.0
    trial_dirs = [p for p in outcome.experiment_dir.iterdir() if p.is_dir() and p.name.startswith("train_")]
    assert len(trial_dirs) == len(outcome.trials) == len(kids)
    with open(client.download_artifacts(outcome.parent_run_id, "report/infeasible.json")) as f:
        listed = json.load(f)
    assert len(listed) == n_infeasible and all("model_mb" in row["reason"] for row in listed)
    assert all(math.isfinite(t.best) for t in outcome.trials if t.status == metrics.COMPLETED)
