"""The notebooks run headless with nbclient, pointed at a search by environment variables."""

from __future__ import annotations

import nbformat
import pytest
from fixture_store import GPT
from nbclient import NotebookClient

from tunelab import analysis

NOTEBOOKS = analysis.NOTEBOOKS  # where the installed package keeps them
NAMES = ("compare_trials", "ptb_rnn", "gpt_flop_budget")
STORED = (*NAMES, "arith_grokking")  # arith_grokking runs in tests/analysis/test_arith.py


def execute(name: str, experiment: str, uri: str, monkeypatch, tmp_path) -> str:
    """Run one notebook; returns its text outputs."""
    monkeypatch.setenv("TUNELAB_EXPERIMENT", experiment)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # The kernel is a fresh process: it imports the installed tunelab, as a user's notebook does.
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error"
            texts.append(out.get("text", "") + str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


@pytest.mark.parametrize("name", STORED)
def test_stored_without_outputs_with_a_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    first = code[0]
    assert "parameters" in first.metadata.get("tags", [])
    assert "TUNELAB_EXPERIMENT" in first.source and "MLFLOW_TRACKING_URI" in first.source
    assert "tracking_uri" in first.source and "experiment" in first.source
    sources = "\n".join(c.source for c in code)
    assert "import mlflow" not in sources and "tunelab.search" not in sources and "import search" not in sources  # the analysis API only


def test_gpt_notebook_fits_the_flop_budgets(store, monkeypatch, tmp_path):
    text = execute("gpt_flop_budget", GPT, store.uri, monkeypatch, tmp_path)
    assert "3 FLOP budget(s)" in text and "C^0.500" in text


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_on_a_real_search(real_search, name, monkeypatch, tmp_path):
    text = execute(name, real_search.name, real_search.tracking_uri, monkeypatch, tmp_path)
    assert f"{real_search.name}: {len(real_search.trials)} trials" in text
    if name == "gpt_flop_budget":
        assert "has no flop_budget parameter" in text
