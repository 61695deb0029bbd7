"""The search's parent run in MLflow: opened with what the search is, its progress as trials end,
closed with its summary (README: "What a search records").

``ParentRun`` is the run with the client that writes it; ``Progress`` the curves the child-run
callback (``_children``) adds to it, one step per ended trial.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.tracking import MlflowClient

from tunelab import _lineage, _mlflow, spaces
from tunelab._mlflow import Metric, Param, RunTag
from tunelab.search._searcher import REASON_ATTR
from tunelab.trainables import metrics
from tunelab.trainables import tags

if TYPE_CHECKING:
    from tunelab.search._summary import Outcome
    from tunelab.search._warmstart import WarmStart

log = logging.getLogger(__name__)

# MLflow's status of the parent run for each state of the search: KILLED is MLflow's word for a run a
# user stopped, which an interrupted search is.
_PARENT_STATUS = {metrics.FINISHED_STATE: "FINISHED", metrics.INTERRUPTED_STATE: "KILLED", metrics.FAILED: "FAILED"}


@dataclasses.dataclass(frozen=True)
class ParentRun:
    """A search's parent run: ``run_id`` in experiment ``experiment_id``, written through ``client``."""

    client: MlflowClient
    experiment_id: str
    run_id: str

    @classmethod
    def open(cls, client: MlflowClient, experiment_id: str, search: spaces.Search, exp_dir: Path,
             inputs: list, warm: WarmStart | None = None) -> ParentRun:
        """Start the parent run of a new search: what it is (description, tags, the search file, its
        budget as params), its datasets, and where its warm start came from."""
        spec = search.spec
        run_tags = {
            tags.NOTE: describe(search) + "\n\n*Running*: the trials' table follows when the search ends.",
            tags.SPEC_HASH: search.spec_hash,
            tags.TRAINABLE: spec.trainable,
            tags.SAMPLER: spec.sampler.name,
            tags.SCHEDULER: spec.scheduler.name,
            tags.STORAGE: str(exp_dir),
            tags.OVERRIDES: " ".join(search.overrides),
            tags.LOG_PARAMS: ",".join(k for k, p in search.space.params.items() if p.kind.startswith("log")),
        }
        if warm is not None:
            run_tags[tags.WARM_START] = warm.describe()
        commit = _mlflow.git_commit(Path(__file__).resolve().parent)
        if commit:
            run_tags["mlflow.source.git.commit"] = commit
        run_id = client.create_run(experiment_id, run_name=f"{spec.name} (search)", tags=run_tags).info.run_id
        client.log_text(run_id, search.text, f"search/{Path(search.file).name}")
        client.log_text(run_id, search.resolved_yaml(), "search/resolved.yaml")
        if inputs:
            client.log_inputs(run_id, datasets=inputs)
        params = {
            "metric": spec.metric, "mode": spec.mode, "trials": spec.budget.trials,
            "max_concurrent": spec.budget.max_concurrent, "total_flops": spec.budget.total_flops,
            "time_s": spec.budget.time_s, "gpu": search.resources.get("gpu", 0),
            **{f"fixed.{k}": v for k, v in spec.fixed.items()},
        }
        if warm is not None:
            params.update({"warm_start.taken": warm.taken, "warm_start.skipped": warm.n_skipped})
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return cls(client, experiment_id, run_id)

    def children(self) -> list:
        """The search's trial runs (all pages)."""
        return _mlflow.children(self.client, self.experiment_id, self.run_id)

    def close(self, outcome: Outcome, infeasible: list) -> None:
        """Write the search's summary (counts by status, the best trial, the description with the top
        trials, the tables) and end the run (tag ``tunelab.state``: FINISHED, INTERRUPTED as MLflow's
        KILLED, FAILED); an interrupted search's running trials end KILLED, ``interrupted``.
        The best value so far is already there: the progress curve (``Progress``) ends on it. The
        counts are logged at the step of the trials ended so far, so the latest summary (after a
        resume) is the one MLflow shows."""
        client = self.client
        kids = self.children()
        if any(not t.run_id for t in outcome.trials):
            outcome.name_trials(kids)
        outcome.lineage = winner_lineage(kids, outcome)
        self._close_interrupted(kids, outcome)
        run_tags = [RunTag(tags.count(k), str(v)) for k, v in outcome.counts().items()]
        run_tags.append(RunTag(tags.STATE, outcome.state))
        if outcome.reason:
            run_tags.append(RunTag(tags.STATE_REASON, outcome.reason))
        values = {f"n_{k}": v for k, v in outcome.counts().items()}
        if outcome.best is not None:
            run_tags += [RunTag(tags.BEST_TRIAL, outcome.best.name or outcome.best.trial_id),
                         RunTag(tags.BEST_TRIAL_ID, outcome.best.trial_id),
                         RunTag(tags.BEST_RUN_ID, outcome.best.run_id)]
        run_tags.append(RunTag(tags.NOTE, outcome.note(self.experiment_id)))
        ended = sum(v for k, v in outcome.counts().items() if k not in (metrics.INFEASIBLE, metrics.INTERRUPTED))
        now = int(time.time() * 1000)
        client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, ended) for k, v in values.items()],
                         tags=run_tags)
        client.set_terminated(self.run_id, _PARENT_STATUS[outcome.state])
        try:  # files, after the run's state: they go to the artifact store, which may be the disk that is full
            client.log_text(self.run_id, outcome.table() + "\n", "report/summary.md")
            if infeasible:
                rows = [{"params": t.params, "reason": t.user_attrs.get(REASON_ATTR)} for t in infeasible]
                client.log_text(self.run_id, json.dumps(rows, indent=1, default=str), "report/infeasible.json")
        except OSError as exc:
            log.warning("could not store the summary's files on the parent run: %s", _mlflow.first_line(exc))

    def close_anyhow(self, reason: str) -> None:
        """End the search's runs when its summary could not be made (Ray's saved state unreadable): the
        parent and the runs still RUNNING end KILLED, INTERRUPTED, with ``reason``."""
        for run in self.children():
            if run.info.status == "RUNNING":
                self.client.log_batch(run.info.run_id, tags=[RunTag(tags.STATUS, metrics.INTERRUPTED)])
                self.client.set_terminated(run.info.run_id, _mlflow.run_status(metrics.INTERRUPTED))
        self.client.log_batch(self.run_id, tags=[RunTag(tags.STATE, metrics.INTERRUPTED_STATE),
                                                 RunTag(tags.STATE_REASON, reason)])
        self.client.set_terminated(self.run_id, _PARENT_STATUS[metrics.INTERRUPTED_STATE])

    def _close_interrupted(self, kids: list, outcome: Outcome) -> None:
        """End the child runs of the trials an interruption caught: KILLED, ``interrupted`` (a resume
        reopens them)."""
        caught = {t.trial_id for t in outcome.trials if t.status == metrics.INTERRUPTED}
        for run in kids:
            if run.data.tags.get(tags.TRIAL_ID) in caught and run.info.status == "RUNNING":
                note = (f"Interrupted ({outcome.reason}) while it ran; `tunelab resume {outcome.name}` runs it on "
                        "from its last checkpoint.")
                self.client.log_batch(run.info.run_id, tags=[RunTag(tags.STATUS, metrics.INTERRUPTED),
                                                             RunTag(tags.NOTE, note)])
                self.client.set_terminated(run.info.run_id, _mlflow.run_status(metrics.INTERRUPTED))

    def reopen(self) -> None:
        """Before a resume: the parent and the interrupted trials' runs are RUNNING again."""
        client = self.client
        client.set_tag(self.run_id, tags.STATE, metrics.RUNNING)
        if tags.STATE_REASON in client.get_run(self.run_id).data.tags:
            client.delete_tag(self.run_id, tags.STATE_REASON)
        client.update_run(self.run_id, status="RUNNING")
        for run in self.children():
            if run.data.tags.get(tags.STATUS) == metrics.INTERRUPTED:
                client.set_tag(run.info.run_id, tags.STATUS, "running")
                client.update_run(run.info.run_id, status="RUNNING")

    def is_closed(self) -> bool:
        """Whether ``close`` has written the summary."""
        run = self.client.get_run(self.run_id)
        return run.info.status == "FINISHED" and tags.count(metrics.COMPLETED) in run.data.tags


