"""Shared fixtures: the PTB location and one Ray instance for the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TUNELAB_DATA", ROOT.parent / "shared" / "data")).resolve()
os.environ.setdefault("TUNELAB_DATA", str(SHARED_DATA))
# Ray's worker processes import the project from the working tree, not from an installed copy only.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder holding ptb/ and tinyshakespeare/ (../shared/data in this repository's CI)."""
    if not (SHARED_DATA / "ptb" / "ptb.train.txt").exists():
        raise RuntimeError(f"PTB not found under {SHARED_DATA}; set TUNELAB_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance shared by every test that runs trials (2 cores: starting Ray is costly)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
