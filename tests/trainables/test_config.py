"""trainables._config: the size constraints the RNN and ViT families share, with made-up sizes."""

from __future__ import annotations

import pytest

from tunelab.trainables import REGISTRY
from tunelab.trainables._config import SIZE_CONSTRAINTS, size_violation


def test_a_size_inside_every_window_breaks_nothing():
    assert size_violation("rnn", {}, 17.75, 4_653_200) is None
    assert size_violation("rnn", {"model_mb": [17.75, 17.75], "params": [4_653_200, 4_653_200]}, 17.75, 4_653_200) is None


def test_the_first_broken_constraint_is_named_with_its_numbers():
    assert size_violation("rnn", {"model_mb": [50, 98]}, 17.7512, 4_653_200) == "model_mb 17.75 outside [50.00, 98.00]"
    assert size_violation("vit", {"params": [0, 1e6]}, 1.0, 4_653_200) == "params 4,653,200 outside [0, 1,000,000]"
    both = {"params": [0, 1], "model_mb": [0, 1]}
    assert size_violation("vit", both, 2.0, 5).startswith("params 5 outside")  # in the search file's order


def test_a_malformed_bound_or_an_unknown_constraint_says_so():
    assert size_violation("rnn", {"params": 5}, 1.0, 10) == "constraint params must be [lo, hi], got 5"
    assert size_violation("vit", {"gpu_memory": 0.5}, 1.0, 10) == (
        "unknown constraint 'gpu_memory'; the vit trainable knows model_mb, params")


@pytest.mark.parametrize("family", ["rnn", "vit"])
def test_the_size_families_name_the_constraints_size_violation_knows(family):
    assert REGISTRY[family].constraint_names == SIZE_CONSTRAINTS == ("model_mb", "params")
