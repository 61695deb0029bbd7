"""Every private or undocumented API of Optuna, MLflow and Ray that tunelab leans on, in one place.

Each entry says what it relies on and why no public API of the pinned versions (Optuna 5.0, MLflow
3.17, Ray 2.60) does the job. ``tests/test_private.py`` holds one canary per entry: it fails with a
message naming the entry when an upgrade changes what the entry relies on, before a search does.

Optuna is imported here (the searcher and the samplers need it); Ray, MLflow and SQLAlchemy inside the
functions that use them, so ``analysis`` can import this module without Ray.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from tunelab.trainables import metrics

# --- Optuna ------------------------------------------------------------------------------------------


def trial_handle(study: optuna.Study, number: int) -> optuna.Trial:
    """A handle on the running trial ``number`` of ``study``, one this process did not ``ask()`` for
    (the searcher was restored from a snapshot, or the driver closes a trial Ray stopped).

    Relies on: ``optuna.Trial(study, trial_id)`` with the storage's trial id, which only the frozen
    trial's private ``_trial_id`` carries. Optuna has no public lookup of a running trial by number
    (``study.tell(number, ...)`` ends one, but nothing reports to it or sets its attributes).
    """
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    return optuna.Trial(study, frozen._trial_id)


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, less its end: once the last grid point is told, Optuna's calls
    ``study.stop()``, which only works inside ``study.optimize`` and raises here, where Ray runs the
    trials and ``budget.trials`` (at least the number of points, checked when the file loads) ends
    the search. Past the last point it repeats points, as Optuna's does.

    Relies on: ``GridSampler.after_trial`` doing nothing but that stop (undocumented); no public
    setting turns it off.
    """

    def after_trial(self, study, trial, state, values) -> None:
        pass


def repair_journal(path: Path) -> None:
    """Drop the last line of an Optuna journal file when a killed writer cut it short: Optuna refuses a
    journal with a broken line once another follows it.

    Relies on: ``JournalFileBackend`` writing one JSON object per line, each ended by a newline (its
    file format is not documented).
    """
    if not path.exists():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


# --- MLflow ------------------------------------------------------------------------------------------

# Relies on: MLflow's SQL stores keeping every logged value in table ``metrics`` with these columns
# (``is_nan`` set, and ``value`` 0, for a NaN). MLflow's client reads one run's one key per request
# (``get_metric_history``); a 200-trial search is thousands of requests where one query per 500 runs
# does. The store's bulk readers are private methods of its SQLAlchemy store.
METRICS_TABLE = "metrics"
METRICS_COLUMNS = ("run_uuid", "key", "step", "value", "timestamp", "is_nan")
_CHUNK = 500  # run ids per IN (...) query; SQLite allows 32,766 bound variables, old builds 999


def metric_rows(uri: str, run_ids: Sequence[str]) -> list[tuple[str, str, int, float, int]]:
    """Every logged metric value of ``run_ids`` in the SQL store at ``uri``: (run id, key, step, value
    (NaN where MLflow stored one), timestamp ms).

    The query is built with SQLAlchemy's expression language, not written as SQL text, so each
    dialect quotes the column names that are keywords in it (``key``, ``value``, ``timestamp``) and
    binds the id list its own way: the same code reads SQLite, PostgreSQL, MySQL and SQL Server stores.
    """
    import sqlalchemy as sa

    table = sa.table(METRICS_TABLE, *(sa.column(c) for c in METRICS_COLUMNS))
    query = sa.select(*(table.c[c] for c in METRICS_COLUMNS)).where(
        table.c.run_uuid.in_(sa.bindparam("ids", expanding=True)))
    engine = sa.create_engine(uri)
    rows: list = []
    try:
        with engine.connect() as conn:
            for i in range(0, len(run_ids), _CHUNK):
                rows.extend(conn.execute(query, {"ids": list(run_ids[i:i + _CHUNK])}).fetchall())
    finally:
        engine.dispose()
    return [(r[0], r[1], int(r[2]), float("nan") if r[5] else float(r[3]), int(r[4])) for r in rows]


