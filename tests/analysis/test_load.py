"""MLflow -> Arrow: analysis.load against the fixture store and a real search, checked with MlflowClient."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from fixture_store import EMPTY, GPT, RNN, RNN_TRIALS
from mlflow.tracking import MlflowClient

from tunelab import analysis

DBL_MAX = 1.7976931348623157e308


def _children(client: MlflowClient, parent: str) -> list:
    exp = client.get_run(parent).info.experiment_id
    return client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'", max_results=1000)


def _same(ours: float, theirs: float) -> bool:
    """MLflow's SQL store hands +-inf back as +-DBL_MAX; load turns it into inf again."""
    if math.isinf(ours):
        return abs(theirs) >= DBL_MAX and math.copysign(1, ours) == math.copysign(1, theirs)
    if math.isnan(ours):
        return math.isnan(theirs)
    return ours == theirs


def check_against_client(uri: str, parent: str, runs: pa.Table, history: pa.Table) -> None:
    client = MlflowClient(tracking_uri=uri)
    kids = _children(client, parent)
    assert sorted(runs.column("run_id").to_pylist()) == sorted(r.info.run_id for r in kids)
    ms = history.column("timestamp").cast(pa.int64())  # timestamp[ms] -> ms since the epoch
    hist = history.set_column(history.schema.get_field_index("timestamp"), "timestamp", ms).to_pandas()
    row_of = {rid: i for i, rid in enumerate(runs.column("run_id").to_pylist())}
    for run in kids:
        rid = run.info.run_id
        row = row_of[rid]
        assert runs.column("trial_id")[row].as_py() == run.data.tags["tunelab.trial_id"]
        assert runs.column("status")[row].as_py() == run.data.tags["tunelab.status"]
        for key, latest in run.data.metrics.items():
            theirs = client.get_metric_history(rid, key)
            ours = hist[(hist.run_id == rid) & (hist.key == key)]
            assert list(ours.step) == [m.step for m in theirs], (rid, key)
            assert all(_same(a, m.value) for a, m in zip(ours.value, theirs)), (rid, key)
            assert list(ours.timestamp) == [m.timestamp for m in theirs]
            assert _same(runs.column(f"last_{key}")[row].as_py(), latest), (rid, key)
            if analysis.metric_mode(key):
                finite = [m.value for m in theirs if abs(m.value) < DBL_MAX and not math.isnan(m.value)]
                pick = min if analysis.metric_mode(key) == "min" else max
                assert runs.column(f"best_{key}")[row].as_py() == (pick(finite) if finite else None)
        # Every key the run has and no other.
        assert set(hist[hist.run_id == rid].key) == set(run.data.metrics)


def test_one_row_per_trial_of_the_latest_search(store):
    runs, history = analysis.load(RNN, store.uri)
    assert runs.num_rows == len(RNN_TRIALS)
    assert set(runs.column("parent_run_id").to_pylist()) == {store.rnn_parent}
    assert runs.column("trial_id").to_pylist() == [f"rnn{i:05d}" for i in range(len(RNN_TRIALS))]  # start order
    assert runs.column("status").to_pylist() == [t[5] for t in RNN_TRIALS]
    assert runs.column("iterations").to_pylist() == [t[4] for t in RNN_TRIALS]
    check_against_client(store.uri, store.rnn_parent, runs, history)


def test_an_earlier_launch_by_its_parent_run(store):
    runs, history = analysis.load(RNN, store.uri, parent_run=store.rnn_old_parent)
    assert runs.num_rows == 2
    check_against_client(store.uri, store.rnn_old_parent, runs, history)


def test_params_are_typed_columns(store):
    runs, _ = analysis.load(RNN, store.uri)
    schema = runs.schema
    assert schema.field("lr").type == pa.float64()
    assert schema.field("dropout").type == pa.float64()
    assert schema.field("seed").type == pa.int64()
    assert schema.field("hidden_size").type == pa.int64()
    assert schema.field("cell").type == pa.string()
    assert schema.field("tie_weights").type == pa.bool_()
    assert runs.column("emb_size").null_count == runs.num_rows  # "None"
    assert runs.column("lr").to_pylist() == [t[1] for t in RNN_TRIALS]
    assert analysis.param_columns(runs) == sorted(analysis.param_columns(runs))
    assert analysis.varied_params(runs) == ["cell", "dropout", "lr", "seed"]
    assert analysis.varied_params(runs, exclude=("seed",)) == ["cell", "dropout", "lr"]


