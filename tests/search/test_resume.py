"""Picking a search up again (search/_resume.py): what ``resume`` and ``sync`` refuse, before they start
anything, and ``sync`` of a real search that MLflow missed."""

from __future__ import annotations

import json

import pytest
import yaml

from _tiny import RECORDS, fresh_parent, records
from tunelab import spaces
from tunelab.search import _run
from tunelab.search._errors import SearchRunningError
from tunelab.search._paths import SEARCH_FILE, STATE_FILE, claim, experiment_dir
from tunelab.search._resume import _reload, resume, sync
from tunelab.trainables import metrics
from tunelab.trainables import tags


@pytest.mark.parametrize("command", [resume, sync])
def test_a_search_that_is_not_there_is_a_spec_error_naming_it(command, tmp_path):
    root = tmp_path / "runs"
    with pytest.raises(spaces.SpecError) as caught:
        command("nope", root)
    assert (caught.value.file, caught.value.field, caught.value.message) == (
        str(root), "name", f"no search named 'nope' under {root}")
    assert not root.exists()


@pytest.fixture
def recorded(synthetic, mlflow_store, experiment):
    """A search recorded as ``run`` records it, in the session's MLflow store, that never reached Ray:
    (its folder, its state)."""
    client, exp_id = experiment
    s = synthetic(f"tracking.uri={mlflow_store[0]}")
    exp_dir = experiment_dir(s)
    _run._record(s, exp_dir, client, exp_id, [], None, None)
    return exp_dir, json.loads((exp_dir / STATE_FILE).read_text())


def test_a_search_ray_saved_nothing_of_cannot_be_resumed_and_is_left_as_it_was(recorded, mlflow_store):
    exp_dir, state = recorded
    with pytest.raises(spaces.SpecError) as caught:
        resume(exp_dir.name, exp_dir.parent)
    assert (caught.value.file, caught.value.field, caught.value.message) == (
        str(exp_dir), "name", "cannot resume 'synthetic-load': Ray's saved state of it is missing or unreadable (No "
                              "experiment snapshot file of form 'experiment_state-*.json' was found at: (local, "
                              f"{exp_dir})); run it again under another --name")
    assert mlflow_store[1].get_run(state["parent_run_id"]).info.status == "RUNNING"  # not reopened


def test_a_search_another_process_holds_is_not_resumed_nor_synced(recorded):
    exp_dir, state = recorded
    with claim(exp_dir, exp_dir.name):
        for command in (resume, sync):
            with pytest.raises(SearchRunningError) as caught:
                command(exp_dir.name, exp_dir.parent)
            assert str(caught.value) == (f"the search 'synthetic-load' in {exp_dir.parent} is already running in "
                                         "another process; wait for it to end, or stop it")


def _state(exp_dir, **changes):
    state = json.loads((exp_dir / STATE_FILE).read_text())
    (exp_dir / STATE_FILE).write_text(json.dumps({**state, **changes}))