def winner_lineage(kids: list, outcome: Outcome) -> str:
    """The best member's family tree in a line, when members exploited others (PBT); else empty."""
    lineages = {(r.info.run_name or "").split(" ")[0]: _lineage.parse(r.data.tags.get(tags.LINEAGE)) for r in kids}
    best = outcome.best
    if best is None or not best.name or not any(lineages.values()):
        return ""
    return _lineage.describe(_lineage.family_tree(lineages, best.name, best.iterations))


def describe(search: spaces.Search) -> str:
    """What a search is, in a Markdown sentence or two: the parent run's description while it runs,
    and the head of it once it has ended."""
    spec = search.spec
    sched = spec.scheduler
    how = f"{sched.name.upper()} on `{sched.time_attr}`" if sched.name != "fifo" else "no early stopping"
    if sched.name in spaces.POPULATION_SCHEDULERS:
        how += (f" every {sched.perturbation_interval:g}, mutating {', '.join(f'`{m}`' for m in sched.mutations)} "
                f"(population {spec.budget.trials})")
    budget = [f"{spec.budget.trials} trials, {spec.budget.max_concurrent} at a time"]
    if spec.budget.total_flops:
        budget.append(f"{spec.budget.total_flops:.3g} FLOPs in all")
    if spec.budget.time_s:
        budget.append(f"{spec.budget.time_s:g} s")
    params = ", ".join(f"`{k}`" for k in search.space.params) or "nothing (fixed config)"
    return (f"**{spec.name}**: `{spec.trainable}` trials over {params}; {spec.mode}imise `{spec.metric}`. "
            f"Sampler {spec.sampler.name.upper()}, scheduler {how}. Budget: {'; '.join(budget)}.")



