"""Launching a search (search/_run.py) up to the fit, and closing it however the fit ends, with real
MLflow and Optuna and a stand-in Tuner (nothing here starts Ray)."""

from __future__ import annotations

import io
import json
import os

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tunelab import _mlflow, spaces
from tunelab import search as tunelab_search
from tunelab.search import _console, _run, _tuner, _ui
from tunelab.search._ends import ObjectiveCheck
from tunelab.search._errors import SearchFailed
from tunelab.search._paths import RESERVE_FILE, SEARCH_FILE, STATE_FILE, STUDY_FILE, experiment_dir, load_study, \
    study_storage
from tunelab.search._searcher import EXHAUSTED_ATTR, open_storage
from tunelab.search._warmstart import WarmStart
from tunelab.trainables import metrics
from tunelab.trainables import tags

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_a_name_that_holds_a_search_is_refused_and_left_as_it_was(synthetic):
    s = synthetic()
    exp_dir = experiment_dir(s)
    exp_dir.mkdir(parents=True)
    _run._refuse_existing(s, exp_dir)  # a folder without a search's state is free
    (exp_dir / STATE_FILE).write_text("{}")
    with pytest.raises(_run.SearchExistsError) as caught:
        tunelab_search.run(s)
    assert str(caught.value) == (f"a search named 'synthetic-load' already exists in {s.storage}; resume it with "
                                 "`tunelab resume synthetic-load` or choose another --name")
    assert sorted(p.name for p in exp_dir.iterdir()) == [".tunelab.lock", STATE_FILE]
    assert (exp_dir / STATE_FILE).read_text() == "{}"


def test_a_space_without_a_feasible_config_is_refused_naming_constraints_and_nothing_is_left(synthetic):
    s = synthetic("epochs=0")
    with pytest.raises(spaces.SpecError) as caught:
        tunelab_search.run(s)
    assert (caught.value.file, caught.value.field, caught.value.message) == (
        s.file, "constraints", "no config of the space is feasible: none of 200 drawn at random passed the trainable's "
                               "check (the first: epochs=0 must be at least 1); loosen the space or its constraints")
    assert not s.storage.exists()
    _run._refuse_infeasible(synthetic("epochs=1"))  # every config feasible: no error


def test_a_tracking_uri_mlflow_has_no_store_for_is_a_spec_error_naming_tracking_uri(synthetic):
    s = synthetic("tracking.uri=ftp://host/x")
    with pytest.raises(spaces.SpecError) as caught:
        _run._experiment(s)
    assert (caught.value.field, caught.value.message) == (
        "tracking.uri", "cannot use MLflow at ftp://host/x: MLflow has no store for the scheme 'ftp'; expected one of "
                        f"{', '.join(_mlflow.USABLE_SCHEMES)}")


def test_the_experiment_is_the_search_s_name_made_once_with_its_artifacts_beside_the_results(synthetic, mlflow_store):
    s = synthetic(f"tracking.uri={mlflow_store[0]}", "name=made-once")
    client, exp_id = _run._experiment(s)
    exp = client.get_experiment(exp_id)
    assert (exp.name, exp.artifact_location) == ("made-once", (s.storage / "mlartifacts").as_uri())
    assert _run._experiment(s)[1] == exp_id


# --- _record ------------------------------------------------------------------------------------


def test_record_writes_the_folder_the_parent_run_and_the_view(synthetic, experiment):
    client, exp_id = experiment
    s = synthetic()
    exp_dir = experiment_dir(s)
    parent = _run._record(s, exp_dir, client, exp_id, [], None, None)
    assert json.loads((exp_dir / STATE_FILE).read_text()) == {
        "name": "synthetic-load", "file": s.file, "tracking_uri": s.tracking_uri, "experiment_id": exp_id,
        "parent_run_id": parent.run_id, "spec_hash": s.spec_hash, "cwd": os.getcwd()}
    assert (exp_dir / SEARCH_FILE).read_text() == s.resolved_yaml()
    assert spaces.load(exp_dir / SEARCH_FILE).spec_hash == s.spec_hash  # the resolved file is the same search
    assert not (exp_dir / STUDY_FILE).exists()  # no warm start: the searcher makes the study
    assert not (exp_dir / _console.RAY_LOG).exists()  # verbose: Ray's output stays on the console
    run = client.get_run(parent.run_id)
    assert (run.info.experiment_id, run.info.status, run.data.tags[tags.TRAINABLE]) == (exp_id, "RUNNING", "synthetic")
    exp_tags = client.get_experiment(exp_id).tags
    assert exp_tags[_ui.EXPERIMENT_KIND_TAG] == _ui.MODEL_TRAINING and _ui.VIEW_TAG in exp_tags


def test_record_seeds_the_study_with_the_warm_start_and_opens_ray_s_log(synthetic, experiment):
    client, exp_id = experiment
    s = synthetic()
    exp_dir = experiment_dir(s)
    dist = {"x": FloatDistribution(-1.0, 1.0), "y": FloatDistribution(-1.0, 1.0)}
    earlier = [create_trial(state=TrialState.COMPLETE, value=v, params={"x": x, "y": 0.0}, distributions=dist)
               for x, v in ((0.3, 1.3), (-0.5, 1.9))]
    warm = WarmStart("search a in /runs", earlier, {})
    with _console.ray_output(False, console=io.StringIO()) as ray_log:
        parent = _run._record(s, exp_dir, client, exp_id, [], warm, ray_log)
        print("from Ray")
    assert "from Ray" in (exp_dir / _console.RAY_LOG).read_text()
    study = load_study(exp_dir, s.spec.name)
    assert [(t.params["x"], t.value, t.state) for t in study.trials] == [(0.3, 1.3, TrialState.COMPLETE),
                                                                           (-0.5, 1.9, TrialState.COMPLETE)]
    assert client.get_run(parent.run_id).data.tags[tags.WARM_START] == "search a in /runs: 2 trials taken, 0 skipped"


