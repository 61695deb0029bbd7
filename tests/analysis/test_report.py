"""analysis.report: report.md and report.html written and logged on the search's parent run."""

from __future__ import annotations

import pytest
from fixture_store import EMPTY, GPT, RNN
from mlflow.tracking import MlflowClient

from tunelab import analysis


def artifacts(uri: str, run_id: str, path: str = "report") -> set[str]:
    client = MlflowClient(tracking_uri=uri)
    out = set()
    for a in client.list_artifacts(run_id, path):
        out |= artifacts(uri, run_id, a.path) if a.is_dir else {a.path}
    return out


def check_report(out, uri: str, parent: str) -> str:
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures and all((out / "figures" / f).stat().st_size > 5000 for f in figures)
    for name in figures:
        assert f"(figures/{name})" in md
    assert html.count("data:image/png;base64,") == len(figures)
    assert (out / "data" / "runs.parquet").exists() and (out / "data" / "history.parquet").exists()
    logged = artifacts(uri, parent)
    assert {"report/report.md", "report/report.html"} <= logged
    assert {f"report/figures/{f}" for f in figures} <= logged
    return md


def test_report_of_an_rnn_search(store, tmp_path):
    out = analysis.report(RNN, store.uri, tmp_path / "rnn")
    assert out == tmp_path / "rnn"
    md = check_report(out, store.uri, store.rnn_parent)
    for text in ("## Trials", "| completed | 4 |", "| infeasible | 2 |", "best_val_ppl", "train_ppl_at_best",
                 "## Repeated configs", " ± ", "curves_epoch.png", "curves_wall_s.png", "curves_flops.png",
                 "asha_rungs.png", "param_importance.png", "pareto_flops.png", "pareto_wall_s.png"):
        assert text in md, text
    assert "Iso-FLOP" not in md  # no flop_budget parameter
    # The earlier launch's parent got nothing.
    assert artifacts(store.uri, store.rnn_old_parent) == set()


def test_report_of_a_flop_budget_search(store, tmp_path):
    out = analysis.report(GPT, store.uri, tmp_path / "gpt", log_artifacts=False)
    md = (out / "report.md").read_text()
    assert "## Iso-FLOP scaling" in md and "isoflop.png" in md and "N*(C) = 0.05 · C^0.500" in md
    assert "## Repeated configs" not in md  # one seed each
    assert artifacts(store.uri, store.gpt_parent) == set()


def test_report_errors(store, tmp_path):
    with pytest.raises(analysis.AnalysisError, match="no MLflow experiment"):
        analysis.report("nope", store.uri, tmp_path / "x")
    with pytest.raises(analysis.AnalysisError, match="no search with trial runs"):
        analysis.report(EMPTY, store.uri, tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.slow
def test_report_of_a_real_search(real_search, tmp_path):
    out = analysis.report(real_search.name, real_search.tracking_uri, tmp_path / "real")
    md = check_report(out, real_search.tracking_uri, real_search.parent_run_id)
    assert f"{len(real_search.trials)} trials ran" in md
    assert "curves_epoch.png" in md and "pareto_flops.png" in md
