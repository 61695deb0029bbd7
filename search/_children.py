"""One MLflow child run per Ray trial, under the search's parent run: ``MLflowTracker``, a Tune callback.

A trial's run is found again by its trial id after ``tunelab resume`` (Ray's ``MLflowLoggerCallback``
keeps that map in memory only, so a resumed search would get a second run per trial). Every report is
one ``log_batch`` call, not one request per key.

A tracking server that goes away does not stop the search: the trials it could not record are noted,
and once it answers again each is replayed from what Ray wrote (the trial's reports, read back by
``tunelab._private.ray_trial_results``), from the first step MLflow lacks. ``tunelab sync`` does the
same after the search has ended.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from ray.tune import Callback

from tunelab import _mlflow, _private
from tunelab._mlflow import Metric, Param, RunTag
from tunelab.search import _ends
from tunelab.search._artifacts import log_checkpoint_artifacts
from tunelab.search._parent import Progress
from tunelab.trainables import metrics
from tunelab.trainables import tags

log = logging.getLogger(__name__)

# Seconds between attempts to reach a tracking server that stopped answering.
RETRY_S = 15.0
HP_PREFIX = "hp/"  # a PBT member's current value of a mutated parameter: metric hp/<name>
# What a report carries besides the trainable's metrics that is worth a curve.
_PROGRESS_KEYS = ("training_iteration", "time_total_s")


def flat_params(config: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in sorted(config.items())}


def run_name(number: int, sampled: Mapping[str, Any]) -> str:
    """'t003 lr=0.52 dropout=0.31': the trial's number in start order and its sampled values."""
    parts = [f"{k}={_short(v)}" for k, v in sampled.items()]
    return " ".join([f"t{number:03d}", *parts])[:250]


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def numeric_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The reportable numbers of a Tune result: every number the trainable reported (nested dicts
    flattened as ``a/b``), whatever its name, and Tune's progress counters; not Ray's bookkeeping."""
    out = {}
    for key, value in _flat(result):
        if key in _ends.RAY_KEYS and key not in _PROGRESS_KEYS:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def _flat(result: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in result.items():
        if isinstance(value, Mapping):
            if key != "config":
                yield from _flat(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def report_metrics(result: Mapping[str, Any], step: int, timestamp_ms: int, *, with_constants: bool) -> list[Metric]:
    """What one report adds to a child run: every changing metric at ``step``; the constants
    (``metrics.CONSTANTS``) once, at step 0, when ``with_constants``; never the 0/1 flags
    (``metrics.FLAGS``: ``end_metrics`` logs them once, when the trial ends)."""
    out = []
    for key, value in numeric_metrics(result).items():
        if key in metrics.FLAGS:
            continue
        if key in metrics.CONSTANTS:
            if with_constants:
                out.append(Metric(key, value, timestamp_ms, 0))
            continue
        out.append(Metric(key, value, timestamp_ms, step))
    return out


def end_metrics(last_result: Mapping[str, Any] | None, status: str, timestamp_ms: int) -> list[Metric]:
    """The flags a trial ended with, at its last step: ``diverged`` and ``oom`` as it reported them (0
    when absent), ``finished`` 1 when its status is completed; nothing for a trial that never reported."""
    if not last_result or "training_iteration" not in last_result:
        return []
    step = int(last_result["training_iteration"])
    values = {key: float(last_result.get(key) or 0) for key in metrics.FLAGS}
    values[metrics.FINISHED] = float(status == metrics.COMPLETED)
    return [Metric(key, values[key], timestamp_ms, step) for key in sorted(values)]


def trial_note(status: str, last_result: Mapping[str, Any] | None, best: float | None, metric: str | None,
               time_attr: str | None = None, why: str | None = None) -> str:
    """A child run's one-line description: how the trial ended and why, and its best objective."""
    last = last_result or {}
    attr = time_attr or "training_iteration"
    where = f"{attr} {_short(last[attr])}" if last.get(attr) is not None else "its first report"
    text = {
        metrics.COMPLETED: "Completed: ran its whole schedule",
        metrics.STOPPED_EARLY: f"Stopped early after {where}: {why or 'the scheduler ranked it below its rung'}",
        metrics.STATUS_DIVERGED: f"Diverged at {where} (loss not finite or above the ceiling); "
                                 "its values are logged as they were",
        metrics.STATUS_OOM: "Out of memory: the config does not fit on its device",
        metrics.ERROR: f"Failed: the trial raised{' after ' + where if last.get(attr) is not None else ''} "
                       "(traceback in tag tunelab.error)",
    }[status]
    if metric and best is not None:
        text += f"; best {metric} {best:.4g}"
    return text + "."


