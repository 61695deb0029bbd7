"""search/_inputs.py: the data as MLflow dataset inputs, from what the data says of itself."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from tunelab import spaces
from tunelab.search import _inputs
from tunelab.trainables import DatasetRecord
from tunelab.trainables.gpt.tokens import TokenData
from tunelab.trainables.rnn.data import SHA256, PTBData


def test_penn_treebank_is_named_by_the_checksums_its_loader_checked():
    data = PTBData(np.zeros(5, np.int32), np.zeros(2, np.int32), np.zeros(3, np.int32), ("a", "<eos>"), "/d/ptb")
    (given,) = _inputs.dataset_inputs(data)
    dataset = given.dataset
    digest = hashlib.sha256((SHA256["train"] + SHA256["valid"] + SHA256["test"]).encode()).hexdigest()[:16]
    assert (dataset.name, dataset.digest, json.loads(dataset.source)) == ("ptb", digest, {"uri": "/d/ptb"})
    assert json.loads(dataset.schema) == {"files": ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"]}
    assert json.loads(dataset.profile)["tokens"] == {"train": 5, "valid": 2, "test": 3}
    assert [(t.key, t.value) for t in given.tags] == [("mlflow.data.context", "training")]


def test_a_token_folder_is_named_by_its_description_and_two_tokenisations_differ():
    a = TokenData("/data/shakespeare_char/", "char", 65, "uint16", {"train": 100, "val": 10})
    b = TokenData("/data/shakespeare_char", "gpt2", 50257, "uint16", {"train": 100, "val": 10})
    da, db = _inputs.describe(a), _inputs.describe(b)
    assert da.name == db.name == "shakespeare_char" and da.digest != db.digest
    assert json.loads(da.schema) == {"files": ["train.bin", "val.bin", "meta.json"]}
    assert json.loads(da.profile) == {"tokens": {"train": 100, "val": 10}, "vocab_size": 65, "tokenizer": "char"}


def test_a_lab_s_data_describes_itself_and_data_that_does_not_has_no_input():
    class Mine:
        def dataset_record(self):
            return DatasetRecord("mine", "abc", "s3://bucket/mine", ("x.parquet",), {"rows": 3})

    dataset = _inputs.describe(Mine())
    assert (dataset.name, dataset.digest, json.loads(dataset.profile)) == ("mine", "abc", {"rows": 3})
    assert _inputs.dataset_inputs(None) == [] and _inputs.dataset_inputs({"rows": [1, 2]}) == []


def test_data_that_cannot_be_loaded_is_a_spec_error_naming_data(synthetic):
    s = spaces.load("ptb_smoke", ["data.corpus=wiki"])
    with pytest.raises(spaces.SpecError) as caught:
        _inputs.load_data(s)
    assert (caught.value.file, caught.value.field, caught.value.message) == (
        s.file, "data", "data.corpus: the rnn trainable reads Penn Treebank only ('ptb'), got 'wiki'")
    assert _inputs.load_data(synthetic()) is None  # synthetic needs no data
