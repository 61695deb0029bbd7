"""A GPT's attention maps (seed report 002, question 8): read back from a trial's run, drawn as a grid.

An arithmetic GPT trial leaves ``attention.json`` on its MLflow run (logged by the driver from its last
checkpoint): the attention weights of every layer and head on two training equations,
(samples, layers, heads, S, S), and the equations' tokens. ``plot_attention`` draws one sample as a
layers × heads grid of S × S maps, the tokens on both axes.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from tunelab.analysis._errors import AnalysisError
from tunelab.analysis._plot import Plot, new_figure
from tunelab.analysis._schema import search_info
from tunelab.trainables.arith.config import ATTENTION_ARTIFACT


@dataclasses.dataclass
class AttentionMaps:
    """Attention weights of one trial.

    Attributes:
        weights: (samples, layers, heads, S, S); row i is what position i attends to (causal: j <= i).
        tokens: each sample's S input tokens.
        step: the optimizer step they were taken at (the trial's last).
        run_id: the trial's run.
        label: the trial's run name.
    """

    weights: np.ndarray
    tokens: list[list[str]]
    step: int
    run_id: str
    label: str


def load_attention(runs: pa.Table, run: str | None = None) -> AttentionMaps:
    """The attention maps a trial logged.

    Args:
        runs: the ``runs`` table of ``load`` (it knows the tracking URI).
        run: a run id or trial id; None takes the trial with the best ``val_acc`` among those that
            logged maps.

    Raises:
        AnalysisError: the trial (or, with ``run`` None, every trial) has no attention maps.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=search_info(runs)["tracking_uri"])
    ids = runs.column("run_id").to_pylist()
    names = dict(zip(ids, runs.column("run_name").to_pylist()))
    if run is not None:
        by_trial = dict(zip(runs.column("trial_id").to_pylist(), ids))
        candidates = [by_trial.get(run, run)]
    else:
        score = runs.column("best_val_acc").to_pylist() if "best_val_acc" in runs.column_names else [0] * len(ids)
        candidates = [r for _, r in sorted(zip([-(s or 0) for s in score], ids), key=lambda t: t[0])]
    for run_id in candidates:
        if not any(a.path == ATTENTION_ARTIFACT for a in client.list_artifacts(run_id)):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, ATTENTION_ARTIFACT, tmp)
            maps = json.loads(Path(path).read_text())
        return AttentionMaps(np.asarray(maps["weights"], dtype=float), maps["tokens"], int(maps["step"]),
                             run_id, names.get(run_id) or run_id)
    which = f"trial {run!r}" if run is not None else "no trial of this search"
    raise AnalysisError(f"{which} logged attention maps ({ATTENTION_ARTIFACT}: GPT trials of the arith trainable "
                        "that ran to their end)")


def plot_attention(maps: AttentionMaps, sample: int = 0) -> Plot:
    """One sample's attention weights: a grid of layers (rows) × heads (columns), tokens on the axes.

    Args:
        maps: from ``load_attention``.
        sample: which of the samples (0 or 1).
    """
    weights = maps.weights[sample]
    layers, heads, size, _ = weights.shape
    tokens = maps.tokens[sample]
    fig, axes = new_figure(ncols=heads, nrows=layers, width=2.4, height=2.4)
    image = None
    for i in range(layers):
        for j in range(heads):
            ax = axes[i * heads + j]
            image = ax.imshow(weights[i, j], vmin=0.0, vmax=1.0, cmap="viridis")
            ax.set_xticks(range(size), tokens, fontsize=7, rotation=90)
            ax.set_yticks(range(size), tokens, fontsize=7)
            ax.set_title(f"layer {i + 1}, head {j + 1}", fontsize=8)
            ax.set_xlabel("attended token (key)", fontsize=7)
            ax.set_ylabel("attending token (query)", fontsize=7)
    fig.colorbar(image, ax=axes, label="attention weight", shrink=0.8)
    text = " ".join(tokens)
    caption = (f"Attention weights of {maps.label} on the training equation “{text}” at step {maps.step}: "
               f"one map per layer (rows) and head (columns); row i is how position i spreads its attention "
               "over positions up to its own.")
    return Plot(fig, caption, f"attention_{sample}", data=weights)
