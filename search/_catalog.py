"""What searches a results root holds: ``tunelab ls`` and ``tunelab ui``."""

from __future__ import annotations

import json
from pathlib import Path

from tunelab import _mlflow
from tunelab.search._paths import STATE_FILE, is_running
from tunelab.trainables import metrics
from tunelab.trainables import tags


def list_searches(storage: Path) -> list[dict]:
    """One row per search under ``storage``: name, trial counts by status, best metric."""
    rows = []
    for state_path in sorted(storage.expanduser().resolve().glob(f"*/{STATE_FILE}")):
        state = json.loads(state_path.read_text())
        client = _mlflow.client_for(state["tracking_uri"])
        parent = client.get_run(state["parent_run_id"])
        counts = {s: 0 for s in metrics.STATUSES}
        for run in _mlflow.children(client, state["experiment_id"], state["parent_run_id"]):
            status = run.data.tags.get(tags.STATUS, "running")
            counts[status] = counts.get(status, 0) + 1
        counts[metrics.INFEASIBLE] = int(parent.data.metrics.get(f"n_{metrics.INFEASIBLE}", 0))
        best = {k: v for k, v in parent.data.metrics.items() if k.startswith("best_")}
        rows.append({"name": state["name"], "state": search_state(parent, state_path.parent), "counts": counts,
                     "best": best})
    return rows


def search_state(parent, exp_dir: Path) -> str:
    """RUNNING, FINISHED, INTERRUPTED or FAILED (tag ``tags.STATE``). A parent run left RUNNING by a
    driver that was killed (SIGKILL, a lost machine) is INTERRUPTED: no process holds its folder."""
    if parent.info.status == "RUNNING":
        return metrics.RUNNING if is_running(exp_dir) else metrics.INTERRUPTED_STATE
    by_status = {"FINISHED": metrics.FINISHED_STATE, "KILLED": metrics.INTERRUPTED_STATE, "FAILED": metrics.FAILED}
    return parent.data.tags.get(tags.STATE) or by_status.get(parent.info.status, parent.info.status)


def format_table(rows: list[dict]) -> str:
    head = ["search", "state", "trials", *metrics.STATUSES, "best"]
    lines = ["  ".join(head)]
    for r in rows:
        c = r["counts"]
        total = sum(v for k, v in c.items() if k != metrics.INFEASIBLE)
        best = " ".join(f"{k.removeprefix('best_')}={v:.4g}" for k, v in r["best"].items()) or "-"
        lines.append("  ".join([r["name"], r["state"], str(total), *(str(c.get(s, 0)) for s in metrics.STATUSES), best]))
    return "\n".join(lines)
