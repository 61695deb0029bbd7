"""The data a search trains on: loaded once on the driver (``load_data``; it goes to the trials
through Ray's object store), and described as an MLflow dataset input of its parent and child runs.

MLflow shows a run's dataset inputs in the runs table (the Dataset column) and on the run's page, with
a digest that tells two corpora apart. What the trials get from the driver (``Entry.load_data``) is
described here without re-reading it: Penn Treebank by the sha256 sums its loader checked, a token
folder by its ``meta.json``. A trainable without data (synthetic) has no input.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag

from tunelab import spaces
from tunelab import trainables

from tunelab.trainables.gpt.tokens import META, TokenData
from tunelab.trainables.rnn.data import SHA256, PTBData

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
    dataset = describe(data)
    return [DatasetInput(dataset, tags=[InputTag(CONTEXT_TAG, "training")])] if dataset is not None else []


def describe(data: Any) -> Dataset | None:
    """An MLflow ``Dataset`` (name, digest, source, profile) for Penn Treebank or a token folder."""
    if isinstance(data, PTBData):
        digest = hashlib.sha256("".join(SHA256[s] for s in ("train", "valid", "test")).encode()).hexdigest()
        profile = {"tokens": {s: int(len(getattr(data, s))) for s in ("train", "valid", "test")},
                   "vocab_size": data.vocab_size, "sha256": SHA256}
        return Dataset("ptb", digest[:16], "local", json.dumps({"uri": data.source}),
                       schema=json.dumps({"files": [f"ptb.{s}.txt" for s in ("train", "valid", "test")]}),
                       profile=json.dumps(profile))
    if isinstance(data, TokenData):
        meta = {"tokenizer": data.tokenizer, "vocab_size": data.vocab_size, "dtype": data.dtype,
                "splits": dict(data.splits)}
        digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()
        name = data.path.rstrip("/").rsplit("/", 1)[-1]
        return Dataset(name, digest[:16], "local", json.dumps({"uri": data.path}),
                       schema=json.dumps({"files": [*(f"{s}.bin" for s in data.splits), META]}),
                       profile=json.dumps({"tokens": meta["splits"], "vocab_size": data.vocab_size,
                                           "tokenizer": data.tokenizer}))
    return None