def test_typed_column_picks_one_type_per_column():
    assert analysis.typed_column(["1", "2", None]).type == pa.int64()
    assert analysis.typed_column(["1", "2.5", "1e-05"]).to_pylist() == [1.0, 2.5, 1e-05]
    assert analysis.typed_column(["True", "False", "None"]).to_pylist() == [True, False, None]
    assert analysis.typed_column(["1", "lstm"]).to_pylist() == ["1", "lstm"]  # one string: all strings
    assert analysis.typed_column(["[1, 2]", "3"]).type == pa.string()
    assert analysis.typed_column(["1_000"]).type == pa.string()  # float() would take it; we do not


def test_search_info_and_infinite_values(store):
    runs, history = analysis.load(RNN, store.uri)
    info = analysis.search_info(runs)
    assert info["parent_run_id"] == store.rnn_parent
    assert info["metric"] == "val_ppl" and info["mode"] == "min"
    assert info["parent_metrics"]["n_infeasible"] == 2
    assert info["parent_tags"]["tunelab.scheduler"] == "asha"
    diverged = runs.filter(pa.compute.equal(runs.column("status"), "diverged"))
    assert diverged.column("last_val_ppl")[0].as_py() == math.inf
    assert diverged.column("best_val_ppl")[0].as_py() is None  # no finite value to be best


def test_sql_and_client_paths_give_the_same_tables(store):
    sql = analysis.load(GPT, store.uri, method="sql")
    client = analysis.load(GPT, store.uri, method="client")
    assert sql[0].equals(client[0], check_metadata=True)
    assert sql[1].equals(client[1])


def test_parquet_round_trip_keeps_the_search(store, tmp_path):
    runs, history = analysis.load(RNN, store.uri)
    analysis.to_parquet((runs, history), tmp_path / "tables")
    runs2, history2 = analysis.read_parquet(tmp_path / "tables")
    assert runs2.equals(runs, check_metadata=True) and history2.equals(history)
    assert analysis.search_info(runs2)["parent_run_id"] == store.rnn_parent
    with pytest.raises(analysis.AnalysisError):
        analysis.read_parquet(tmp_path / "nothing")


def test_unknown_or_empty_experiment_is_an_analysis_error(store, tmp_path):
    assert issubclass(analysis.AnalysisError, ValueError)
    with pytest.raises(analysis.AnalysisError, match="no MLflow experiment named 'nope'"):
        analysis.load("nope", store.uri)
    with pytest.raises(analysis.AnalysisError, match="no search with trial runs"):
        analysis.load(EMPTY, store.uri)
    with pytest.raises(analysis.AnalysisError, match="has no run"):
        analysis.load(RNN, store.uri, parent_run="0" * 32)
    with pytest.raises(analysis.AnalysisError, match="no trial runs"):
        analysis.load(RNN, store.uri, parent_run=analysis.load(RNN, store.uri)[0].column("run_id")[0].as_py())
    missing = tmp_path / "missing.db"
    with pytest.raises(analysis.AnalysisError, match="no MLflow database"):
        analysis.load(RNN, f"sqlite:///{missing}")
    assert not missing.exists()  # not created by accident


def test_import_does_not_pull_in_matplotlib():
    code = "import sys, tunelab.analysis; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2]).returncode == 0


@pytest.mark.slow
def test_real_search_loads_one_row_per_trial(real_search):
    runs, history = analysis.load(real_search.name, real_search.tracking_uri)
    assert runs.num_rows == len(real_search.trials)
    assert sorted(runs.column("trial_id").to_pylist()) == sorted(t.trial_id for t in real_search.trials)
    assert set(runs.column("parent_run_id").to_pylist()) == {real_search.parent_run_id}
    assert runs.schema.field("hidden_size").type == pa.int64() and runs.column("hidden_size").to_pylist()[0] == 32
    check_against_client(real_search.tracking_uri, real_search.parent_run_id, runs, history)
