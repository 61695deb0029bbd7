"""The end of a search: what it leaves behind (``Outcome``) and the parent run's summary in MLflow."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

from ray import tune

from tunelab import _mlflow, spaces
from tunelab.search import _replay
from tunelab.search._ends import RAY_ENDED, Interruption, error_line
from tunelab.search._parent import ParentRun, describe
from tunelab.search._paths import PENDING_FILE, find_study
from tunelab.search._searcher import STATUS_ATTR
from tunelab.trainables import metrics
from tunelab.trainables import tags

log = logging.getLogger(__name__)

@dataclasses.dataclass
class TrialSummary:
    """One trial of a search: ``params`` the sampled values, ``config`` all of it, ``best`` its best
    objective, ``error`` the last line of what it raised (status ``error``)."""

    trial_id: str
    status: str
    params: dict[str, Any]
    best: float | None
    iterations: int
    name: str = ""  # t003: the number in its MLflow run's name (the trial id until MLflow is read)
    run_id: str = ""  # its MLflow child run
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None


@dataclasses.dataclass
class Outcome:
    """What a finished (or budget-stopped) search leaves behind."""

    name: str
    experiment_dir: Path
    tracking_uri: str
    parent_run_id: str
    metric: str
    mode: str
    trials: list[TrialSummary]
    infeasible: int
    best: TrialSummary | None
    tracking_pending: bool = False  # MLflow was unreachable at the end: `tunelab sync` completes it
    about: str = ""  # what was searched, how (``describe``)
    state: str = metrics.FINISHED_STATE  # FINISHED, INTERRUPTED (resumable) or FAILED
    reason: str | None = None  # why it is not FINISHED, in a line ("SIGINT", "the disk is full: ...")
    fault: bool = False  # INTERRUPTED by a fault of the machine (a full disk), not by a signal
    lineage: str = ""  # a PBT search: the best member's family tree (``_lineage.describe``), once named

    @property
    def best_config(self) -> dict[str, Any] | None:
        """The whole config of the best trial (None when no trial has a value)."""
        return None if self.best is None else dict(self.best.config)

    @property
    def best_value(self) -> float | None:
        """The best trial's best objective."""
        return None if self.best is None else self.best.best

    @property
    def errors(self) -> list[TrialSummary]:
        """The trials that raised."""
        return [t for t in self.trials if t.status == metrics.ERROR]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in metrics.STATUSES}
        for t in self.trials:
            out[t.status] += 1
        out[metrics.INFEASIBLE] = self.infeasible
        return out

    def ranked(self) -> list[TrialSummary]:
        """The trials, best first (those without a value last)."""
        sign = 1 if self.mode == "min" else -1
        return sorted(self.trials, key=lambda t: sign * t.best if t.best is not None and math.isfinite(t.best)
                      else math.inf)

    def table(self, top: int | None = None, link: str | None = None) -> str:
        """A short Markdown table of the trials, best first.

        Args:
            top: at most this many rows.
            link: a URL prefix; each trial's name links to ``link + run_id``.
        """
        keys = sorted({k for t in self.trials for k in t.params})
        head = ["trial", "status", *keys, f"best {self.metric}", "iters"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for t in self.ranked()[:top]:
            vals = [_fmt(t.params.get(k, "")) for k in keys]
            best = "" if t.best is None else f"{t.best:.4g}"
            name = t.name or t.trial_id
            if link and t.run_id:
                name = f"[{name}]({link}{t.run_id})"
            lines.append("| " + " | ".join([name, t.status, *vals, best, str(t.iterations)]) + " |")
        return "\n".join(lines)

    def name_trials(self, runs) -> None:
        """Name each trial as its MLflow child run is named (t003), from ``ParentRun.children``."""
        by_id = {r.data.tags.get(tags.TRIAL_ID): r for r in runs}
        for t in self.trials:
            run = by_id.get(t.trial_id)
            if run is not None:
                t.run_id = run.info.run_id
                t.name = (run.info.run_name or "").split(" ")[0] or t.trial_id

    def note(self, experiment_id: str) -> str:
        """The parent run's description (Markdown): what was searched, the outcome, the top trials."""
        counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.counts().items() if v)
        lines = [self.about, "", f"**Outcome**: {len(self.trials)} trials ({counts})."]
        if self.state != metrics.FINISHED_STATE:
            lines[-1] = f"**{self.state}** ({self.reason}). " + lines[-1]
        link = f"#/experiments/{experiment_id}/runs/"
        if self.best is not None:
            b = self.best
            name = f"[{b.name or b.trial_id}]({link}{b.run_id})" if b.run_id else b.name or b.trial_id
            params = " ".join(f"{k}={_fmt(v)}" for k, v in b.params.items())
            lines[-1] += f" Best {self.metric}: **{b.best:.4g}**, trial {name} ({params})."
            if self.lineage:
                lines[-1] += f" Its weights' lineage (PBT exploits, newest first): {self.lineage}."
        lines += ["", self.table(top=10, link=link)]
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def finish(grid: tune.ResultGrid | None, search: spaces.Search, exp_dir: Path, parent: ParentRun,
           interruption: Interruption | None = None, failure: str | None = None) -> Outcome:
    """Close a search after ``Tuner.fit``: the trials a stopper ended, MLflow's missing records, the
    parent's summary. With the tracking server down, the results stay safe in the folder and the
    outcome says that ``tunelab sync`` completes them.

    Args:
        grid: what ``fit`` returned; None when it raised (what Ray last saved in the folder is read).
        interruption: set when a signal or a fault ended the search before its budget: the trials
            Ray's last snapshot holds as running or pending are ``interrupted``, and the search
            INTERRUPTED (resumable).
        failure: why the search could not go on (FAILED), in a line.
    """
    stopped = _replay.end_stopped(exp_dir, search)
    interrupted = interruption is not None and interruption.cut
    snapshot = _snapshot(exp_dir) if interrupted or grid is None else None
    if grid is None:
        grid = [] if snapshot is None else tune.ResultGrid(snapshot)
    caught = unfinished(snapshot.trials) if snapshot and interrupted else {}
    outcome, infeasible = summarize(grid, search, exp_dir, parent.run_id, caught)
    if failure is not None:
        outcome.state, outcome.reason = metrics.FAILED, failure
    elif interrupted:
        outcome.state, outcome.reason = metrics.INTERRUPTED_STATE, interruption.reason
        outcome.fault = interruption.fault is not None
    try:
        pending = (exp_dir / PENDING_FILE).exists()  # the server was down a while
        if stopped or pending:  # runs left open
            _replay.replay(exp_dir, search, parent, only=None if pending else stopped, budget_stopped=stopped)
        parent.close(outcome, infeasible)  # names the trials (t003) from the child runs it reads anyway
    except Exception as exc:  # the tracking server is down: the results are safe in the folder
        log.warning("could not close the parent run in MLflow (%s); run `tunelab sync %s` once it is back",
                    _mlflow.first_line(exc), outcome.name)
        outcome.tracking_pending = True
    return outcome


