"""Fixtures the search tests share: the synthetic search file loaded with a test's own results folder,
and one tiny real search whose records the slow tests read, and copy before they change anything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tunelab import spaces
from tunelab.search._paths import LOCK_FILE, SEARCH_FILE, STATE_FILE

from _tiny import TINY

LOAD = spaces.CATALOGUE / "synthetic_load.yaml"


@pytest.fixture
def synthetic(tmp_path):
    """``load(*overrides)``: synthetic_load.yaml with the results (and MLflow) under ``tmp_path/runs``."""

    def load(*overrides: str) -> spaces.Search:
        return spaces.load(LOAD, [f"storage={tmp_path / 'runs'}", *overrides])

    return load


@pytest.fixture(scope="session")
def tiny_search(ray_session, tmp_path_factory):
    """The Outcome of the ``_tiny.TINY`` search, run once for the session; read it, never change it."""
    from tunelab import search

    storage = tmp_path_factory.mktemp("tiny")
    return search.run(spaces.load(LOAD, [*TINY, f"storage={storage}"]))


@pytest.fixture
def tiny_copy(tiny_search, tmp_path) -> Path:
    """A copy of the tiny search's folder and MLflow store under ``tmp_path/runs`` (its files pointing
    at the copies), for a test that changes them; the copied folder."""
    src, root = tiny_search.experiment_dir, tmp_path / "runs"
    exp_dir = root / src.name
    shutil.copytree(src, exp_dir, ignore=shutil.ignore_patterns(LOCK_FILE))
    shutil.copy(src.parent / "mlflow.db", root / "mlflow.db")
    state = json.loads((exp_dir / STATE_FILE).read_text())
    (exp_dir / STATE_FILE).write_text(json.dumps({**state, "tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}))
    resolved = yaml.safe_load((exp_dir / SEARCH_FILE).read_text())
    (exp_dir / SEARCH_FILE).write_text(yaml.safe_dump({**resolved, "storage": str(root)}, sort_keys=False))
    return exp_dir
