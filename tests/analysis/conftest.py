"""Fixtures of the analysis tests.

- ``store``: the made-up MLflow store of ``fixture_store`` (fast).
- ``real_search``: a real small TPE + ASHA search on PTB (slow: it trains).
"""

from __future__ import annotations

import pytest
from fixture_store import Store, build_store


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Store:
    """The made-up MLflow store (see the module docstring)."""
    return build_store(tmp_path_factory.mktemp("analysis_store"))


@pytest.fixture(scope="session")
def real_search(ray_session, data_dir, tmp_path_factory):
    """A real small search: 4 trials of a 32-wide LSTM/GRU on 1% of PTB, TPE + ASHA over 3 epochs."""
    import search
    import spaces

    tmp = tmp_path_factory.mktemp("analysis_real")
    s = spaces.load(spaces.CATALOGUE / "ptb_smoke.yaml", [
        "hidden_size=32", "train_fraction=0.01", "eval_fraction=0.05", "epochs=3", "scheduler.max_t=3",
        "budget.trials=4", f"storage={tmp}",
    ])
    return search.run(s)
