"""analysis.report: report.md and report.html written and logged on the search's parent run."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from fixture_store import EMPTY, GPT, RNN
from mlflow.tracking import MlflowClient

from tunelab import analysis

ROOT = Path(__file__).resolve().parents[2]


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


# --- a family's own section (Entry.report_module) ---------------------------------------------------

LAB_REPORT = '''\
from tunelab import analysis


def report_blocks(runs, history):
    table = analysis.trial_table(runs, history)[["trial_id", "best_val_ppl"]]
    return [("h", 2, "The lab's section"), ("p", f"{runs.num_rows} trials, *seen by the lab*."),
            ("table", table, "The lab's table."),
            analysis.figure_block(lambda: analysis.plot_curves(runs, history, "epoch", name="lab_curves"), "lab curves"),
            analysis.figure_block(lambda: analysis.plot_curves(runs, history, "tokens_seen"), "lab tokens")]
'''


def test_a_trainables_report_module_adds_its_section_after_cost_and_quality(store, tmp_path, monkeypatch):
    """The report finds the section through the registry by the parent run's trainable tag; a lab's
    plain-function entry names its module as a built-in family does."""
    from tunelab.analysis import _report
    from tunelab.trainables import Entry, Registry

    (tmp_path / "labreport.py").write_text(LAB_REPORT)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "labreport", raising=False)
    entry = Entry.of_function("rnn", lambda config: None, report_module="labreport")
    assert "labreport" not in sys.modules  # named, not imported, until a report is built
    monkeypatch.setattr(_report, "REGISTRY", Registry({"rnn": entry}, group="tunelab.no_plugins"))
    out = analysis.report(RNN, store.uri, tmp_path / "rnn", log_artifacts=False)
    md = (out / "report.md").read_text()
    assert md.index("## Cost and quality") < md.index("## The lab's section")
    assert "8 trials, *seen by the lab*." in md and "*The lab's table.*" in md
    assert "(figures/lab_curves.png)" in md and (out / "figures" / "lab_curves.png").exists()
    assert "*No lab tokens: no trial logged 'tokens_seen'; cannot plot curves against it.*" in md
    html = (out / "report.html").read_text()
    assert "<h2>The lab&#x27;s section</h2>" in html and "<em>seen by the lab</em>" in html


def test_a_trainable_without_a_report_module_or_not_installed_adds_nothing(store, monkeypatch):
    from tunelab.analysis import _report
    from tunelab.trainables import Entry, Registry

    runs, history = analysis.load(RNN, store.uri)
    plain = Registry({"rnn": Entry.of_function("rnn", lambda config: None)}, group="tunelab.no_plugins")
    monkeypatch.setattr(_report, "REGISTRY", plain)
    headings = [b[2] for b in _report.build_blocks(runs, history) if b[0] == "h"]
    monkeypatch.setattr(_report, "REGISTRY", Registry({}, group="tunelab.no_plugins"))  # a plugin gone since
    assert [b[2] for b in _report.build_blocks(runs, history) if b[0] == "h"] == headings
    assert headings[-1] == "Cost and quality"


def test_the_analysis_imports_no_trainable_family():
    """Families own their report sections: analysis/ imports only the shared vocabulary (metrics, tags)
    and the registry from tunelab.trainables, never a family's package."""
    allowed = {"tunelab.trainables", "tunelab.trainables.metrics", "tunelab.trainables.tags"}
    found = []
    for path in sorted((ROOT / "analysis").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if name.startswith("tunelab.trainables") and name not in allowed:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
                if isinstance(node, ast.ImportFrom) and name == "tunelab.trainables":
                    found += [f"{path.relative_to(ROOT)}:{node.lineno}: {a.name}" for a in node.names
                              if a.name not in ("REGISTRY", "metrics", "tags")]
    assert not found, "analysis/ imports a trainable family:\n" + "\n".join(found)


# --- several searches in one report (seed report 000: the LSTM half and the GPT half) ----------------

def test_searches_of_different_objectives_are_refused(store, tmp_path, capsys):
    with pytest.raises(analysis.AnalysisError, match="different objectives cannot share a report: fixture-rnn minimises val_ppl, "
                                                    "fixture-gpt minimises val_loss"):
        analysis.load([RNN, GPT], store.uri)
    with pytest.raises(analysis.AnalysisError, match="no MLflow experiment named 'nope'"):
        analysis.load([RNN, "nope"], store.uri)


def test_report_cli_exit_2_for_an_unknown_search(tmp_path, capsys):
    from tunelab.search.cli import main

    assert main(["report", "nope", "other", "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no search named 'nope'" in err


@pytest.mark.slow
def test_a_report_over_two_searches_has_both_architectures(seed000_searches, tmp_path, capsys):
    from tunelab.search.cli import main

    lstm, gpt = seed000_searches
    assert lstm.tracking_uri == gpt.tracking_uri
    runs, history = analysis.load([lstm.name, gpt.name], lstm.tracking_uri)
    assert runs.num_rows == 4 and sorted(set(runs.column("search").to_pylist())) == sorted([lstm.name, gpt.name])
    assert sorted(runs.column("label").to_pylist()) == [1, 6, 9, 11]  # typed: every label a number

    out = tmp_path / "seed000"
    storage = Path(lstm.experiment_dir).parent
    assert main(["report", lstm.name, gpt.name, "--storage", str(storage), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    for n in range(1, 9):
        assert f"seed000_figure{n}.png" in md and (out / "figures" / f"seed000_figure{n}.png").exists()
    # Tables 1 (by ID) and 2 (by architecture), with both architectures.
    table1 = md[md.index("| Exp. ID"):md.index("*Table 1")]
    assert [line.split("|")[1].strip() for line in table1.splitlines() if line.startswith("| ")][1:] == ["1", "6", "9", "11"]
    assert "LSTM" in table1 and "GPT-1" in table1 and "AdamW" in table1
    table2 = md[md.index("*Table 1"):md.index("*Table 2")]
    assert [line.split("|")[1].strip() for line in table2.splitlines() if line.startswith("| ")][1:] == ["1", "9", "6", "11"]
    assert "Table 3: Steady-state memory" in md and "CPU: the process's peak resident set" in md
    table3 = md[md.index("*Table 2"):md.index("*Table 3")]
    assert table3.count("epoch 1") == 4
    memory = [float(line.split("|")[5]) for line in table3.splitlines() if line.startswith("| ") and "epoch 1" in line]
    assert len(memory) == 4 and all(m > 50 for m in memory)  # MB of a Python process with torch
    # Both parents carry the report.
    for s in (lstm, gpt):
        assert {"report/report.md", "report/report.html"} <= artifacts(s.tracking_uri, s.parent_run_id)
