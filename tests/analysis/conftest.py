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


@pytest.fixture(scope="session")
def seed000_searches(ray_session, data_dir, tmp_path_factory):
    """Seed report 000's two halves, tiny, in one store: spaces/seed000_lstm.yaml and seed000_gpt.yaml
    at 1 epoch on 0.3% of PTB's training words, narrow models, two experiments each (IDs 1 and 9: an
    LSTM of 1 and 2 layers; 6 and 11: a GPT-1 of 1 and 2 layers)."""
    from tunelab import search
    from tunelab import spaces

    tmp = tmp_path_factory.mktemp("analysis_seed000")
    common = ["epochs=1", "train_fraction=0.003", "resources.cpu=1", "budget.max_concurrent=2", f"storage={tmp}"]
    lstm = spaces.load(spaces.CATALOGUE / "seed000_lstm.yaml", [
        *common, "hidden_size=16", "eval_fraction=0.05",
        "configs=[{label: '1', num_layers: 1, optimizer: adam}, {label: '9', num_layers: 2, optimizer: adamw}]"])
    gpt = spaces.load(spaces.CATALOGUE / "seed000_gpt.yaml", [
        *common, "n_embd=16", "n_head=2",
        "configs=[{label: '6', n_layer: 1, optimizer: adamw}, {label: '11', n_layer: 2, optimizer: adamw}]"])
    return search.run(lstm), search.run(gpt)
