"""Small ``runs`` and ``history`` tables built by hand, laid out as ``analysis.load`` builds them.

For the tests of what the analysis modules decide from a table alone (its columns and the search
description in its schema metadata), without an MLflow store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from tunelab.analysis._load import HISTORY_SCHEMA

# The schema metadata key load writes the search's description under; spelt out, not imported, so a
# change to it (which would orphan every Parquet file written before) fails these tests.
META_KEY = b"tunelab"


def runs_table(columns: Mapping[str, pa.Array | list], info: Mapping[str, Any] | None = None) -> pa.Table:
    """A runs table with ``columns`` and, unless None, ``info`` as JSON under the ``tunelab`` metadata key.

    Args:
        columns: column name -> values (lists are typed by pyarrow).
        info: the search's description, as ``load`` stores it (``params``, ``parent_params``...).
    """
    table = pa.table(dict(columns))
    if info is None:
        return table
    return table.replace_schema_metadata({META_KEY: json.dumps(info).encode()})


def history_table(rows: Iterable[tuple[str, str, int, float, int]]) -> pa.Table:
    """A history table from ``(run_id, key, step, value, timestamp ms)`` rows, in ``load``'s schema."""
    cols = list(zip(*rows)) or [[] for _ in HISTORY_SCHEMA]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, HISTORY_SCHEMA)], schema=HISTORY_SCHEMA)