def _snapshot(exp_dir: Path) -> tune.ExperimentAnalysis | None:
    """What Ray last saved of the experiment (None: the search stopped before Ray's first save)."""
    try:
        return tune.ExperimentAnalysis(str(exp_dir))
    except (ValueError, FileNotFoundError, OSError):
        return None


def unfinished(trials) -> dict[str, str]:
    """The Ray trials (of a saved experiment) that have not ended, by the name of their folder (a trial
    that never reported has no id in its result, only its folder): what ``summarize`` calls interrupted."""
    return {Path(t.path).name: t.trial_id for t in trials if t.status not in RAY_ENDED}


def summarize(grid, search: spaces.Search, exp_dir: Path, parent: str,
              interrupted: dict[str, str] | None = None) -> tuple[Outcome, list]:
    """The search's ``Outcome`` from Ray's results, and the study's infeasible trials.

    Args:
        interrupted: the trials an interruption caught, by the name of their folder (a trial that
            never reported has no id in its result): ``interrupted``, whatever their last report says.
    """
    interrupted = interrupted or {}
    spec = search.spec
    trials = []
    for result in grid:
        last = result.metrics or {}
        df = result.metrics_dataframe
        best = None
        if df is not None and spec.metric in df:
            col = df[spec.metric].dropna()
            if len(col):
                best = float(col.min() if spec.mode == "min" else col.max())
        caught = interrupted.get(Path(result.path).name) if result.path else None
        trial_id = last.get("trial_id") or caught
        status = metrics.INTERRUPTED if caught else metrics.final_status(last, result.error is not None)
        config = result.config or {}  # None for a trial the time budget stopped before it ever ran
        params = {k: config.get(k) for k in search.space.params if k in config}
        trials.append(TrialSummary(trial_id or "?", status, params, best,
                                   int(last.get("training_iteration", 0)), config=dict(config),
                                   error=error_line(result.error)))
    study = find_study(exp_dir, spec.name)
    trials_asked = study.get_trials(deepcopy=False) if study is not None else []
    infeasible = [t for t in trials_asked if t.user_attrs.get(STATUS_ATTR) == metrics.INFEASIBLE]
    scored = [t for t in trials if t.best is not None and math.isfinite(t.best)]
    sign = 1 if spec.mode == "min" else -1
    best = min(scored, key=lambda t: sign * t.best) if scored else None
    outcome = Outcome(spec.name, exp_dir, search.tracking_uri, parent, spec.metric, spec.mode, trials,
                      len(infeasible), best, about=describe(search))
    return outcome, infeasible