@pytest.mark.parametrize("command", [resume, sync])
def test_mlflow_out_of_reach_is_a_spec_error_naming_the_state_s_tracking_uri(recorded, command, monkeypatch):
    exp_dir, state = recorded
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    _state(exp_dir, tracking_uri="http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(spaces.SpecError) as caught:
        command(exp_dir.name, exp_dir.parent)
    assert (caught.value.file, caught.value.field) == (str(exp_dir / STATE_FILE), "tracking_uri")
    assert caught.value.message.startswith("cannot use MLflow at http://127.0.0.1:9: ")


def test_a_parent_run_mlflow_does_not_have_is_a_spec_error_before_ray_is_read(recorded):
    exp_dir, state = recorded
    _state(exp_dir, parent_run_id="0123456789abcdef")
    with pytest.raises(spaces.SpecError) as caught:
        resume(exp_dir.name, exp_dir.parent)
    assert (caught.value.field, caught.value.message) == (
        "tracking_uri", f"cannot use MLflow at {state['tracking_uri']}: Run with id=0123456789abcdef not found")


# --- sync of a real search ----------------------------------------------------------------------


def _missed_by_mlflow(exp_dir, tmp_path):
    """The search's parent run in a new store (``_tiny.fresh_parent``), its state file pointing there."""
    parent = fresh_parent(exp_dir, tmp_path)
    _state(exp_dir, tracking_uri=parent.client.tracking_uri, experiment_id=parent.experiment_id,
           parent_run_id=parent.run_id)
    return parent


@pytest.mark.slow
def test_sync_records_what_mlflow_missed_once_and_closes_the_parent_once(tiny_copy, tmp_path):
    parent = _missed_by_mlflow(tiny_copy, tmp_path)
    outcome = sync(tiny_copy.name, tiny_copy.parent)
    assert records(parent) == RECORDS
    assert (outcome.state, outcome.best_value, outcome.best.status) == (metrics.FINISHED_STATE, 1.25, metrics.COMPLETED)
    run = parent.client.get_run(parent.run_id)
    assert parent.is_closed() and run.data.tags[tags.BEST_TRIAL] == outcome.best.name
    assert run.data.tags[tags.count(metrics.ERROR)] == "1"

    again = sync(tiny_copy.name, tiny_copy.parent)
    assert records(parent) == RECORDS
    assert [(t.trial_id, t.status) for t in again.trials] == [(t.trial_id, t.status) for t in outcome.trials]
    assert len(parent.client.get_metric_history(parent.run_id, f"n_{metrics.COMPLETED}")) == 1  # closed once


@pytest.mark.slow
def test_sync_from_another_folder_writes_to_the_store_the_search_ran_with(tiny_copy, tmp_path, monkeypatch):
    # A search run without --storage keeps no storage in its file: run from one folder, synced from another.
    resolved = yaml.safe_load((tiny_copy / SEARCH_FILE).read_text())
    del resolved["storage"]
    (tiny_copy / SEARCH_FILE).write_text(yaml.safe_dump(resolved, sort_keys=False))
    parent = _missed_by_mlflow(tiny_copy, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "runs").mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    outcome = sync(tiny_copy.name, tiny_copy.parent)
    assert records(parent) == RECORDS and outcome.counts()[metrics.COMPLETED] == 1
    assert not (elsewhere / "runs" / "mlflow.db").exists()  # no store made where the search never was
    assert outcome.tracking_uri == parent.client.tracking_uri  # where the records are, as the CLI prints it


def test_relative_data_paths_are_read_where_the_search_was_launched(tmp_path, monkeypatch):
    # Launched in `lab` with data.dir ./ptb (a relative path the loaders read from the current folder),
    # resumed from `elsewhere`: the reloaded search reads the data where it was, paths that name nothing
    # there (a corpus name) stay as written.
    lab, elsewhere = tmp_path / "lab", tmp_path / "elsewhere"
    (lab / "ptb").mkdir(parents=True)
    (lab / "tokens").mkdir()
    elsewhere.mkdir()
    exp_dir = tmp_path / "runs" / "s"
    exp_dir.mkdir(parents=True)
    (exp_dir / SEARCH_FILE).write_text(yaml.safe_dump({
        "name": "s", "trainable": "synthetic", "space": {"x": {"uniform": [-1.0, 1.0]}},
        "data": {"corpus": "synthetic", "dir": "ptb", "tokens": "tokens"}}))
    monkeypatch.chdir(elsewhere)
    state = {"tracking_uri": f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", "cwd": str(lab)}
    search = _reload(exp_dir, state)
    assert (search.spec.data.dir, search.spec.data.tokens) == (str(lab / "ptb"), str(lab / "tokens"))
    assert search.spec.data.corpus == "synthetic"
    with pytest.raises(spaces.SpecError, match="data.dir"):  # a folder from before the launch folder was kept
        _reload(exp_dir, {**state, "cwd": None})
