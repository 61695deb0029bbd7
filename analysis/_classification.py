"""Classification searches: seed report 001's table and its accuracy and loss curves.

A search is one by what it optimises (an accuracy) or reports (``test_acc``), whatever its trainable:
the ViT's, the arithmetic ones, the accuracy benchmarks', a lab's classifier. So the section is the
analysis' own, not one family's (``Entry.report_module``).

- ``is_classification``: whether a search's trials are classifiers (they optimise or report accuracy).
- ``accuracy_table``: seed 001's Table 1: per trial the best validation accuracy, the training accuracy
  and both losses at that epoch, the parameter count and peak memory, and the test accuracy of the
  best-val weights.
- ``plot_accuracy``: train and validation accuracy and loss against epochs or cumulative wall-clock
  (seed 001's figures 4 and 5).
- ``classification_blocks``: the report section that ``analysis.report`` adds for such a search.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from tunelab.analysis._curves import PANELS, plot_curves
from tunelab.analysis._plot import Plot, figure_block, with_trial_names
from tunelab.analysis._schema import metric_mode, search_info
from tunelab.analysis._tables import trial_table
from tunelab.trainables import metrics

ACCURACY = ("accuracy", metrics.TRAIN_ACC, metrics.VAL_ACC, "accuracy")
LOSS = PANELS[0]
AT_BEST = (metrics.TRAIN_LOSS, metrics.VAL_LOSS, metrics.EPOCH, metrics.WALL_S)


def is_classification(runs: pa.Table, history: pa.Table) -> bool:
    """Whether a search trained classifiers: it optimises an accuracy, or a trial reported ``test_acc``.

    (Language models report token accuracy too, so ``val_acc`` alone does not tell.)

    Args:
        runs, history: the tables of ``load``.
    """
    if metric_mode(search_info(runs)["metric"]) == "max":
        return True
    return metrics.TEST_ACC in set(history.column("key").unique().to_pylist())


def accuracy_table(runs: pa.Table, history: pa.Table, *, sort: bool = True) -> pd.DataFrame:
    """Seed report 001's Table 1, one row per trial.

    Columns: ``trial_id``, ``status``, the varied parameters, ``best_val_acc``, and at that epoch
    ``train_acc_at_best``, ``train_loss_at_best``, ``val_loss_at_best``, ``epoch_at_best`` and
    ``wall_s_at_best``; then ``peak_mem_mb``, ``n_params`` and ``test_acc`` (the trial's last report
    of it: the best-val weights on the test split; null for a trial stopped before its end).

    Args:
        runs, history: the tables of ``load``.
        sort: best val_acc first (else start order).
    """
    table = trial_table(runs, history, metrics.VAL_ACC, "max", sort=sort, at_best=AT_BEST)
    column = f"last_{metrics.TEST_ACC}"
    if column in runs.column_names:
        by_trial = dict(zip(runs.column("trial_id").to_pylist(), runs.column(column).to_pylist()))
        table[metrics.TEST_ACC] = [by_trial.get(t) for t in table["trial_id"]]
    else:
        table[metrics.TEST_ACC] = float("nan")
    return table


def plot_accuracy(runs: pa.Table, history: pa.Table, x: str = metrics.EPOCH, *, loss: bool = True,
                  **kwargs) -> Plot:
    """Train (dashed) and validation (solid) accuracy, and loss, of each trial against ``x``.

    Args:
        runs, history: the tables of ``load``.
        x: ``epoch`` (seed 001's figure 4) or ``wall_s`` (its figure 5, cumulative training time).
        loss: add a panel of the losses (the report leaves it out: its learning curves show them).
        **kwargs: ``trials`` and ``max_trials``, as for ``plot_curves``.

    Raises:
        AnalysisError: ``x`` or the accuracies were never logged.
    """
    panels = (ACCURACY, LOSS) if loss else (ACCURACY,)
    return plot_curves(runs, history, x, panels=panels, name=f"accuracy_{x}", **kwargs)


def classification_blocks(runs: pa.Table, history: pa.Table) -> list[tuple]:
    """The report's section for a classification search: seed 001's table and figures 4 and 5 (the
    losses against epochs and wall-clock are in the report's learning curves).

    Args:
        runs, history: the tables of ``load``.
    """
    blocks: list[tuple] = [("h", 2, "Classification")]
    blocks.append(("table", with_trial_names(accuracy_table(runs, history), runs),
                   "Each trial's best validation accuracy, with the training "
                   "accuracy and both losses at that epoch, parameters, peak memory (MB) and the test "
                   "accuracy of its best-val weights; best first."))
    for x in (metrics.EPOCH, metrics.WALL_S):
        blocks.append(figure_block(lambda x=x: plot_accuracy(runs, history, x, loss=False), f"accuracy curves against {x}"))
    return blocks
