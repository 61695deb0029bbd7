"""The report's tables, their numbers recomputed straight from MlflowClient."""

from __future__ import annotations

import math
import statistics

import pandas as pd
import pytest
from fixture_store import RNN, RNN_TRIALS
from mlflow.tracking import MlflowClient

from tunelab import analysis
from tunelab.trainables import metrics

DBL_MAX = 1.7976931348623157e308


@pytest.fixture(scope="module")
def tables(store):
    return analysis.load(RNN, store.uri)


def expected_rows(uri: str, parent: str) -> dict[str, dict]:
    """trial_id -> what seed report 000's table should say, from get_metric_history alone."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_run(parent).info.experiment_id
    out = {}
    for run in client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"):
        rid = run.info.run_id

        def at(key, rid=rid):
            return {m.step: m.value for m in client.get_metric_history(rid, key)}

        val = {s: v for s, v in at("val_ppl").items() if abs(v) < DBL_MAX and not math.isnan(v)}
        row = {"status": run.data.tags["tunelab.status"],
               "peak_mem_mb": max(at("mem_peak_mb").values()), "n_params": at(metrics.PARAMS)[max(at(metrics.PARAMS))]}
        if val:
            step = min(val, key=lambda s: (val[s], s))
            row.update(best_val_ppl=val[step], train_ppl_at_best=at("train_ppl")[step],
                       epoch_at_best=at("epoch")[step], wall_s_at_best=at("wall_s")[step])
        out[run.data.tags["tunelab.trial_id"]] = row
    return out


def check_trial_table(table: pd.DataFrame, expected: dict[str, dict]) -> None:
    assert sorted(table.trial_id) == sorted(expected)
    for _, row in table.iterrows():
        want = expected[row.trial_id]
        for col in ("status", "peak_mem_mb", "n_params", "best_val_ppl", "train_ppl_at_best", "epoch_at_best",
                    "wall_s_at_best"):
            if col in want:
                assert row[col] == want[col], (row.trial_id, col)
            else:
                assert math.isnan(row[col]), (row.trial_id, col)


def test_trial_table_is_seed_000s_table(store, tables):
    table = analysis.trial_table(*tables)
    assert list(table.columns) == [
        "trial_id", "status", "cell", "dropout", "lr", "seed", "best_val_ppl", "train_ppl_at_best",
        "epoch_at_best", "wall_s_at_best", "peak_mem_mb", "n_params",
    ]
    check_trial_table(table, expected_rows(store.uri, store.rnn_parent))
    # The fixture's validation loss turns up after an epoch that depends on dropout: the best is not
    # always the last epoch, so "train PPL at the best epoch" differs from the last train PPL.
    last = dict(zip(tables[0].column("trial_id").to_pylist(), tables[0].column("last_train_ppl").to_pylist()))
    assert any(r.train_ppl_at_best != last[r.trial_id] for r in table.itertuples() if not math.isnan(r.best_val_ppl))


def test_sorted_trial_table_and_top_k(tables):
    table = analysis.trial_table(*tables, sort=True)
    best = [v for v in table.best_val_ppl if not math.isnan(v)]
    assert best == sorted(best) and math.isnan(table.best_val_ppl.iloc[-1])  # the diverged trial last
    top = analysis.top_k(*tables, k=3)
    assert list(top["rank"]) == [1, 2, 3]
    assert list(top.trial_id) == list(table.trial_id[:3])


def test_seed_table_is_mean_and_std_over_seeds(store, tables):
    seeds = analysis.seed_table(*tables)
    expected = expected_rows(store.uri, store.rnn_parent)
    repeated = [f"rnn{i:05d}" for i, t in enumerate(RNN_TRIALS) if t[:3] == ("lstm", 1.0, 0.2)]
    values = [expected[t]["best_val_ppl"] for t in repeated]
    row = seeds[(seeds.cell == "lstm") & (seeds.lr == 1.0) & (seeds.dropout == 0.2)].iloc[0]
    assert row.n == 3
    assert row.best_val_ppl_mean == pytest.approx(statistics.mean(values))
    assert row.best_val_ppl_std == pytest.approx(statistics.stdev(values))
    assert "seed" not in seeds.columns
    assert len(seeds) == len({t[:3] for t in RNN_TRIALS})
    single = seeds[seeds.n == 1]
    assert single.best_val_ppl_std.isna().all()
    text = analysis.format_mean_std(seeds)
    assert "best_val_ppl" in text.columns and "best_val_ppl_mean" not in text.columns
    assert text[text.n == 3].best_val_ppl.iloc[0] == f"{row.best_val_ppl_mean:.4g} ± {row.best_val_ppl_std:.4g}"


def test_status_counts_include_infeasible_from_the_parent(store, tables):
    counts = dict(zip(*analysis.status_counts(tables[0]).to_dict("list").values()))
    client = MlflowClient(tracking_uri=store.uri)
    parent = client.get_run(store.rnn_parent)
    kids = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{store.rnn_parent}'")
    for status in ("completed", "stopped_early", "diverged", "oom", "error"):
        assert counts[status] == sum(r.data.tags["tunelab.status"] == status for r in kids)
    assert counts["infeasible"] == parent.data.metrics["n_infeasible"] == 2
    assert list(counts) == ["completed", "stopped_early", "diverged", "oom", "infeasible", "error"]


def test_markdown_and_html_rendering():
    df = pd.DataFrame({"name": ["a|b", "<c>"], "x": [1.0, 0.123456], "n": [3, 4], "flag": [True, False]})
    md = analysis.to_markdown(df).splitlines()
    assert md[0] == "| name | x | n | flag |"
    assert md[1] == "|---|---:|---:|---|"
    assert md[2] == "| a\\|b | 1 | 3 | True |"
    assert md[3] == "| <c> | 0.1235 | 4 | False |"
    html = analysis.to_html(df)
    assert html.count("<tr>") == 3 and "&lt;c&gt;" in html and '<td class="num">0.1235</td>' in html


@pytest.mark.slow
def test_trial_table_of_a_real_search(real_search):
    runs, history = analysis.load(real_search.name, real_search.tracking_uri)
    check_trial_table(analysis.trial_table(runs, history),
                      expected_rows(real_search.tracking_uri, real_search.parent_run_id))
    counts = analysis.status_counts(runs).set_index("status")["count"]
    # The table lists interrupted trials only when there are some; the search's counts always do.
    assert counts.to_dict() == {k: v for k, v in real_search.counts().items() if k != "interrupted" or v}
