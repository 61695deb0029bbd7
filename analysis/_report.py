"""``report``: one search -> report.md and report.html (tables and figures), logged on its parent run.

What ``tunelab report NAME`` writes. The report is a list of blocks (headings, paragraphs, tables,
figures) rendered twice: Markdown that points at ``figures/*.png``, and a self-contained HTML page with
the PNGs inlined (so it also displays inside the MLflow UI, where relative links do not resolve).
A figure the search has no data for (no FLOP budget, one trial) becomes a one-line note instead.
"""

from __future__ import annotations

import base64
import datetime
import html
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from tunelab.analysis._asha import plot_asha
from tunelab.analysis._classification import classification_blocks, is_classification
from tunelab.analysis._compare import applies
from tunelab.analysis._compare import blocks as comparison_blocks
from tunelab.analysis._curves import plot_curves
from tunelab.analysis._history import plot_optimization_history, plot_slice
from tunelab.analysis._importance import plot_importance
from tunelab.analysis._isoflop import BUDGET_PARAM, plot_isoflop
from tunelab.analysis._load import load
from tunelab.analysis._pareto import plot_pareto
from tunelab.analysis._parquet import to_parquet
from tunelab.analysis._pbt import plot_family_tree, plot_schedules
from tunelab.analysis._plot import Plot, figure_block, with_trial_names
from tunelab.analysis._schema import SEED, search_info
from tunelab.analysis._tables import format_mean_std, seed_table, status_counts, to_html, to_markdown, top_k, trial_table
from tunelab.trainables import REGISTRY
from tunelab.trainables import metrics
from tunelab.trainables import tags

