"""Canaries for ``tunelab._private``: one per private or undocumented API of Optuna, MLflow and Ray that
tunelab leans on. Each fails with a message naming the entry when an upgrade changes what it relies
on; the entry's docstring says what that is and what a replacement must do."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from tunelab import _mlflow, _private

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _canary(entry: str) -> str:
    return f"tunelab._private.{entry}: the library changed what it relies on (see its docstring)"


def test_trial_handle_reaches_a_running_trial_asked_elsewhere():
    study = optuna.create_study()
    study.ask()
    asked = study.ask()
    handle = _private.trial_handle(study, 1)
    handle.set_user_attr("seen", True)
    handle.report(3.0, step=2)
    frozen = study.trials[1]
    assert handle.number == asked.number == 1, _canary("trial_handle")
    assert frozen.user_attrs == {"seen": True} and frozen.intermediate_values == {2: 3.0}, _canary("trial_handle")


def test_the_grid_sampler_override_is_still_needed_and_still_enough():
    space = {"x": [1, 2]}
    stock = optuna.create_study(sampler=optuna.samplers.GridSampler(space, seed=0))
    with pytest.raises(RuntimeError):  # Optuna's own stops the study outside optimize(), which raises
        for _ in range(2):
            stock.tell(stock.ask({"x": optuna.distributions.CategoricalDistribution([1, 2])}), 0.0)
    ours = optuna.create_study(sampler=_private.GridSampler(space, seed=0))
    seen = []
    for _ in range(3):  # past the last point it repeats points, without raising
        trial = ours.ask()
        seen.append(trial.suggest_categorical("x", [1, 2]))
        ours.tell(trial, 0.0)
    assert sorted(seen[:2]) == [1, 2] and seen[2] in (1, 2), _canary("GridSampler")


def test_repair_journal_drops_a_cut_line_and_keeps_the_study(tmp_path):
    path = tmp_path / "study.log"
    study = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    for value in (1.0, 2.0):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, value)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1]), _canary("repair_journal")
    with open(path, "ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "cut sh')  # a writer killed mid-line
    _private.repair_journal(path)
    again = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    assert [t.value for t in again.trials] == [1.0, 2.0], _canary("repair_journal")


def test_metric_rows_reads_what_the_client_logged(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = _mlflow.client_for(uri)
    exp = client.create_experiment("e")
    runs = [client.create_run(exp).info.run_id for _ in range(2)]
    logged = {(runs[0], "val_ppl", 1, 300.5), (runs[0], "val_ppl", 2, 150.25), (runs[1], "lr", 1, 1e-3),
              (runs[1], "val_ppl", 1, math.nan)}
    for run, key, step, value in logged:
        client.log_metric(run, key, value, step=step, timestamp=1000 + step)
    rows = _private.metric_rows(uri, runs)
    got = {(r, k, s, "nan" if math.isnan(v) else v) for r, k, s, v, _ in rows}
    want = {(r, k, s, "nan" if math.isnan(v) else v) for r, k, s, v in logged}
    assert got == want, _canary("metric_rows")
    assert {ts for *_, ts in rows} == {1001, 1002}, _canary("metric_rows")
    by_client = {(runs[0], m.step, m.value) for m in client.get_metric_history(runs[0], "val_ppl")}
    assert by_client == {(r, s, v) for r, k, s, v, _ in rows if r == runs[0]}, _canary("metric_rows")


def test_the_mlflow_ui_still_reads_saved_views_and_workflow_types():
    import mlflow

    bundle = Path(mlflow.__file__).parent / "server" / "js" / "build"
    text = "\n".join(p.read_text(errors="ignore") for p in bundle.rglob("*.js"))
    missing = [s for s in _private.UI_STRINGS if s not in text]
    assert not missing, _canary("view_tag") + f": the UI's bundle no longer mentions {missing}"
    envelope = json.loads(_private.view_envelope("v", {"orderByKey": "metrics.`x`"}, 5))
    assert envelope == {"name": "v", "createdAt": 5, "updatedAt": 5, "state": '{"orderByKey": "metrics.`x`"}'}
    assert _private.view_tag("tunelab") == "mlflow.sharedViewState.tunelab"


def test_ray_json_logger_writes_one_report_per_line_in_result_json(tmp_path):
    from ray.tune.result import EXPR_RESULT_FILE

    assert EXPR_RESULT_FILE == "result.json", _canary("ray_trial_results")
    trial = type("T", (), {"path": str(tmp_path), "local_path": str(tmp_path / "staging")})()
    (tmp_path / EXPR_RESULT_FILE).write_text('{"training_iteration": 1, "val_ppl": 3.5}\n'
                                             '{"training_iteration": 2, "val_ppl": 2.5}\n{"training_it')
    assert [r["val_ppl"] for r in _private.ray_trial_results(trial)] == [3.5, 2.5]  # the cut line is left
    from ray.tune.logger import JsonLoggerCallback

    writes = inspect.getsource(JsonLoggerCallback)
    assert "EXPR_RESULT_FILE" in writes and "json.dump" in writes and '"\\n"' in writes, _canary("ray_trial_results")


def test_ray_tune_loop_installs_its_graceful_stop_on_sigusr1():
    import signal

    from ray.tune import tune

    assert "_setup_signal_catching()" in inspect.getsource(tune.run), _canary("ray_graceful_stop")
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGUSR1)}
    try:
        # (a search earlier in this process leaves Ray's handler installed: Ray does not restore it)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        assert _private.ray_graceful_stop() is False  # no loop's handler: nothing to call
        stopped = tune._setup_signal_catching()  # what tune.run does as its loop starts
        assert _private.ray_graceful_stop() is True and stopped.is_set(), _canary("ray_graceful_stop")
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_ray_internals_the_tests_use_are_there():
    import ray._private.state
    from ray.autoscaler._private import util

    assert callable(getattr(ray._private.state, "actors", None)), _canary("ray_actors")
    assert callable(getattr(util, "prepare_config", None)) and callable(getattr(util, "validate_config", None)), \
        _canary("ray_cluster_config")
    assert isinstance(_private.ray_autoscaler_metric_port(), int), _canary("ray_autoscaler_metric_port")


def test_ray_pbt_still_exploits_through_the_method_the_lineage_scheduler_extends(tmp_path):
    import ray.tune.schedulers as schedulers
    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint

    from ray.tune.schedulers.pb2 import PB2  # (its module imports without GPy; PB2() needs it)

    for base in (schedulers.PopulationBasedTraining, PB2):
        params = list(inspect.signature(base._exploit).parameters)
        assert params == ["self", "tune_controller", "trial", "trial_to_clone"], _canary("ray_population_scheduler")
    source = inspect.getsource(schedulers.PopulationBasedTraining._exploit)
    assert "trial.set_config(new_config)" in source, _canary("ray_population_scheduler")
    assert "checkpoint_manager._latest_checkpoint_result" in source, _canary("ray_population_scheduler")
    pbt = _private.ray_population_scheduler("pbt", custom_explore_fn=dict, metric="m", mode="min")
    assert isinstance(pbt, schedulers.PopulationBasedTraining) and pbt._trial_state == {}, \
        _canary("ray_population_scheduler")
    # the exploit's checkpoint becomes the trial's own copy
    source_dir = tmp_path / "other" / "checkpoint_000003"
    source_dir.mkdir(parents=True)
    (source_dir / "state.pt").write_text("weights")
    mine = tmp_path / "mine"
    mine.mkdir()
    result = _TrainingResult(checkpoint=Checkpoint.from_directory(str(source_dir)), metrics={"training_iteration": 3})
    manager = type("M", (), {"_latest_checkpoint_result": result})()
    trial = type("T", (), {"path": str(mine), "run_metadata": type("R", (), {"checkpoint_manager": manager})()})()
    _private._own_copy(trial)
    _private._own_copy(trial)
    copied = Path(manager._latest_checkpoint_result.checkpoint.path)
    assert copied.parent == mine and (copied / "state.pt").read_text() == "weights"
    assert [p.name for p in mine.iterdir()] == ["exploit_000001"]
