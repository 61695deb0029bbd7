"""What a PBT search did: the schedules its members learnt, and the winner's family tree.

A PBT member logs its current value of every mutated parameter as the metric ``hp/<name>`` at each
report, and its exploits in the tag ``tunelab.lineage`` (the runs table's ``lineage`` column): JSON
``{step, from, config}``, "at ``step`` it took member ``from``'s weights and went on with ``config``"
(``tunelab._lineage``). An exploiting member's reports after the copied step are logged again, so
where a step has two values the later one (by timestamp) is the one it went on with.
"""

from __future__ import annotations

import pyarrow as pa

from tunelab import _lineage
from tunelab.analysis._errors import AnalysisError
from tunelab.analysis._plot import Plot, label, legend_below, new_figure, trial_names
from tunelab.trainables import metrics

HP_PREFIX = "hp/"  # as ``search._children`` logs them


def lineages(runs: pa.Table) -> dict[str, list[dict]]:
    """Each member's exploits, by its short name (t003); empty lists for members that exploited none."""
    names = trial_names(runs)
    column = runs.column("lineage").to_pylist() if "lineage" in runs.column_names else [None] * runs.num_rows
    return {names.get(t, t): _lineage.parse(v) for t, v in zip(runs.column("trial_id").to_pylist(), column)}


def mutated(history: pa.Table) -> list[str]:
    """The parameters a PBT search logged schedules of (``hp/<name>``), sorted."""
    keys = history.column("key").unique().to_pylist()
    return sorted(k[len(HP_PREFIX):] for k in keys if k.startswith(HP_PREFIX))


def _series(history: pa.Table, key: str):
    """run_id -> {step: value} for one key, the latest value of each step (by timestamp)."""
    df = history.select(["run_id", "key", "step", "value", "timestamp"]).to_pandas()
    df = df[df["key"] == key].sort_values(["run_id", "step", "timestamp"])
    return {rid: dict(zip(g["step"], g["value"])) for rid, g in df.groupby("run_id")}


def _time_axis(history: pa.Table, time_attr: str | None) -> tuple[str, dict]:
    """The progress counter to draw against and run_id -> {step: its value} (the step itself when the
    counter was not logged)."""
    keys = set(history.column("key").unique().to_pylist())
    attr = time_attr or (metrics.EPOCH if metrics.EPOCH in keys else "training_iteration")
    return attr, (_series(history, attr) if attr in keys else {})


def plot_schedules(runs: pa.Table, history: pa.Table, time_attr: str | None = None) -> Plot:
    """Each mutated parameter against the time attribute: one line per member, its exploits marked
    (x: where it took another member's weights and went on with the value drawn after the mark).

    Raises:
        AnalysisError: no member logged an ``hp/`` metric (not a PBT search).
    """
    params = mutated(history)
    if not params:
        raise AnalysisError("no trial logged hp/<name> metrics (not a PBT search)")
    attr, times = _time_axis(history, time_attr)
    names = trial_names(runs)
    ids = dict(zip(runs.column("run_id").to_pylist(), runs.column("trial_id").to_pylist()))
    exploits = lineages(runs)
    fig, axes = new_figure(ncols=len(params), width=4.6)
    handles = []
    for ax, name in zip(axes, params):
        series = _series(history, HP_PREFIX + name)
        for i, (run_id, values) in enumerate(sorted(series.items(), key=lambda kv: names.get(ids.get(kv[0]), ""))):
            member = names.get(ids.get(run_id), run_id[:8])
            when = times.get(run_id, {})
            steps = sorted(values)
            xs = [when.get(s, s) for s in steps]
            (line,) = ax.step(xs, [values[s] for s in steps], where="post", lw=1.2, label=member, color=f"C{i % 10}")
            for e in exploits.get(member, []):
                after = e["step"] + 1
                if after in values:
                    ax.plot([when.get(after, after)], [values[after]], "x", color=line.get_color(), ms=7, mew=2)
            if ax is axes[0]:
                handles.append(line)
        ax.set_xlabel(label(attr))
        ax.set_ylabel(name)
        lows = [v for s in series.values() for v in s.values()]
        if lows and min(lows) > 0 and max(lows) / min(lows) > 10:
            ax.set_yscale("log")
        ax.set_title(f"{name}: the learnt schedules", fontsize=9)
    legend_below(fig, handles)
    n_exploits = sum(len(v) for v in exploits.values())
    return Plot(fig, f"The value of each mutated parameter that every PBT member trained with, against {attr}; "
                f"x marks an exploit ({n_exploits} in all): the member took a top member's weights there and "
                "went on with that member's values, perturbed.", "pbt_schedules")


def plot_family_tree(runs: pa.Table, history: pa.Table, metric: str, mode: str, time_attr: str | None = None) -> Plot:
    """The winner's family tree: whose weights the best member's final weights grew from, step by step.

    One row per member; the segments of the winner's lineage drawn on the row of the member that
    trained them, joined by arrows at the exploits (``_lineage.family_tree``).

    Raises:
        AnalysisError: no member exploited another, or no member has the objective.
    """
    exploits = lineages(runs)
    if not any(exploits.values()):
        raise AnalysisError("no member exploited another")
    column = f"best_{metric}"
    if column not in runs.column_names:
        raise AnalysisError(f"no trial has {metric}")
    names = trial_names(runs)
    rows = [(names.get(t, t), v, it) for t, v, it in zip(runs.column("trial_id").to_pylist(),
                                                         runs.column(column).to_pylist(),
                                                         runs.column("iterations").to_pylist()) if v is not None]
    if not rows:
        raise AnalysisError(f"no trial has {metric}")
    winner, best, end = (min if mode == "min" else max)(rows, key=lambda r: r[1])
    tree = _lineage.family_tree(exploits, winner, int(end or 0))
    members = sorted(exploits)
    row_of = {m: i for i, m in enumerate(members)}
    attr, times = _time_axis(history, time_attr)
    by_name = {names.get(t, t): rid for t, rid in zip(runs.column("trial_id").to_pylist(), runs.column("run_id").to_pylist())}
    fig, (ax,) = new_figure(width=6.0, height=0.5 + 0.35 * len(members))

    def x(member: str, step: int) -> float:
        return times.get(by_name.get(member), {}).get(step, step)

    for i, seg in enumerate(tree):
        y = row_of.get(seg.member, 0)
        ax.plot([x(seg.member, seg.start), x(seg.member, seg.end)], [y, y], lw=5, solid_capstyle="butt",
                color=f"C{row_of.get(seg.member, 0) % 10}")
        if i + 1 < len(tree):  # the exploit: from the older segment's member up to this one's
            parent = tree[i + 1]
            ax.annotate("", xy=(x(seg.member, seg.start), y), xytext=(x(parent.member, seg.start), row_of.get(parent.member, 0)),
                        arrowprops={"arrowstyle": "->", "color": "#333"})
    ax.set_yticks(range(len(members)), members, fontsize=7)
    ax.set_xlabel(label(attr))
    ax.set_title(f"Winner {winner} ({metric} {best:.4g}): its weights' family tree", fontsize=9)
    return Plot(fig, f"Where the best member's weights come from: {_lineage.describe(tree)}. Each bar is a stretch "
                f"of training, on the row of the member that did it; an arrow is an exploit (a copy of that "
                "member's weights, then training on with perturbed values).", "pbt_family_tree", data=tree)
