"""analysis.load on a PostgreSQL store: the bulk SQL path gives what MlflowClient gives.

The fixture store (``fixture_store``) is written into a database of the session's PostgreSQL server
(tests/_servers.py), then read back both ways.
"""

from __future__ import annotations

import pytest
from fixture_store import GPT, RNN, build_store
from test_load import check_against_client

from tunelab import analysis

pytestmark = pytest.mark.slow  # starts a PostgreSQL server


@pytest.fixture(scope="module")
def pg_store(postgres, tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("pg_store"), postgres.create_database("analysis_fixture"))


def test_the_sql_path_reads_postgresql(pg_store):
    assert pg_store.uri.startswith("postgresql://")
    runs, history = analysis.load(RNN, pg_store.uri, method="sql")
    assert runs.column("trial_id").to_pylist() == [f"rnn{i:05d}" for i in range(8)]
    check_against_client(pg_store.uri, pg_store.rnn_parent, runs, history)


@pytest.mark.parametrize("experiment", [RNN, GPT])
def test_sql_and_client_paths_give_the_same_tables_on_postgresql(pg_store, experiment):
    sql = analysis.load(experiment, pg_store.uri)  # auto: SQL for a postgresql:// URI
    client = analysis.load(experiment, pg_store.uri, method="client")
    assert sql[0].equals(client[0], check_metadata=True)
    assert sql[1].equals(client[1])


def test_postgresql_and_sqlite_stores_give_the_same_numbers(pg_store, store):
    pg_runs, pg_hist = analysis.load(RNN, pg_store.uri)
    lite_runs, lite_hist = analysis.load(RNN, store.uri)
    ids = ("run_id", "parent_run_id", "end_time", "duration_s")  # new ids; ended when written
    keep = [c for c in pg_runs.column_names if c not in ids]
    assert pg_runs.select(keep).equals(lite_runs.select(keep))
    # The histories differ only in run ids: map one onto the other through the trial ids.
    pg_of = dict(zip(pg_runs.column("run_id").to_pylist(), pg_runs.column("trial_id").to_pylist()))
    lite_of = dict(zip(lite_runs.column("run_id").to_pylist(), lite_runs.column("trial_id").to_pylist()))

    def rows(history, trial_of):
        cols = (history.column(c).to_pylist() for c in ("run_id", "key", "step", "value", "timestamp"))
        return sorted((trial_of[r], *rest) for r, *rest in zip(*cols))

    assert rows(pg_hist, pg_of) == rows(lite_hist, lite_of)