# Relies on: the MLflow UI (its JavaScript bundle, ``mlflow/server/js/build``) loading a saved view of an
# experiment's runs table from the experiment tag ``mlflow.sharedViewState.<key>`` when a URL carries
# ``viewStateShareKey=<key>``, the tag holding JSON {name, createdAt, updatedAt, state: JSON text of the
# table's state}; and choosing its model-training pages for ``workflowType=machine_learning``. The UI
# writes these itself when a user shares a view; no API of MLflow's writes or documents them.
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_URL_KEY = "viewStateShareKey"
WORKFLOW_URL_KEY = "workflowType"
UI_STRINGS = ("sharedViewState", VIEW_URL_KEY, WORKFLOW_URL_KEY, "machine_learning")  # what the canary looks for


def view_tag(key: str) -> str:
    """The experiment tag that holds saved view ``key``."""
    return VIEW_TAG_PREFIX + key


def view_envelope(name: str, state: Mapping[str, Any], now_ms: int) -> str:
    """The value of a saved view's tag: the view's name and times around its state."""
    return json.dumps({"name": name, "createdAt": now_ms, "updatedAt": now_ms, "state": json.dumps(state)})


# --- Ray ---------------------------------------------------------------------------------------------


def ray_trial_results(trial) -> list[dict[str, Any]]:
    """The reports Ray's JSON logger wrote for one trial (driver side), in order.

    Relies on: ``JsonLoggerCallback`` writing one JSON object per report to the file
    ``ray.tune.result.EXPR_RESULT_FILE`` of the trial's folder (``trial.path``; for cloud storage with
    Ray running, the driver's staging copy ``trial.local_path``). Ray's public readers
    (``ExperimentAnalysis``, ``Result.metrics_dataframe``) read a saved experiment, not a live trial a
    callback holds, and give a DataFrame whose nested values are flattened.
    """
    import ray
    from ray.tune.result import EXPR_RESULT_FILE

    path = Path(trial.path) / EXPR_RESULT_FILE
    if not path.exists() and ray.is_initialized():
        path = Path(trial.local_path) / EXPR_RESULT_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a killed driver
    return rows


def ray_graceful_stop() -> bool:
    """Ask Ray Tune's loop to end the experiment at its next step, as its own Ctrl-C does (experiment
    state saved, running trials left resumable). Call it from inside the loop (a callback). Returns
    whether Ray's handler was there to call.

    Relies on: ``tune.run`` installing, for the length of its loop, a SIGUSR1 handler that ends the
    experiment gracefully (``ray/tune/tune.py``). Ray's public stop is a ``Stopper``, which ends the
    trials as TERMINATED, not as interrupted and resumable.
    """
    handler = signal.getsignal(signal.SIGUSR1)
    if not callable(handler):
        return False
    handler(signal.SIGUSR1, None)
    return True


def ray_actors() -> list[dict[str, Any]]:
    """Every actor of the connected Ray cluster, dead ones included, from the GCS's actor table (tests).

    Relies on: ``ray._private.state.actors()``. The public ``ray.util.state.list_actors`` asks the
    dashboard, which tunelab's local Ray and the test clusters run without.
    """
    import ray._private.state

    return list(ray._private.state.actors().values())