# --- fit_and_finish -----------------------------------------------------------------------------


class _Tuner:
    """Stands in for a Tuner whose ``fit`` ended as given: returned ``grid``, or raised ``error``."""

    def __init__(self, grid=(), error: BaseException | None = None):
        self.grid, self.error = list(grid), error

    def fit(self):
        if self.error is not None:
            raise self.error
        return self.grid


@pytest.fixture
def recorded(synthetic, experiment):
    """A search recorded as ``run`` records it, up to its fit: (search, folder, parent run)."""
    client, exp_id = experiment
    s = synthetic()
    exp_dir = experiment_dir(s)
    return s, exp_dir, _run._record(s, exp_dir, client, exp_id, [], None, None)


def _study(s, exp_dir):
    return optuna.create_study(storage=open_storage(study_storage(exp_dir)), study_name=s.spec.name)


def _parent_state(parent):
    run = parent.client.get_run(parent.run_id)
    return run.info.status, run.data.tags.get(tags.STATE), run.data.tags.get(tags.STATE_REASON)


def test_a_fit_that_returns_finishes_the_search(recorded):
    s, exp_dir, parent = recorded
    _study(s, exp_dir)
    outcome = _run.fit_and_finish(_Tuner(), s, exp_dir, parent, _tuner.objective_check(s), stop_ray=False)
    assert (outcome.state, outcome.reason, outcome.trials) == (metrics.FINISHED_STATE, None, [])
    assert _parent_state(parent) == ("FINISHED", metrics.FINISHED_STATE, None)
    assert not (exp_dir / RESERVE_FILE).exists()  # the room kept for the last save is given back


def test_a_failed_write_of_the_results_interrupts_the_search_as_a_fault(recorded):
    s, exp_dir, parent = recorded
    _study(s, exp_dir)
    error = OSError(28, "No space left on device")
    outcome = _run.fit_and_finish(_Tuner(error=error), s, exp_dir, parent, stop_ray=False)
    reason = "could not write the search's results: [Errno 28] No space left on device"
    assert (outcome.state, outcome.reason, outcome.fault) == (metrics.INTERRUPTED_STATE, reason, True)
    assert _parent_state(parent) == ("KILLED", metrics.INTERRUPTED_STATE, reason)


def test_a_second_ctrl_c_before_the_first_trial_interrupts_the_search(recorded):
    s, exp_dir, parent = recorded  # no study yet: the searcher never suggested a config
    outcome = _run.fit_and_finish(_Tuner(error=KeyboardInterrupt()), s, exp_dir, parent, stop_ray=False)
    assert (outcome.state, outcome.reason, outcome.fault, outcome.trials) == (
        metrics.INTERRUPTED_STATE, "SIGINT", False, [])
    assert _parent_state(parent) == ("KILLED", metrics.INTERRUPTED_STATE, "SIGINT")


def test_a_missing_objective_or_a_sampler_that_ran_dry_fails_the_search(recorded):
    s, exp_dir, parent = recorded
    study = _study(s, exp_dir)
    assert _run._exhausted(exp_dir, s) is None
    check = ObjectiveCheck("val_loss", None)
    check.problem = "the trainable reported no 'val_loss'"
    outcome = _run.fit_and_finish(_Tuner(), s, exp_dir, parent, check, stop_ray=False)
    assert (outcome.state, outcome.reason) == (metrics.FAILED, "the trainable reported no 'val_loss'")
    assert _parent_state(parent) == ("FAILED", metrics.FAILED, "the trainable reported no 'val_loss'")

    study.set_user_attr(EXHAUSTED_ATTR, "the sampler proposed 200 infeasible configs in a row")
    assert _run._exhausted(exp_dir, s) == "the sampler proposed 200 infeasible configs in a row"
    outcome = _run.fit_and_finish(_Tuner(), s, exp_dir, parent, stop_ray=False)
    assert (outcome.state, outcome.reason) == (metrics.FAILED, "the sampler proposed 200 infeasible configs in a row")


def test_no_study_means_the_sampler_did_not_run_dry(recorded):
    s, exp_dir, parent = recorded
    assert _run._exhausted(exp_dir, s) is None


def test_a_search_whose_saved_state_cannot_be_read_fails_with_its_runs_closed(recorded):
    s, exp_dir, parent = recorded
    _study(s, exp_dir)
    (exp_dir / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")  # Ray's snapshot, cut short
    with pytest.raises(SearchFailed) as caught:
        _run.fit_and_finish(_Tuner(error=KeyboardInterrupt()), s, exp_dir, parent, stop_ray=False)
    why = "SIGINT; the search could not be summed up: 'trial_data'"
    assert str(caught.value) == f"{why} (its runs are closed as interrupted; what Ray saved is in {exp_dir})"
    assert _parent_state(parent) == ("KILLED", metrics.INTERRUPTED_STATE, why)
