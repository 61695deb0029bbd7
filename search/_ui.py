"""How a search opens in the MLflow UI (3.17): its runs table, sorted by the objective, with the
columns that matter.

What MLflow 3.17's UI reads (from its JavaScript bundle, ``mlflow/server/js/build``; the saved view's
tag, URL key and format are undocumented: ``tunelab._private`` holds them, with a canary):

- The experiment's landing page follows the *workflow type*: the URL's ``workflowType`` parameter
  (``genai`` or ``machine_learning``), else the browser's last choice (localStorage), else ``genai``,
  which lands on the GenAI overview. The experiment tag ``mlflow.experimentKind`` names the kind
  (``custom_model_development`` is model training), but with the UI's feature flag as shipped the
  landing page ignores it; we set it anyway (it is the documented marker, and other versions read it)
  and put ``workflowType=machine_learning`` in every URL we print.
- ``viewStateShareKey=K`` loads a saved view, the experiment tag ``mlflow.sharedViewState.K``: sort
  order, search filter and table/chart layout (visible columns, their order, runs shown in charts).
  Expanded rows are left out of a saved view by design (``runsExpanded``), so a parent run opens
  collapsed: one click shows its trials.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from urllib.parse import urlencode

from mlflow.tracking import MlflowClient

from tunelab import _private
from tunelab.trainables import metrics
from tunelab.trainables import tags

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
VIEW_KEY = "tunelab"
VIEW_TAG = _private.view_tag(VIEW_KEY)
WORKFLOW = "machine_learning"  # MLflow's "Model training" side of the UI


def sort_metric(metric: str) -> str:
    """The metric the runs table sorts by: the running best of the objective where trials report one
    (``best_val_ppl``; the parent's progress curve ends on the search's best under the same name),
    else the objective."""
    best = metrics.best_so_far(metric)
    return best if best in metrics.ALL else metric


def view_state(metric: str, mode: str, sampled: Iterable[str]) -> dict:
    """The runs table's saved view: sorted by the objective, with it, the sampled parameters and
    ``tunelab.status`` as columns (MLflow column keys: ``metrics.`name```, ``params.`name```, ...)."""
    key = sort_metric(metric)
    shown = [("metrics", key), *([("metrics", metric)] if key != metric else []),
             *(("params", p) for p in sampled), ("tags", tags.STATUS), ("attributes", "Dataset")]
    columns = [f"{kind}.`{name}`" for kind, name in shown]
    return {
        "searchFilter": "", "orderByKey": f"metrics.`{key}`", "orderByAsc": mode == "min", "startTime": "ALL",
        "lifecycleFilter": "Active", "modelVersionFilter": "All Runs", "datasetsFilter": [],
        "selectedColumns": columns, "columnOrder": columns, "runsHiddenMode": "SHOW_ALL",
    }


def save_view(client: MlflowClient, experiment_id: str, metric: str, mode: str, sampled: Iterable[str]) -> None:
    """Mark the experiment as model-training work and save the ``tunelab`` view of its runs table
    (each launch of a search rewrites it, with its own sampled parameters)."""
    envelope = _private.view_envelope(f"tunelab: trials by {sort_metric(metric)}",
                                      view_state(metric, mode, list(sampled)), int(time.time() * 1000))
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    client.set_experiment_tag(experiment_id, VIEW_TAG, envelope)


def runs_url(base: str, experiment_id: str | None) -> str:
    """The URL of an experiment's runs table in the tunelab view (the experiment list without an id)."""
    base = base.rstrip("/")
    if experiment_id is None:
        return f"{base}/#/experiments?{urlencode({_private.WORKFLOW_URL_KEY: WORKFLOW})}"
    query = urlencode({_private.WORKFLOW_URL_KEY: WORKFLOW, _private.VIEW_URL_KEY: VIEW_KEY})
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"
