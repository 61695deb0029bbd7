"""The two tables of ``load`` on disk: ``runs.parquet`` and ``history.parquet`` in one folder.

The search's description lives in the schema metadata of ``runs`` and survives the round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tunelab.analysis._errors import AnalysisError

RUNS_FILE = "runs.parquet"
HISTORY_FILE = "history.parquet"


def to_parquet(tables: Sequence[pa.Table], directory: str | Path) -> Path:
    """Write ``(runs, history)`` as ``runs.parquet`` and ``history.parquet``.

    Args:
        tables: the pair ``load`` returns.
        directory: folder to write into (created if missing; existing files are replaced).

    Returns:
        The folder.
    """
    runs, history = tables
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(runs, out / RUNS_FILE)
    pq.write_table(history, out / HISTORY_FILE)
    return out


def read_parquet(directory: str | Path) -> tuple[pa.Table, pa.Table]:
    """Read back ``(runs, history)`` written by ``to_parquet``.

    Args:
        directory: the folder ``to_parquet`` wrote.

    Raises:
        AnalysisError: either file is missing.
    """
    d = Path(directory)
    for name in (RUNS_FILE, HISTORY_FILE):
        if not (d / name).exists():
            raise AnalysisError(f"{d / name} does not exist; write it with analysis.to_parquet")
    return pq.read_table(d / RUNS_FILE), pq.read_table(d / HISTORY_FILE)
