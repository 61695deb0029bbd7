"""The search machinery under load and when trial code raises, with the synthetic trainable."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState
from ray import tune

from tunelab import _mlflow
from tunelab import search
from tunelab import spaces
from tunelab.search import load_study
from tunelab.search._searcher import STATUS_ATTR
from tunelab.trainables import metrics
from tunelab.trainables import tags

pytestmark = pytest.mark.slow
LOAD = spaces.CATALOGUE / "synthetic_load.yaml"


def _children(outcome):
    client = _mlflow.client_for(outcome.tracking_uri)
    exp_id = client.get_run(outcome.parent_run_id).info.experiment_id
    return client, _mlflow.children(client, exp_id, outcome.parent_run_id)


def test_a_trial_that_raises_is_retried_then_recorded_as_error(ray_session, tmp_path):
    s = spaces.load(LOAD, ["budget.trials=2", "budget.max_failures=2", "fail_at_epoch=3", "scheduler.name=fifo",
                                 f"storage={tmp_path}"])
    outcome = search.run(s)
    assert outcome.counts()[metrics.ERROR] == 2
    # Ray ran each trial 1 + max_failures times before giving up.
    analysis = tune.ExperimentAnalysis(str(outcome.experiment_dir))
    assert sorted(t.run_metadata.num_failures for t in analysis.trials) == [3, 3]
    client, kids = _children(outcome)
    assert len(kids) == 2  # retries reuse the trial's run
    for run in kids:
        assert run.data.tags[tags.STATUS] == metrics.ERROR and run.info.status == "FAILED"
        assert "RuntimeError: synthetic failure at epoch 3" in run.data.tags[tags.ERROR]
        assert [m.step for m in client.get_metric_history(run.info.run_id, metrics.VAL_LOSS)] == [1, 2]
    assert client.get_run(outcome.parent_run_id).data.tags["tunelab.n_error"] == "2"


def test_trials_of_an_instant_trainable_share_a_worker_process(ray_session, tmp_path):
    # synthetic sets Entry.reuse_workers: Ray runs the next trial in the worker the last one ended in.
    s = spaces.load(LOAD, ["budget.trials=4", "budget.max_concurrent=1", "scheduler.name=fifo", f"storage={tmp_path}"])
    outcome = search.run(s)
    assert outcome.counts()[metrics.COMPLETED] == 4
    analysis = tune.ExperimentAnalysis(str(outcome.experiment_dir))
    assert len({t.last_result["pid"] for t in analysis.trials}) == 1
    client, kids = _children(outcome)
    assert len(kids) == 4
    for run in kids:  # every trial its own run, all four reports, nothing left over from the trial before
        assert [m.step for m in client.get_metric_history(run.info.run_id, metrics.VAL_LOSS)] == [1, 2, 3, 4]


def test_trials_cut_off_by_the_time_budget_are_closed_everywhere(ray_session, tmp_path):
    # Ray ends an experiment whose budget ran out without telling the searcher or the callbacks about
    # the trials it stops; here neither trial has reported yet when the 8 s run out.
    s = spaces.load(LOAD, ["budget.trials=2", "budget.time_s=8", "sleep_s=60", "scheduler.name=fifo",
                           f"storage={tmp_path}"])
    outcome = search.run(s)
    assert outcome.counts()[metrics.STOPPED_EARLY] == 2
    client, kids = _children(outcome)
    assert len(kids) == 2
    for run in kids:
        assert run.data.tags[tags.STATUS] == metrics.STOPPED_EARLY and run.info.status == "FINISHED"
        assert set(run.data.params) >= {"x", "y", "sleep_s"}  # params ride with a first report it never made
    study = load_study(outcome.experiment_dir)
    assert [(t.state, t.user_attrs[STATUS_ATTR]) for t in study.trials] == [(TrialState.PRUNED, metrics.STOPPED_EARLY)] * 2
    assert client.get_run(outcome.parent_run_id).info.status == "FINISHED"


def test_a_search_of_200_short_trials_completes(ray_session, tmp_path):
    s = spaces.load(LOAD, ["budget.max_concurrent=4", "resources.cpu=0.5", f"storage={tmp_path}"])
    outcome = search.run(s)
    assert len(outcome.trials) == 200
    counts = outcome.counts()
    assert counts[metrics.COMPLETED] + counts[metrics.STOPPED_EARLY] == 200 and counts[metrics.STOPPED_EARLY] > 0
    client, kids = _children(outcome)
    assert len(kids) == 200 and len({r.data.tags[tags.TRIAL_ID] for r in kids}) == 200
    # TPE found the known optimum's neighbourhood: val_loss = 1 + (x-0.3)^2 + (y+0.2)^2 + 1/4 at best.
    assert outcome.best.best < 1.25 + 0.01