ARTIFACT_PATH = "report"
FIGURES = "figures"
# The page must read inside MLflow's artifact viewer (an iframe about 1,000 px wide) as well as on its
# own: no fixed width; a wide table scrolls sideways inside its own box and long cells wrap; figures
# shrink to the width.
_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:1em auto;padding:0 0.8em;color:#222}
.table{max-width:100%;overflow-x:auto;margin:0.5em 0 0.3em}
table{border-collapse:collapse;font-size:0.8em}th,td{border:1px solid #ccc;padding:2px 6px;vertical-align:top}
td{overflow-wrap:break-word;max-width:22em}th{background:#f3f3f3;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
p.caption,figcaption{font-size:0.85em;color:#444;margin:0.2em 0 1.5em}
figure{margin:1em 0 0}figure img{max-width:100%;height:auto}
code,pre{background:#f6f6f6;padding:1px 4px}pre{overflow-x:auto}"""


def report(
    experiment: str | Sequence[str],
    tracking_uri: str | None = None,
    out_dir: str | Path | None = None,
    parent_run: str | Sequence[str | None] | None = None,
    *,
    log_artifacts: bool = True,
    top: int = 5,
) -> Path:
    """Write report.md and report.html for one search (or several side by side) and log them on its
    parent run (each one's) under ``report/``.

    The report holds: what was searched (trainable, sampler, scheduler, metric), how the trials ended
    (status counts, infeasible configs included), the best ``top`` configs, the per-trial table of seed
    report 000 (best validation metric with the training metric, epoch and wall-clock at that report,
    peak memory, parameter count), mean ± std over seeds for configs run with several seeds, learning
    curves against epochs, wall-clock and FLOPs, ASHA rungs, fANOVA parameter importance, Pareto
    fronts against FLOPs and wall-clock, and for FLOP-budget searches the iso-FLOP fit. Trials labelled
    as experiments (``configs:`` with a ``label`` each) get seed report 000's tables 1-3 and figures 1-8
    (``analysis._compare``). The folder also gets ``figures/`` (PNG and SVG) and ``data/`` (the two
    tables as Parquet).

    Several searches (``load`` given several names: one store, one objective) make one report over
    all their trials, each trial named ``search/t003``.

    Args:
        experiment: the search's name (its MLflow experiment), or several.
        tracking_uri: where MLflow is; None uses MLflow's default.
        out_dir: folder to write into; None is ``./reports/<experiment>`` (the names joined by "+").
        parent_run: one launch of the search (one per search, or None); None is the latest.
        log_artifacts: also log report.md, report.html and figures/ on the parent run under ``report/``.
        top: how many configs the top-k table shows.

    Returns:
        The folder holding report.md and report.html.

    Raises:
        AnalysisError: unknown experiment, a search without trial runs, or searches of different
            objectives.
    """
    runs, history = load(experiment, tracking_uri, parent_run)
    name = experiment if isinstance(experiment, str) else "+".join(experiment)
    out = Path(out_dir) if out_dir is not None else Path("reports") / name
    out.mkdir(parents=True, exist_ok=True)
    to_parquet((runs, history), out / "data")
    blocks = build_blocks(runs, history, top=top)
    for block in blocks:
        if block[0] == "figure":  # the report prints the caption under the figure: not in the image too
            block[1].save(out / FIGURES, caption=False)
    info = search_info(runs)
    (out / "report.md").write_text(render_markdown(blocks))
    images = {b[1].name: (out / FIGURES / f"{b[1].name}.png").read_bytes() for b in blocks if b[0] == "figure"}
    (out / "report.html").write_text(render_html(blocks, title=f"{info['experiment']}: search report", images=images))
    if log_artifacts:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=info["tracking_uri"])
        for search in info.get("searches", [info]):
            parent = search["parent_run_id"]
            client.log_artifact(parent, str(out / "report.md"), ARTIFACT_PATH)
            client.log_artifact(parent, str(out / "report.html"), ARTIFACT_PATH)
            if (out / FIGURES).exists():
                client.log_artifacts(parent, str(out / FIGURES), f"{ARTIFACT_PATH}/{FIGURES}")
    return out


def build_blocks(runs: pa.Table, history: pa.Table, *, top: int = 5) -> list[tuple]:
    """The report's content: ("h", level, text), ("p", text), ("pre", text), ("table", df, caption)
    and ("figure", Plot) blocks, in order.

    Args:
        runs, history: the tables of ``load``.
        top: rows of the top-k table.
    """
    info = search_info(runs)
    metric, mode = info["metric"], info["mode"]
    parent_tags = info["parent_tags"]
    blocks: list[tuple] = [("h", 1, f"Search report: {info.get('experiment', '')}")]
    table = with_trial_names(trial_table(runs, history), runs)
    ranked = table.sort_values(f"best_{metric}", ascending=(mode == "min"), na_position="last")
    facts = [_search_facts(search) for search in info.get("searches", [info])]
    facts.append(f"Objective: {mode}imise `{metric}`. {runs.num_rows} trials ran.")
    if len(ranked) and pd.notna(ranked.iloc[0][f"best_{metric}"]):
        best = ranked.iloc[0]
        facts.append(f"Best trial: `{best['trial']}` with {metric} = {best[f'best_{metric}']:.4g}.")
    blocks.append(("p", " ".join(facts)))
    blocks.append(("p", f"Generated {datetime.datetime.now().isoformat(timespec='seconds')} from "
                        f"`{info.get('tracking_uri')}`."))

    blocks.append(("h", 2, "Optimisation history"))
    blocks.append(figure_block(lambda: plot_optimization_history(runs), "optimisation history"))
    blocks.append(figure_block(lambda: plot_slice(runs), "slice plots"))

    blocks.append(("h", 2, "Trials"))
    blocks.append(("table", status_counts(runs), "How the trials ended. Infeasible configs were rejected "
                   "by the trainable's check before training and have no run of their own."))
    blocks.append(("table", with_trial_names(top_k(runs, history, top), runs),
                   f"The {min(top, runs.num_rows)} best trials by their best {metric}."))
    blocks.append(("table", table, f"Every trial in start order: its varied parameters, its best {metric}, "
                   "and at that same report the training counterpart, epoch and wall-clock seconds; "
                   "peak memory (MB) over the trial and its parameter count."))
    if applies(runs):  # seed 000's tables 1-3 and figures 1-8
        blocks += comparison_blocks(runs, history)
    seeds = seed_table(runs, history)
    if SEED in runs.column_names and (seeds["n"] > 1).any():
        blocks.append(("h", 2, "Repeated configs"))
        blocks.append(("table", format_mean_std(seeds), "Mean ± sample standard deviation over seeds of every "
                       "config (all varied parameters but the seed); n is the number of trials."))

    if is_classification(runs, history):  # seed 001's table and accuracy curves
        blocks += classification_blocks(runs, history)

    blocks.append(("h", 2, "Learning curves"))
    keys = set(history.column("key").unique().to_pylist())
    for x in (metrics.EPOCH, metrics.WALL_S, metrics.FLOPS):
        if x in keys:
            blocks.append(figure_block(lambda x=x: plot_curves(runs, history, x), f"curves against {x}"))

    if parent_tags.get(tags.SCHEDULER) in ("pbt", "pb2"):
        blocks.append(("h", 2, "Population Based Training"))
        blocks.append(figure_block(lambda: plot_schedules(runs, history), "learnt schedules"))
        blocks.append(figure_block(lambda: plot_family_tree(runs, history, metric, mode), "family tree"))

    stopped = metrics.STOPPED_EARLY in runs.column("status").to_pylist()
    if parent_tags.get(tags.SCHEDULER) in ("asha", "hyperband") or stopped:
        blocks.append(("h", 2, "Early stopping"))
        blocks.append(figure_block(lambda: plot_asha(runs, history), "ASHA rungs"))

    blocks.append(("h", 2, "Parameter importance"))
    blocks.append(figure_block(lambda: plot_importance(runs), "parameter importance"))

    blocks.append(("h", 2, "Cost and quality"))
    for x in (metrics.FLOPS, metrics.WALL_S):
        blocks.append(figure_block(lambda x=x: plot_pareto(runs, x), f"Pareto front against {x}"))

    # The trainable's own section (Entry.report_module), looked up by the name the search ran it under.
    entry = REGISTRY.get(parent_tags.get(tags.TRAINABLE))
    section = entry.report_blocks if entry is not None else None
    if section is not None:
        blocks += section(runs, history)

    if BUDGET_PARAM in runs.column_names:
        blocks.append(("h", 2, "Iso-FLOP scaling"))
        block = figure_block(lambda: plot_isoflop(runs), "iso-FLOP fit")
        blocks.append(block)
        if block[0] == "figure":
            blocks.append(("pre", str(block[1].data)))
    return blocks


def _search_facts(info: dict) -> str:
    """One search's parent run, trainable, sampler, scheduler and spec hash, in a sentence."""
    parent_tags = info["parent_tags"]
    return (f"{info.get('experiment')}: parent run `{info.get('parent_run_id')}` ({info.get('parent_run_name')}), "
            f"trainable `{parent_tags.get(tags.TRAINABLE, '?')}`, sampler `{parent_tags.get(tags.SAMPLER, '?')}`, "
            f"scheduler `{parent_tags.get(tags.SCHEDULER, '?')}`, spec hash `{parent_tags.get(tags.SPEC_HASH, '?')}`.")


def render_markdown(blocks: list[tuple]) -> str:
    """Blocks as Markdown; figures link ``figures/<name>.png`` and its SVG."""
    parts = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            parts.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            parts.append(block[1])
        elif kind == "pre":
            parts.append("```\n" + block[1] + "\n```")
        elif kind == "table":
            parts.append(to_markdown(block[1]) + "\n\n" + f"*{_md_escape(block[2])}*")
        elif kind == "figure":
            plot: Plot = block[1]
            parts.append(f"![{plot.name}]({FIGURES}/{plot.name}.png)\n\n"
                         f"*{_md_escape(plot.caption)}* ([SVG]({FIGURES}/{plot.name}.svg))")
    return "\n\n".join(parts) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("*", "\\*").replace("_", "\\_")


def render_html(blocks: list[tuple], title: str, images: dict[str, bytes] | None = None) -> str:
    """Blocks as one self-contained HTML page (PNG figures inlined as data URIs).

    Args:
        blocks: from ``build_blocks``.
        title: the page title.
        images: figure name -> PNG bytes already rendered (without the caption, which the page prints
            once, under it); figures not in it are rendered here.
    """
    parts = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            parts.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
        elif kind == "p":
            parts.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "pre":
            parts.append(f"<pre>{html.escape(block[1])}</pre>")
        elif kind == "table":
            parts.append(f'<div class="table">{to_html(block[1])}</div>\n<p class="caption"><em>{_inline(block[2])}</em></p>')
        elif kind == "figure":
            plot: Plot = block[1]
            png = (images or {}).get(plot.name) or plot.png()
            data = base64.b64encode(png).decode()
            parts.append(f'<figure><img alt="{html.escape(plot.name)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(plot.caption)}</figcaption></figure>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def _inline(text: str) -> str:
    """The little Markdown the paragraphs use (`code`, *emphasis*) as HTML."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", out)
