"""Fixtures of the analysis tests.

- ``store``: the made-up MLflow store of ``fixture_store`` (fast).
- ``real_search``: a real small TPE + ASHA search on PTB (slow: it trains).
- ``arith_search``: a real tiny arithmetic search, GPT and LSTM × 2 seeds (slow: it trains).
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
    from tunelab import search
    from tunelab import spaces

    tmp = tmp_path_factory.mktemp("analysis_real")
    s = spaces.load(spaces.CATALOGUE / "ptb_smoke.yaml", [
        "hidden_size=32", "train_fraction=0.01", "eval_fraction=0.05", "epochs=3", "scheduler.max_t=3",
        "budget.trials=4", f"storage={tmp}",
    ])
    return search.run(s)


@pytest.fixture(scope="session")
def arith_search(ray_session, tmp_path_factory):
    """spaces/arith_sanity.yaml at p = 7 for 300 steps, d = 32: GPT and LSTM, two seeds each, through Ray."""
    from tunelab import search
    from tunelab import spaces

    tmp = tmp_path_factory.mktemp("analysis_arith")
    s = spaces.load(spaces.CATALOGUE / "arith_sanity.yaml", ["p=7", "steps=300", "d_model=32", f"storage={tmp}"])
    return search.run(s)
