"""Parameter importance: Optuna's fANOVA on a study rebuilt from the runs table.

The search's own Optuna study lives beside the Ray results, not in MLflow, so the study is rebuilt
here with ``optuna.trial.create_trial``: one COMPLETE trial per run with a finite best metric, its
varied parameters as params, distributions inferred from the column types (float -> FloatDistribution,
int -> IntDistribution over the observed range, bool and string -> CategoricalDistribution). fANOVA
(Hutter et al., 2014) fits a random forest of the objective on the parameters and splits its variance
into per-parameter parts; with a handful of trials the numbers are rough.

Stopped-early trials are included with their best value so far: that is what the sampler saw too,
and leaving them out would hide the parameters that made trials bad.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from tunelab.analysis._errors import AnalysisError
from tunelab.analysis._plot import Plot, new_figure
from tunelab.analysis._schema import search_info, varied_params


def rebuild_study(runs: pa.Table, metric: str | None = None, mode: str | None = None, params: list[str] | None = None):
    """An in-memory Optuna study with one COMPLETE trial per run whose ``best_<metric>`` is finite.

    Args:
        runs: the ``runs`` table of ``load``.
        metric, mode: the objective; None is the search's metric and mode.
        params: parameter columns to include; None is every varied parameter.

    Returns:
        (study, params): the study and the parameters every trial in it has (conditional parameters
        that some trials lack are left out, since fANOVA needs every trial to have every parameter).
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    info = search_info(runs)
    metric = metric or info["metric"]
    mode = mode or info["mode"]
    col = f"best_{metric}"
    if col not in runs.column_names:
        raise AnalysisError(f"no trial has a value of {metric!r}")
    params = list(params if params is not None else varied_params(runs))
    target = runs.column(col).to_pylist()
    keep = [i for i, v in enumerate(target) if v is not None and math.isfinite(v)]
    values = {p: [None if _missing(v) else v for v in runs.column(p).to_pylist()] for p in params}
    params = [p for p in params if all(values[p][i] is not None for i in keep)]
    if len(keep) < 2 or not params:
        raise AnalysisError(f"parameter importance needs at least 2 trials with a finite {metric} and a "
                            f"parameter they all vary (have {len(keep)} trials, parameters {params})")
    dists = {}
    for p in params:
        kind = runs.schema.field(p).type
        seen = [values[p][i] for i in keep]
        if pa.types.is_floating(kind):
            dists[p] = FloatDistribution(float(min(seen)), float(max(seen)))
        elif pa.types.is_integer(kind):
            dists[p] = IntDistribution(int(min(seen)), int(max(seen)))
        else:
            dists[p] = CategoricalDistribution(sorted(set(seen), key=str))
    trials = [
        optuna.trial.create_trial(value=float(target[i]), params={p: values[p][i] for p in params},
                                  distributions=dists)
        for i in keep
    ]
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="minimize" if mode == "min" else "maximize")
    finally:
        optuna.logging.set_verbosity(level)
    study.add_trials(trials)
    return study, params


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def param_importance(
    runs: pa.Table, metric: str | None = None, mode: str | None = None, *, seed: int = 0,
) -> dict[str, float]:
    """fANOVA importance of each varied parameter for the best value of ``metric``; sums to 1.

    Args:
        runs: the ``runs`` table of ``load``.
        metric, mode: the objective; None is the search's metric and mode.
        seed: the random forest's seed (fANOVA is stochastic).

    Raises:
        AnalysisError: fewer than 2 usable trials or no varied parameter.
    """
    import optuna

    study, params = rebuild_study(runs, metric, mode)
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    try:
        return optuna.importance.get_param_importances(study, evaluator=evaluator, params=params)
    except (ValueError, RuntimeError) as exc:
        raise AnalysisError(f"fANOVA failed on {len(study.trials)} trials: {exc}") from None


def plot_importance(runs: pa.Table, metric: str | None = None, mode: str | None = None, *, seed: int = 0) -> Plot:
    """Horizontal bars of ``param_importance``, most important on top.

    Args:
        runs: the ``runs`` table of ``load``.
        metric, mode: the objective; None is the search's metric and mode.
        seed: the random forest's seed.
    """
    metric = metric or search_info(runs)["metric"]
    imp = param_importance(runs, metric, mode, seed=seed)
    names = list(imp)[::-1]
    fig, (ax,) = new_figure(width=5.5, height=0.45 * len(names) + 1.4)
    y = np.arange(len(names))
    bars = ax.barh(y, [imp[n] for n in names], color="#4c72b0")
    ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    ax.set_yticks(y, names)
    ax.set_xlabel(f"fANOVA importance for best {metric}")
    ax.set_ylabel("parameter")
    ax.set_xlim(0, max(1.0, max(imp.values()) * 1.15))
    ax.set_title("parameter importance")
    n = sum(1 for v in runs.column(f"best_{metric}").to_pylist() if v is not None and math.isfinite(v))
    caption = (f"Share of the variance of each trial's best {metric} explained by each parameter "
               f"(Optuna's fANOVA over {n} trials with a finite value; importances sum to 1). "
               f"With few trials these are rough.")
    return Plot(fig, caption, "param_importance", data=imp)