@dataclasses.dataclass
class Progress:
    """The search's progress on its parent run, one step per ended trial (step k: k trials ended).

    At each step: the best objective so far (``best_val_ppl``: the optimisation-history curve), the
    ended trial's own best (``trial_val_ppl``: its scatter), and the FLOPs and training seconds the
    ended trials spent together (``search_flops``, ``search_trial_s``: choose one as the x axis of a
    chart in MLflow to see the best so far against compute).
    """

    parent_run_id: str
    metric: str
    mode: str
    ended: int = 0
    best: float | None = None
    flops: float = 0.0
    trial_s: float = 0.0

    @classmethod
    def read(cls, client: MlflowClient, parent_run_id: str, metric: str, mode: str) -> Progress:
        """The progress logged so far (nothing on a new search; where it stopped after a restart)."""
        progress = cls(parent_run_id, metric, mode)
        spent = client.get_metric_history(parent_run_id, metrics.SEARCH_TRIAL_S)
        if spent:
            last = max(spent, key=lambda m: m.step)
            progress.ended, progress.trial_s = last.step, last.value
            values = client.get_run(parent_run_id).data.metrics
            progress.best = values.get(metrics.best_so_far(metric))
            progress.flops = values.get(metrics.SEARCH_FLOPS, 0.0)
        return progress

    def trial_ended(self, client: MlflowClient, best: float | None, last: Mapping[str, Any] | None) -> None:
        """Log the next step: one more trial ended, with ``best`` its best objective (None: none)."""
        last = last or {}
        flops = self.flops + float(last.get(metrics.FLOPS) or 0.0)
        trial_s = self.trial_s + float(last.get(metrics.WALL_S) or 0.0)
        so_far = self.best
        if best is not None and (so_far is None or (best < so_far if self.mode == "min" else best > so_far)):
            so_far = best
        values = {metrics.SEARCH_FLOPS: flops, metrics.SEARCH_TRIAL_S: trial_s}
        if so_far is not None:
            values[metrics.best_so_far(self.metric)] = so_far
        if best is not None:
            values[metrics.trial_value(self.metric)] = best
        ts = int(time.time() * 1000)
        client.log_batch(self.parent_run_id, metrics=[Metric(k, v, ts, self.ended + 1) for k, v in values.items()])
        # only once MLflow has it: a server that did not answer leaves the count as it was
        self.ended, self.flops, self.trial_s, self.best = self.ended + 1, flops, trial_s, so_far