def ray_cluster_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A cluster launcher config as ``ray up`` reads it: merged with its provider's defaults, then
    checked against Ray's schema (tests of ``cluster.yaml``). Raises what Ray raises on a bad one.

    Relies on: ``ray.autoscaler._private.util.prepare_config`` and ``validate_config``, what ``ray up``
    calls; Ray has no public validator of a cluster config.
    """
    import copy

    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(dict(raw)))
    validate_config(prepared)
    return prepared


def ray_autoscaler_metric_port() -> int:
    """The fixed port of Ray's autoscaler monitor's Prometheus server (tests of what Ray exposes).

    Relies on: ``ray.autoscaler._private.constants.AUTOSCALER_METRIC_PORT``; no setting changes it.
    """
    from ray.autoscaler._private.constants import AUTOSCALER_METRIC_PORT

    return AUTOSCALER_METRIC_PORT


LINEAGE_FILE = "lineage.jsonl"  # in the experiment folder: one line per PBT exploit


def ray_population_scheduler(name: str, **kwargs):
    """Ray's ``PopulationBasedTraining`` (``name`` pbt) or ``PB2`` (pb2), built with ``kwargs``, that also
    appends each exploit to ``LINEAGE_FILE`` in the experiment folder, as one JSON line: ``{"trial":
    the exploiting trial's id, "from": the id of the trial it copied, "step": the copied checkpoint's
    training_iteration, "config": the exploiting trial's new config}`` (what ``search._children`` turns
    into the ``tunelab.lineage`` tag, and a resume finds again).

    It also copies the exploited checkpoint into the exploiting trial's folder (``exploit_<n>``, the
    trial's previous copy removed) and points the trial at the copy. Ray points it at the other
    trial's own checkpoint folder, which that trial may delete (``num_to_keep``) or, after ``tunelab
    resume``, overwrite with a later state (a restored trial numbers its checkpoints again from where
    Ray's last snapshot left it) before the exploiting trial has restored it: the member then went on
    from the wrong step, or found its epochs already run and ended without its last report.

    Relies on: ``PopulationBasedTraining._exploit(tune_controller, trial, trial_to_clone)``, called once
    per exploit after the trial was given the new config (``trial.config``) and the checkpoint to
    restore (``trial.run_metadata.checkpoint_manager._latest_checkpoint_result``, a
    ``ray.train._internal.session._TrainingResult``), and on the scheduler's
    ``_trial_state[trial].last_result`` (the result whose checkpoint is copied). Ray's PBT logs its
    exploits only by trial tag (``pbt_policy_*.txt``, an undocumented format) and calls no hook with
    the trials' ids; PB2 inherits ``_exploit``.
    """
    if name == "pbt":
        from ray.tune.schedulers import PopulationBasedTraining as base
    else:
        from ray.tune.schedulers.pb2 import PB2 as base  # imports GPy (the loader checked it is there)
    return _lineage_class(base)(**kwargs)


_LINEAGE_CLASSES: dict[type, type] = {}


def _lineage_class(base: type) -> type:
    if base not in _LINEAGE_CLASSES:
        class Recording(base):  # noqa: D401 - pickled with the Tuner (cloudpickle, by value)
            def on_trial_result(self, tune_controller, trial, result):
                # A member's last report (the built-in trainables say ``finished``) is no time to exploit:
                # restored after its last epoch with another's weights, it would end without training or
                # reporting again, a copy recorded with its own stale result. Its state stays at its last
                # perturbation, score and checkpoint together, so others can still copy it.
                if result.get(metrics.FINISHED):
                    from ray.tune.schedulers import TrialScheduler

                    return TrialScheduler.CONTINUE
                return super().on_trial_result(tune_controller, trial, result)

            def _exploit(self, tune_controller, trial, trial_to_clone):
                super()._exploit(tune_controller, trial, trial_to_clone)
                _own_copy(trial)
                copied = self._trial_state[trial_to_clone].last_result or {}
                line = {"trial": trial.trial_id, "from": trial_to_clone.trial_id,
                        "step": int(copied.get("training_iteration", 0)), "config": dict(trial.config)}
                with open(Path(trial.local_experiment_path) / LINEAGE_FILE, "a") as f:
                    f.write(json.dumps(line, default=str) + "\n")

        Recording.__name__ = Recording.__qualname__ = f"Recording{base.__name__}"
        _LINEAGE_CLASSES[base] = Recording
    return _LINEAGE_CLASSES[base]


def _own_copy(trial) -> None:
    """Point ``trial`` at a copy, in its own folder, of the checkpoint PBT gave it (local storage only).

    Relies on: ``trial.path``, the trial's folder in the storage (Ray's ``Trial``, a DeveloperAPI).
    """
    import shutil

    from ray.tune import Checkpoint

    manager = trial.run_metadata.checkpoint_manager
    result = manager._latest_checkpoint_result
    source = getattr(result, "checkpoint", None)
    if source is None or getattr(source.filesystem, "type_name", "") != "local" or not Path(source.path).is_dir():
        return
    # The trial's folder in the search's storage, where its own checkpoints are (``trial.local_path`` is
    # Ray's staging folder in its session's temporary files, gone once the driver restarts).
    folder = Path(trial.path)
    if not folder.is_dir():
        return
    earlier = sorted(folder.glob("exploit_*"))
    dest = folder / f"exploit_{len(earlier) and int(earlier[-1].name.split('_')[1]) + 1:06d}"
    shutil.copytree(source.path, dest)
    for old in earlier:
        shutil.rmtree(old, ignore_errors=True)
    result.checkpoint = Checkpoint.from_directory(str(dest))
