"""Fixtures the search tests share: the synthetic search file loaded with a test's own results folder."""

from __future__ import annotations

import pytest

from tunelab import spaces

LOAD = spaces.CATALOGUE / "synthetic_load.yaml"


@pytest.fixture
def synthetic(tmp_path):
    """``load(*overrides)``: synthetic_load.yaml with the results (and MLflow) under ``tmp_path/runs``."""

    def load(*overrides: str) -> spaces.Search:
        return spaces.load(LOAD, [f"storage={tmp_path / 'runs'}", *overrides])

    return load
