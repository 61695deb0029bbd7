"""The tiny real search the slow search tests share (conftest's ``tiny_search``), and how they read what
MLflow holds of it."""

from __future__ import annotations

from pathlib import Path

from tunelab import _mlflow, spaces
from tunelab.search._parent import ParentRun
from tunelab.search._paths import SEARCH_FILE
from tunelab.trainables import metrics
from tunelab.trainables import tags

# Three trials, one at a time, in a known order (points_to_evaluate) and with known fates under
# synthetic_load.yaml's ASHA (max_t 4, grace 1, reduction 2): the first raises at epoch 2 after one
# report, the second is the optimum and runs all four epochs, the third is far worse at epoch 1 and is
# stopped there.
TINY = [
    "budget.trials=3", "budget.max_concurrent=1", "budget.max_failures=0", "space.fail_at_epoch={choice: [0, 2]}",
    "points_to_evaluate=[{x: 0.0, y: 0.0, fail_at_epoch: 2}, {x: 0.3, y: -0.2, fail_at_epoch: 0},"
    " {x: -1.0, y: 1.0, fail_at_epoch: 0}]",
]
# Each trial's child run once MLflow has every record: (MLflow status, tunelab.status, val_loss steps).
RECORDS = [("FAILED", metrics.ERROR, [1]), ("FINISHED", metrics.COMPLETED, [1, 2, 3, 4]),
           ("FINISHED", metrics.STOPPED_EARLY, [1])]


def records(parent: ParentRun) -> list[tuple]:
    """What MLflow holds of the search's trials, as ``RECORDS`` lists it (its runs named t000 to t002)."""
    runs = parent.children()
    assert sorted(r.info.run_name.split(" ")[0] for r in runs) == [f"t{i:03d}" for i in range(len(runs))]
    return sorted((r.info.status, r.data.tags[tags.STATUS],
                   [m.step for m in parent.client.get_metric_history(r.info.run_id, metrics.VAL_LOSS)]) for r in runs)


def fresh_parent(exp_dir: Path, folder: Path) -> ParentRun:
    """The search's parent run in a new MLflow store under ``folder``, as if the tracking server had
    been down since the search opened it: no child run, no progress."""
    client = _mlflow.client_for(f"sqlite:///{folder / 'fresh.db'}")
    search = spaces.load(exp_dir / SEARCH_FILE)
    return ParentRun.open(client, _mlflow.ensure_experiment(client, search.spec.name, None), search, exp_dir, [])
