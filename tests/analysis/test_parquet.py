"""analysis._parquet: the two tables on disk and back, with hand-built tables."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hand_tables import META_KEY, history_table, runs_table

from tunelab.analysis import AnalysisError, search_info
from tunelab.analysis._parquet import read_parquet, to_parquet

T0 = 1_700_000_000_000  # ms
INFO = {"experiment": "ptb", "parent_run_id": "p1", "params": ["lr", "cell"],
        "parent_params": {"metric": "val_acc", "mode": "max"}, "parent_metrics": {"n_infeasible": 2.0}}


def runs() -> pa.Table:
    return runs_table({
        "run_id": ["r1", "r2", "r3"],
        "trial_id": ["a_00000", "a_00001", None],
        "status": ["completed", "diverged", None],
        "start_time": pa.array([T0, T0 + 1000, None], pa.timestamp("ms", tz="UTC")),
        "lr": [0.1, None, 2.0],
        "cell": ["lstm", "gru", None],
        "tie_weights": [True, None, False],
        "last_val_ppl": [95.5, math.inf, None],
        "best_val_ppl": [90.25, None, None],
    }, INFO)


def history() -> pa.Table:
    return history_table([
        ("r1", "val_ppl", 1, 120.0, T0), ("r1", "val_ppl", 2, 95.5, T0 + 5),
        ("r2", "val_ppl", 1, math.inf, T0 + 7), ("r2", "val_loss", 1, math.nan, T0 + 7),
    ])


def test_round_trip_keeps_types_nulls_infinities_and_the_search(tmp_path):
    before = runs(), history()
    to_parquet(before, tmp_path)
    after = read_parquet(tmp_path)
    assert after[0].equals(before[0], check_metadata=True)
    assert after[1].schema == before[1].schema
    values = after[1].column("value").to_pylist()
    assert values[:3] == [120.0, 95.5, math.inf] and math.isnan(values[3])  # NaN is not equal to itself
    assert after[0].column("last_val_ppl").to_pylist() == [95.5, math.inf, None]
    info = search_info(after[0])
    assert (info["metric"], info["mode"], info["params"]) == ("val_acc", "max", ["lr", "cell"])
    assert after[0].schema.metadata[META_KEY] == before[0].schema.metadata[META_KEY]


def test_empty_tables_round_trip_with_their_schema(tmp_path):
    empty_runs, empty_history = runs().slice(0, 0), history_table([])
    to_parquet((empty_runs, empty_history), tmp_path)
    back_runs, back_history = read_parquet(tmp_path)
    assert back_runs.num_rows == back_history.num_rows == 0
    assert back_runs.equals(empty_runs, check_metadata=True) and back_history.schema == empty_history.schema


def test_writes_the_two_named_files_into_a_new_folder(tmp_path):
    out = to_parquet((runs(), history()), tmp_path / "a" / "b")
    assert out == tmp_path / "a" / "b"
    assert sorted(p.name for p in out.iterdir()) == ["history.parquet", "runs.parquet"]
    assert pq.read_table(out / "runs.parquet").num_rows == 3  # plain Parquet: any reader takes it
    assert pq.read_table(out / "history.parquet").num_rows == 4


def test_writing_again_replaces_both_files(tmp_path):
    to_parquet((runs(), history()), tmp_path)
    to_parquet((runs().slice(0, 1), history().slice(0, 2)), tmp_path)
    back_runs, back_history = read_parquet(tmp_path)
    assert back_runs.column("run_id").to_pylist() == ["r1"] and back_history.num_rows == 2


def test_a_missing_file_is_an_analysis_error_naming_it(tmp_path):
    with pytest.raises(AnalysisError, match=r"runs\.parquet does not exist; write it with analysis\.to_parquet"):
        read_parquet(tmp_path / "nowhere")
    to_parquet((runs(), history()), tmp_path)
    (tmp_path / "history.parquet").unlink()
    with pytest.raises(AnalysisError) as err:
        read_parquet(tmp_path)
    assert str(err.value) == f"{tmp_path / 'history.parquet'} does not exist; write it with analysis.to_parquet"


def test_accepts_a_string_path(tmp_path):
    to_parquet((runs(), history()), str(tmp_path))
    assert read_parquet(str(tmp_path))[0].num_rows == 3