def hp_metrics(config: Mapping[str, Any], mutations: Iterable[str], step: int, timestamp_ms: int) -> list[Metric]:
    """A PBT member's current value of each mutated parameter, as the metric ``hp/<name>`` at ``step``
    (numbers only: a choice of strings has no curve)."""
    return [Metric(f"{HP_PREFIX}{k}", float(config[k]), timestamp_ms, step) for k in mutations
            if isinstance(config.get(k), (int, float)) and not isinstance(config.get(k), bool)]


# MLflow keeps at most 8,000 characters of a tag's value.
_TAG_MAX = 8000


def lineage_json(lineage: list[dict]) -> str:
    """The ``tunelab.lineage`` tag's value: the exploits as JSON, the oldest left out if it is too long."""
    while True:
        text = json.dumps(lineage, default=str)
        if len(text) <= _TAG_MAX or len(lineage) <= 1:
            return text[:_TAG_MAX]
        lineage = lineage[1:]


def _read_lines(path: Path) -> list[dict]:
    """The JSON lines of a file written as it is read (a last line cut short is not read yet)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


class MLflowTracker(Callback):
    """Tune callback: one child run per trial under the search's parent run.

    Args:
        tracking_uri: MLflow tracking URI.
        experiment_id: the search's experiment.
        parent_run_id: the search's parent run.
        sampled_keys: the names of the sampled parameters (they name the child runs).
        pending_file: written while MLflow misses records of some trials (so the end of the search,
            or `tunelab sync`, knows to catch up), removed once it has them.
        metric, mode: the objective; with it, the parent run gets the search's progress as trials end
            (``Progress``) and each child's description its best value.
        time_attr: the scheduler's progress counter (``epoch``), named in a stopped trial's description.
        inputs: dataset inputs (``mlflow.entities.DatasetInput``) logged on each child run.
        mutations: a PBT search's mutated parameters: every report also logs each one's current value
            as the metric ``hp/<name>`` (numeric values only), so MLflow's charts draw the schedule.
        lineage_file: a PBT search's exploits (``_private.LINEAGE_FILE``, appended by the scheduler):
            each member's run gets them as the tag ``tunelab.lineage``, a JSON list of ``{step, from,
            config}`` (``from``: the run name's t003 of the member copied; ``config``: the mutated
            values it went on with).
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, sampled_keys: Iterable[str],
                 pending_file: Path | None = None, metric: str | None = None, mode: str = "min",
                 time_attr: str | None = None, inputs: Iterable[Any] = (), mutations: Iterable[str] = (),
                 lineage_file: Path | None = None):
        self.tracking_uri = tracking_uri
        self.pending_file = pending_file
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sampled_keys = tuple(sampled_keys)
        self.metric, self.mode, self.time_attr = metric, mode, time_attr
        self.inputs = list(inputs)
        self.mutations = tuple(mutations)
        self.lineage_file = lineage_file
        self._exploits: dict[str, list[dict]] = {}  # trial id -> its exploits, from lineage_file
        self._exploits_read = 0  # lines of lineage_file read
        self._exploits_tagged: dict[str, int] = {}  # trial id -> exploits its run's tag holds
        self._client: MlflowClient | None = None
        self._runs: dict[str, str] = {}  # trial id -> run id
        self._names: dict[str, str] = {}  # trial id -> t003, in start order
        self._last_step: dict[str, int] = {}  # run id -> last logged training_iteration
        self._params_due: dict[str, Mapping[str, Any] | None] = {}  # run id -> config not yet logged
        self._constants_logged: set[str] = set()  # run ids that have their step-0 constants
        self._best: dict[str, float] = {}  # run id -> best objective value logged so far
        self._progress: Progress | None = None  # the parent's progress curve, read back by setup()
        self._pending: set[str] = set()  # trials with records MLflow has not got (server unreachable)
        self._retry_at = 0.0

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = _mlflow.client_for(self.tracking_uri)
        return self._client

    def __getstate__(self) -> dict:  # Ray pickles callbacks into the experiment folder
        return {**self.__dict__, "_client": None, "_runs": {}, "_last_step": {}, "_pending": set(), "_params_due": {},
                "_names": {}, "_constants_logged": set(), "_best": {}, "_progress": None, "_exploits": {},
                "_exploits_read": 0, "_exploits_tagged": {}}

    def setup(self, **info) -> None:
        """Find the child runs a previous launch of this search made, so a resume reuses them, and
        the parent's progress curve, so it goes on where it stopped."""
        for run in _mlflow.children(self.client, self.experiment_id, self.parent_run_id):
            trial_id = run.data.tags.get(tags.TRIAL_ID)
            if trial_id:
                self._runs[trial_id] = run.info.run_id
                self._names[trial_id] = (run.info.run_name or "").split(" ")[0] or trial_id
                self._last_step[run.info.run_id] = int(run.data.metrics.get("training_iteration", 0))
                if not run.data.params:  # the driver died before the trial's first report
                    self._params_due[run.info.run_id] = None
                if metrics.CONSTANTS & set(run.data.metrics):
                    self._constants_logged.add(run.info.run_id)
                if tags.LINEAGE in run.data.tags:
                    self._exploits_tagged[trial_id] = len(json.loads(run.data.tags[tags.LINEAGE]))
        if self.metric is not None:
            self._progress = Progress.read(self.client, self.parent_run_id, self.metric, self.mode)

    def trial_label(self, trial) -> str:
        """The trial's name, t003 (its number in start order), as its child run is named."""
        if trial.trial_id not in self._names:
            self._names[trial.trial_id] = f"t{len(self._names):03d}"
        return self._names[trial.trial_id]

    def _run_for(self, trial) -> str:
        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            sampled = {k: trial.config[k] for k in self.sampled_keys if k in trial.config}
            label = self.trial_label(trial)
            number = int(label[1:]) if label[1:].isdigit() else len(self._runs)
            run = self.client.create_run(
                self.experiment_id, run_name=run_name(number, sampled),
                tags={tags.PARENT: self.parent_run_id, tags.TRIAL_ID: trial.trial_id, tags.STATUS: "running"},
            )
            run_id = run.info.run_id
            self._runs[trial.trial_id] = run_id
            self._last_step[run_id] = 0
            self._params_due[run_id] = trial.config
            if self.inputs:
                self.client.log_inputs(run_id, datasets=self.inputs)
        elif run_id in self._params_due and self._params_due[run_id] is None:
            self._params_due[run_id] = trial.config  # found by setup() without params
        return run_id

    def _due_params(self, run_id: str) -> list[Param]:
        """The trial's params, if not logged yet: they ride with its first batch (one request less per
        trial); MLflow takes at most 100 per batch, so any beyond go first on their own."""
        config = self._params_due.get(run_id)
        if config is None:
            return []
        params = [Param(k, v[:6000]) for k, v in flat_params(config).items()]
        for i in range(100, len(params), 100):
            self.client.log_batch(run_id, params=params[i:i + 100])
        return params[:100]

    @property
    def pending(self) -> set[str]:
        """Trial ids whose records have not reached MLflow yet."""
        return set(self._pending)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.trial_label(trial)  # numbered in start order even while MLflow does not answer
        if self._online(trials, trial):
            with self._recording(trial):
                self._run_for(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if self._online(trials, trial):
            with self._recording(trial):
                self._log_results(trial, [result])

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if self._online(trials, trial):
            with self._recording(trial):
                # an exploit the scheduler recorded after the member's last report has no report to ride on
                self._note_exploits(trial, self._run_for(trial))
                self._finish(trial, metrics.final_status(trial.last_result))
                # what the trial left with its last checkpoint for the record (attention maps...)
                log_checkpoint_artifacts(self.client, self._run_for(trial), trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        if self._online(trials, trial):
            with self._recording(trial):
                self._finish(trial, metrics.ERROR)

    def on_step_end(self, iteration, trials, **info) -> None:
        if self._pending and time.monotonic() >= self._retry_at:
            self._online(trials, None)

    def _online(self, trials, trial) -> bool:
        """Whether MLflow answers now. While it did not, ``trial`` joins the trials to replay, until
        the next try: then what MLflow missed is replayed first."""
        if not self._pending:
            return True
        if time.monotonic() < self._retry_at:
            if trial is not None:
                self._pending.add(trial.trial_id)
            return False
        try:  # the server may be back: first what it missed
            self._replay_pending(trials)
        except Exception as exc:  # the client raises many types for "cannot reach the server"
            self._offline(trial, exc)
            return False
        return True

    @contextlib.contextmanager
    def _recording(self, trial) -> Iterator[None]:
        """Make one trial's MLflow calls; if the server does not answer, note the trial and go on."""
        try:
            yield
        except Exception as exc:  # the client raises many types for "cannot reach the server"
            self._offline(trial, exc)

    def _offline(self, trial, exc: Exception) -> None:
        if not self._pending:
            log.warning("MLflow at %s does not answer (%s); the trials go on, and what they report is "
                        "replayed when it is back (or by `tunelab sync`)", self.tracking_uri,
                        _mlflow.first_line(exc))
        if trial is not None:
            self._pending.add(trial.trial_id)
        self._retry_at = time.monotonic() + RETRY_S
        if self.pending_file is not None:
            self.pending_file.write_text(json.dumps(sorted(self._pending)))

    def _replay_pending(self, trials) -> None:
        by_id = {t.trial_id: t for t in trials}
        for trial_id in sorted(self._pending):
            if trial_id in by_id:
                self.replay(by_id[trial_id])
            self._pending.discard(trial_id)
        if self.pending_file is not None:
            self.pending_file.unlink(missing_ok=True)
        log.warning("MLflow at %s answers again; the missed records were replayed", self.tracking_uri)

    def replay(self, trial, why_stopped: str | None = None) -> None:
        """Bring one trial's child run up to what Ray recorded: missing steps, then its end status
        (``why_stopped``: the reason a stopped trial's description gives, if not its scheduler)."""
        results = _private.ray_trial_results(trial)
        self._log_results(trial, results)
        last = results[-1] if results else trial.last_result
        if trial.last_result and trial.last_result.get("training_iteration") == last.get("training_iteration"):
            last = trial.last_result  # Ray's own copy: it says whether the trial returned (``done``)
        if trial.status == "ERROR":
            self._finish(trial, metrics.ERROR, last, replaying=True)
        elif trial.status == "TERMINATED":
            self._finish(trial, metrics.final_status(last), last, replaying=True, why=why_stopped)
            log_checkpoint_artifacts(self.client, self._run_for(trial), trial)  # missed if MLflow was down

    def _log_results(self, trial, results: Iterable[Mapping[str, Any]]) -> None:
        """Log the reports MLflow does not have yet (steps past the last one logged), one batch each."""
        run_id = self._run_for(trial)
        self._note_exploits(trial, run_id)
        for result in results:
            step = int(result.get("training_iteration", 0))
            if step <= self._last_step.get(run_id, 0):
                continue  # already logged, before a restart or a replay
            ts = int(result.get("timestamp", time.time()) * 1000)
            batch = report_metrics(result, step, ts, with_constants=run_id not in self._constants_logged)
            batch += hp_metrics(result.get("config") or trial.config, self.mutations, step, ts)
            self.client.log_batch(run_id, metrics=batch, params=self._due_params(run_id))
            self._params_due.pop(run_id, None)
            self._last_step[run_id] = step
            if any(m.key in metrics.CONSTANTS for m in batch):
                self._constants_logged.add(run_id)
            self._note_best(run_id, result.get(self.metric) if self.metric else None)

    def _note_exploits(self, trial, run_id: str) -> None:
        """Tag the trial's run with its exploits (``tunelab.lineage``) when the scheduler recorded new ones.

        An exploiting member goes on from the copied member's step, which may be behind its own: the
        reports after that step are logged again (MLflow keeps both values of a step), so ``hp/<name>``
        changes value at the exploit's step.
        """
        if self.lineage_file is None:
            return
        lines = _read_lines(self.lineage_file)
        for entry in lines[self._exploits_read:]:
            self._exploits.setdefault(entry["trial"], []).append(entry)
        self._exploits_read = len(lines)
        mine = self._exploits.get(trial.trial_id, [])
        if len(mine) <= self._exploits_tagged.get(trial.trial_id, 0):
            return
        lineage = [{"step": e["step"], "from": self._names.get(e["from"], e["from"]),
                    "config": {k: e["config"][k] for k in self.mutations if k in e["config"]}} for e in mine]
        self.client.set_tag(run_id, tags.LINEAGE, lineage_json(lineage))
        self._exploits_tagged[trial.trial_id] = len(mine)
        self._last_step[run_id] = min(self._last_step.get(run_id, 0), mine[-1]["step"])

    def _note_best(self, run_id: str, value: Any) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return
        old = self._best.get(run_id)
        if old is None or (value < old if self.mode == "min" else value > old):
            self._best[run_id] = float(value)

    def _trial_best(self, run_id: str) -> float | None:
        """The trial's best objective value: from its reports, or (after a driver restart) MLflow's history."""
        if run_id not in self._best and self.metric is not None:
            for m in self.client.get_metric_history(run_id, self.metric):
                self._note_best(run_id, m.value)
        return self._best.get(run_id)

    def _finish(self, trial, status: str, last: Mapping[str, Any] | None = None, replaying: bool = False,
                why: str | None = None) -> str:
        run_id = self._run_for(trial)
        if replaying and self.client.get_run(run_id).data.tags.get(tags.STATUS) == status:
            return run_id  # recorded already
        last = last if last is not None else trial.last_result
        best = self._trial_best(run_id)
        end_tags = [RunTag(tags.STATUS, status),
                    RunTag(tags.NOTE, trial_note(status, last, best, self.metric, self.time_attr, why))]
        if status == metrics.ERROR and trial.error_file and os.path.exists(trial.error_file):
            self.client.log_artifact(run_id, trial.error_file)
            with open(trial.error_file) as f:
                end_tags.append(RunTag(tags.ERROR, f.read()[-4000:]))
        ts = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=end_metrics(last, status, ts), tags=end_tags,
                              params=self._due_params(run_id))
        self._params_due.pop(run_id, None)
        self.client.set_terminated(run_id, _mlflow.run_status(status))
        if self._progress is not None:
            self._progress.trial_ended(self.client, best, last)
        return run_id


LOST_MESSAGE = ("the driver stopped before Ray recorded this trial, so `tunelab resume` could not continue it; "
                "the search ran another trial in its place")


def end_lost_runs(client: MlflowClient, experiment_id: str, parent_run_id: str, known: set[str]) -> list[str]:
    """End, as errors, the child runs of trials that Ray's experiment state does not hold.

    Ray snapshots its trials every few seconds; a driver killed between a trial's start and the next
    snapshot leaves a child run (and a RUNNING Optuna trial) for a trial a resume knows nothing of.
    Returns the trial ids of the runs it ended.
    """
    lost = []
    for run in _mlflow.children(client, experiment_id, parent_run_id):
        trial_id = run.data.tags.get(tags.TRIAL_ID)
        if trial_id in known or run.data.tags.get(tags.STATUS) in metrics.ENDED:
            continue
        client.log_batch(run.info.run_id, tags=[RunTag(tags.STATUS, metrics.ERROR), RunTag(tags.ERROR, LOST_MESSAGE),
                                                RunTag(tags.NOTE, f"Failed: {LOST_MESSAGE}.")])
        client.set_terminated(run.info.run_id, _mlflow.run_status(metrics.ERROR))
        lost.append(trial_id)
    return lost


