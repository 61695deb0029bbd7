"""MLflow runs of a search -> Arrow tables and Parquet -> tables, figures and reports.

``load(experiment, tracking_uri)`` turns one search (its parent run and one child run per trial) into
two Arrow tables, ``runs`` and ``history``; everything else is built on those two tables. Reads MLflow
only, never imports ``search``. pandas backs the tables; matplotlib is imported only when a figure is
drawn, and figures never touch pyplot's global state.

Example:
    >>> from tunelab import analysis
    >>> runs, history = analysis.load("ptb-smoke", "sqlite:///runs/mlflow.db")
    >>> print(analysis.to_markdown(analysis.trial_table(runs, history)))
    >>> analysis.plot_curves(runs, history, x="wall_s").save("figures")
    >>> analysis.report("ptb-smoke", "sqlite:///runs/mlflow.db", "reports/ptb-smoke")

The notebooks ship with the package, in ``NOTEBOOKS`` (copy one out to use it).
"""

from pathlib import Path

from tunelab.analysis._arith import plot_arith_curves, plot_extrema, plot_order_curves
from tunelab.analysis._asha import Rungs, plot_asha, rungs
from tunelab.analysis._classification import accuracy_table, is_classification, plot_accuracy
from tunelab.analysis._curves import plot_curves
from tunelab.analysis._errors import AnalysisError
from tunelab.analysis._extrema import aggregate, by_step, config_table, extrema, side_by_side
from tunelab.analysis._history import completion_order, plot_optimization_history, plot_slice
from tunelab.analysis._importance import param_importance, plot_importance, rebuild_study
from tunelab.analysis._isoflop import BudgetFit, IsoFlopFit, isoflop_fit, plot_isoflop
from tunelab.analysis._load import load, read_artifact, typed_column
from tunelab.analysis._pareto import pareto_front, plot_pareto
from tunelab.analysis._parquet import read_parquet, to_parquet
from tunelab.analysis._pbt import lineages, plot_family_tree, plot_schedules
from tunelab.analysis._plot import Plot, figure_block, new_figure
from tunelab.analysis._report import report
from tunelab.analysis._schema import metric_keys, metric_mode, param_columns, search_info, varied_params
from tunelab.analysis._tables import (
    companion_metric,
    format_mean_std,
    seed_table,
    status_counts,
    to_html,
    to_markdown,
    top_k,
    trial_table,
)

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"

__all__ = [
    "AnalysisError", "BudgetFit", "IsoFlopFit", "NOTEBOOKS", "Plot", "Rungs", "accuracy_table", "aggregate",
    "by_step", "companion_metric", "completion_order", "config_table", "extrema", "figure_block",
    "format_mean_std", "is_classification", "isoflop_fit", "load", "metric_keys", "metric_mode", "new_figure",
    "lineages", "param_columns", "param_importance", "pareto_front", "plot_accuracy", "plot_arith_curves",
    "plot_asha", "plot_curves", "plot_extrema", "plot_family_tree", "plot_importance", "plot_isoflop",
    "plot_optimization_history", "plot_order_curves", "plot_pareto", "plot_schedules", "plot_slice", "read_artifact", "read_parquet", "rebuild_study",
    "report", "rungs", "search_info", "seed_table", "side_by_side", "status_counts", "to_html", "to_markdown",
    "to_parquet", "top_k", "trial_table", "typed_column", "varied_params",
]
