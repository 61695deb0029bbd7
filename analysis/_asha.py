"""ASHA rungs: how many trials were still alive at each rung, and where each one stopped.

MLflow does not record the scheduler's rungs, but they can be read back from the trials: a trial
that ASHA stopped stopped at a rung, so the rungs are the distinct final progress values (in the
scheduler's ``time_attr``) of the ``stopped_early`` trials, plus the furthest any trial got.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from tunelab.analysis._errors import AnalysisError
from tunelab.analysis._plot import STATUS_COLORS, Plot, label, new_figure, trial_names
from tunelab.trainables import metrics


@dataclasses.dataclass
class Rungs:
    """Trials per rung.

    Attributes:
        time_attr: the progress counter (``epoch``, ``flops``, ``training_iteration``).
        rungs: rung values, ascending; the last is the furthest any trial got.
        alive: per rung, how many trials reached it.
        progress: trial_id -> how far the trial got.
        status: trial_id -> its final status.
    """

    time_attr: str
    rungs: list[float]
    alive: list[int]
    progress: dict[str, float]
    status: dict[str, str]


def rungs(runs: pa.Table, history: pa.Table, time_attr: str | None = None) -> Rungs:
    """Infer the rungs of a successive-halving search and count the trials that reached each.

    Args:
        runs, history: the tables of ``load``.
        time_attr: the scheduler's progress counter; None takes ``epoch`` if logged, else
            ``training_iteration``.

    Raises:
        AnalysisError: the counter was never logged.
    """
    keys = set(history.column("key").unique().to_pylist())
    if time_attr is None:
        time_attr = metrics.EPOCH if metrics.EPOCH in keys else "training_iteration"
    if time_attr not in keys:
        raise AnalysisError(f"no trial logged {time_attr!r}; cannot place trials on rungs")
    df = history.select(["run_id", "key", "value"]).to_pandas()
    df = df[(df["key"] == time_attr) & np.isfinite(df["value"])]
    furthest = df.groupby("run_id")["value"].max()
    ids = runs.column("run_id").to_pylist()
    trial_ids = runs.column("trial_id").to_pylist()
    statuses = runs.column("status").to_pylist()
    progress = {t: float(furthest.get(i, 0.0)) for i, t in zip(ids, trial_ids)}
    status = dict(zip(trial_ids, statuses))
    stopped = {progress[t] for t, s in status.items() if s == metrics.STOPPED_EARLY}
    values = sorted(stopped | {max(progress.values(), default=0.0)})
    alive = [sum(p >= r for p in progress.values()) for r in values]
    return Rungs(time_attr, values, alive, progress, status)


def plot_asha(runs: pa.Table, history: pa.Table, time_attr: str | None = None) -> Plot:
    """Left: trials alive at each rung. Right: each trial's progress, coloured by how it ended.

    Args:
        runs, history: the tables of ``load``.
        time_attr: as for ``rungs``.
    """
    r = rungs(runs, history, time_attr)
    fig, (left, right) = new_figure(ncols=2)
    names = ["started", *(_fmt(v) for v in r.rungs)]
    counts = [len(r.progress), *r.alive]
    bars = left.bar(range(len(names)), counts, color="#4c72b0")
    left.bar_label(bars, fontsize=8)
    left.set_xticks(range(len(names)), names, fontsize=8)
    left.set_xlabel(f"rung ({label(r.time_attr)} reached)")
    left.set_ylabel("trials")
    left.set_title("trials alive per rung")

    order = sorted(r.progress, key=lambda t: (-r.progress[t], t))
    y = np.arange(len(order))
    names = trial_names(runs)
    right.barh(y, [r.progress[t] for t in order], color=[STATUS_COLORS.get(r.status[t], "#999999") for t in order])
    right.set_yticks(y, [names.get(t, t) for t in order], fontsize=7)
    right.invert_yaxis()
    for v in r.rungs:
        right.axvline(v, color="black", ls=":", lw=0.8)
    right.set_xlabel(label(r.time_attr))
    right.set_ylabel("trial")
    right.set_title("where each trial stopped")
    from matplotlib.patches import Patch

    seen = [s for s in STATUS_COLORS if s in r.status.values()]
    right.legend(handles=[Patch(color=STATUS_COLORS[s], label=s) for s in seen], fontsize=7, loc="lower right")
    n_stopped = sum(s == metrics.STOPPED_EARLY for s in r.status.values())
    caption = (f"Successive halving over {label(r.time_attr)}. Left: how many of the {len(r.progress)} trials "
               f"reached each rung (rungs read off where trials were stopped). Right: how far each trial got, "
               f"coloured by its final status; {n_stopped} were stopped early. Dotted lines mark the rungs.")
    return Plot(fig, caption, "asha_rungs", data=r)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e7 else f"{v:.3g}"
