"""The data a search trains on: loaded once on the driver (``load_data``; it goes to the trials
through Ray's object store), and described as an MLflow dataset input of its parent and child runs.

MLflow shows a run's dataset inputs in the runs table (the Dataset column) and on the run's page, with
a digest that tells two corpora apart. What the trials get from the driver (``Entry.load_data``) is
described here as it describes itself (``dataset_record()``: Penn Treebank by the sha256 sums its
loader checked, a token folder by its ``meta.json``), without re-reading it. Data that does not
describe itself (synthetic, a lab's) has no input.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tunelab import spaces
from tunelab import trainables

if TYPE_CHECKING:
    from mlflow.entities import Dataset, DatasetInput


CONTEXT_TAG = "mlflow.data.context"  # MLflow's input tag for the role of a dataset


def load_data(search: spaces.Search) -> Any:
    """The trainable's data, loaded once on the driver (it goes to the trials through the object store).

    Raises:
        spaces.SpecError: naming ``data``, before anything is started or written.
    """
    try:
        return search.entry.load_data(search.spec.data.model_dump())
    except trainables.DataError as exc:
        raise spaces.SpecError(search.file, "data", str(exc)) from None


def dataset_inputs(data: Any) -> list[DatasetInput]:
    """``[DatasetInput]`` describing ``data`` (what ``Entry.load_data`` returned), or ``[]``."""
    from mlflow.entities import DatasetInput, InputTag  # here: load_data serves tunelab train, without MLflow

    dataset = describe(data)
    return [DatasetInput(dataset, tags=[InputTag(CONTEXT_TAG, "training")])] if dataset is not None else []


def describe(data: Any) -> Dataset | None:
    """An MLflow ``Dataset`` (name, digest, source, schema, profile) for data that describes itself
    (``trainables._data.DatasetRecord``: Penn Treebank, a token folder), else None."""
    describe_self = getattr(data, "dataset_record", None)
    if describe_self is None:
        return None
    from mlflow.entities import Dataset

    record = describe_self()
    return Dataset(record.name, record.digest, "local", json.dumps({"uri": record.uri}),
                   schema=json.dumps({"files": list(record.files)}), profile=json.dumps(record.profile))
