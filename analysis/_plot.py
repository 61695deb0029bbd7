"""``Plot``: a matplotlib figure with its caption, saved as PNG and SVG; helpers the figures share.

Figures are made with ``matplotlib.figure.Figure`` directly, never through pyplot, so nothing here
changes the global backend (a notebook keeps its inline backend) and rendering goes through Agg.
matplotlib is imported lazily (as Optuna guards pandas): ``import tunelab.analysis`` does not import it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa

from tunelab.analysis._errors import AnalysisError
from tunelab.analysis._schema import SEARCH
from tunelab.trainables import metrics

STATUS_COLORS = {
    "completed": "#1b9e77", "stopped_early": "#7570b3", "diverged": "#d95f02", "oom": "#e7298a",
    "error": "#666666", "infeasible": "#a6761d",
}
AXIS_LABELS = {
    "epoch": "epoch", "wall_s": "wall-clock training time (s)", "flops": "training FLOPs",
    metrics.STEP: "optimizer step", "tokens": "training tokens", "training_iteration": "report (training iteration)",
    metrics.PARAMS: "parameters", metrics.PARAMS_NONEMBED: "non-embedding parameters",
}


@dataclasses.dataclass
class Plot:
    """One figure of a report.

    Attributes:
        figure: the matplotlib ``Figure``.
        caption: what it shows, in a sentence or three (printed under it in reports, and drawn into
            the saved image).
        name: file stem for ``save``.
        data: the numbers behind it, where they are worth having (importances, a fit, a front).
    """

    figure: Any
    caption: str
    name: str
    data: Any = None

    def save(self, directory: str | Path, formats: tuple[str, ...] = ("png", "svg"), dpi: int = 120,
             caption: bool = True) -> list[Path]:
        """Write ``<name>.png`` and ``<name>.svg`` into ``directory``.

        Args:
            directory: created if missing.
            formats: file formats matplotlib knows.
            dpi: resolution of raster formats.
            caption: draw the caption under the axes (a report that prints it as text says False, so
                it is read once).

        Returns:
            The written paths.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        with _captioned(self) if caption else contextlib.nullcontext():
            for fmt in formats:
                path = out / f"{self.name}.{fmt}"
                self.figure.savefig(path, format=fmt, dpi=dpi, bbox_inches="tight")
                paths.append(path)
        return paths

    def png(self, dpi: int = 100) -> bytes:
        """The figure as PNG bytes (without the caption)."""
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        return buf.getvalue()

    def _repr_png_(self) -> bytes:  # Jupyter shows a Plot as its image
        return self.png()


class _captioned:
    """Draw the caption under the axes while saving, then take it off again."""

    def __init__(self, plot: Plot):
        self.plot = plot
        self.text = None

    def __enter__(self):
        fig = self.plot.figure
        width = max(40, int(fig.get_figwidth() * 14))
        self.text = fig.text(0.01, 0.0, textwrap.fill(self.plot.caption, width), ha="left", va="top", fontsize=8)
        return self

    def __exit__(self, *exc):
        self.text.remove()
        return False


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6):
    """A constrained-layout ``Figure`` and its axes (a flat list)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def figure_block(make, what: str) -> tuple:
    """A report's figure block, ``("figure", make())``, or a one-line note when there is nothing to
    draw (``make`` raised AnalysisError: no FLOP budget, one trial...).

    Args:
        make: builds the ``Plot``.
        what: the figure, as the note names it ("No <what>: <why>.").
    """
    try:
        return ("figure", make())
    except AnalysisError as exc:
        return ("p", f"*No {what}: {exc}.*")


def legend_below(fig, handles: list, fontsize: float = 7) -> None:
    """A legend of ``handles`` under the axes, the figure made taller to hold it.

    Beside the axes, a legend as wide as its longest label (a run name: "t003 norm=pre n_layer=2
    optimizer=adamw") took most of a one-panel figure and left the plot a thin column. Under them, it
    takes as many columns as fit the figure's width, and the figure grows by its height, so the axes
    keep their size whatever the number of trials.

    The legend is pinned to the figure's bottom edge in figure coordinates, and the layout keeps the
    axes above it (constrained layout's ``rect``). Not constrained layout's "outside lower center": that
    places the legend at the bottom of whatever box the figure is drawn in, and a save with
    ``bbox_inches="tight"`` draws it in the box that holds the caption ``Plot.save`` adds under the
    figure, so the legend landed on the caption.

    Args:
        fig: a constrained-layout figure of ``new_figure``.
        handles: the legend's entries.
        fontsize: of the labels.
    """
    legend = None
    for ncols in range(len(handles), 0, -1):  # the most columns that fit
        if legend is not None:
            legend.remove()
        legend = fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0),
                            bbox_transform=fig.transFigure, ncols=ncols, fontsize=fontsize, frameon=False)
        if legend.get_window_extent().width <= 0.98 * fig.bbox.width:
            break
    below = legend.get_window_extent().height / fig.dpi + 0.1  # inches, and a gap above it
    height = fig.get_figheight() + below
    fig.set_figheight(height)
    fig.get_layout_engine().set(rect=(0.0, below / height, 1.0, 1.0 - below / height))


def label(key: str) -> str:
    """Axis label of a metric or counter."""
    return AXIS_LABELS.get(key, key)


def set_metric_scale(ax, key: str, values=None, axis: str = "y") -> None:
    """A log axis for a perplexity (they span orders of magnitude: one diverged trial at 1e6 would
    flatten every other), else for positive values spanning more than a factor of 10."""
    import numpy as np

    vals = np.asarray([] if values is None else values, dtype=float)
    vals = vals[np.isfinite(vals)]
    spread = len(vals) > 1 and vals.min() > 0 and vals.max() / vals.min() > 10
    if metrics.is_perplexity(key) or spread:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def trial_names(runs: pa.Table) -> dict[str, str]:
    """trial_id -> its short name, t003 (the first word of its run name; the trial id without one);
    ``search/t003`` in a table of several searches (``load``'s ``search`` column), whose t003s repeat."""
    names = runs.column("run_name").to_pylist()
    trials = runs.column("trial_id").to_pylist()
    searches = runs.column(SEARCH).to_pylist() if SEARCH in runs.column_names else [None] * len(trials)
    short = [(n or "").split(" ")[0] or t for n, t in zip(names, trials)]
    return {t: f"{s}/{name}" if s and name else name for t, s, name in zip(trials, searches, short)}


def with_trial_names(table, runs: pa.Table):
    """A table (pandas) with its ``trial_id`` column as ``trial``: t003, the name the figures and MLflow use."""
    if "trial_id" not in table.columns:
        return table
    names = trial_names(runs)
    return table.assign(trial_id=table["trial_id"].map(lambda t: names.get(t, t))).rename(columns={"trial_id": "trial"})


def trial_labels(runs: pa.Table) -> dict[str, str]:
    """run_id -> a legend label: the run name ("t003 lr=0.52 dropout=0.31"), else the trial id; led by
    the search's name in a table of several searches."""
    ids = runs.column("run_id").to_pylist()
    names = runs.column("run_name").to_pylist()
    trials = runs.column("trial_id").to_pylist()
    searches = runs.column(SEARCH).to_pylist() if SEARCH in runs.column_names else [None] * len(ids)
    return {i: (f"{s}/" if s else "") + (n or t or i[:8]) for i, n, t, s in zip(ids, names, trials, searches)}
