"""The GPT family's learning-rate-against-width section (trainables/gpt/report.py) on a made-up store
whose optima are known: under sp the best rate halves with each doubling of the width, under mup it
stays at 2^-5; one sp seed diverges at the widest width's best rate, which must then not be chosen."""

from __future__ import annotations

import math

import pytest
from fixture_store import T0, _log_run, _parent

from tunelab import analysis
from tunelab.trainables import metrics
from tunelab.trainables.gpt import report as gpt_report

WIDTHS = (32, 64, 128, 256)
RATES = tuple(2.0**-k for k in range(10, 3, -1))  # 2^-10 .. 2^-4


def best_rate(p: str, width: int) -> float:
    return 2.0**-5 * (32 / width if p == "sp" else 1.0)


def final_loss(p: str, width: int, rate: float, seed: int) -> float:
    """A parabola in log2(rate) around the best rate, a little lower for wider models."""
    return 1.5 + 0.1 * (math.log2(rate) - math.log2(best_rate(p, width))) ** 2 - 0.01 * math.log2(width) + 0.001 * seed


DIVERGED = ("sp", 256, 2.0**-7, 1)  # at the next-best rate of sp's widest width; the best rate is 2^-8


@pytest.fixture(scope="module")
def widths_runs(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("widths_store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("fixture-widths", artifact_location=str(root / "art"))
    parent = _parent(client, exp, "fixture-widths", "gpt", metrics.VAL_LOSS, {}, T0, scheduler="fifo")
    number = 0
    for p in ("sp", "mup"):
        for width in WIDTHS:
            for rate in RATES:
                for seed in (0, 1):
                    diverged = (p, width, rate, seed) == DIVERGED
                    loss = math.inf if diverged else final_loss(p, width, rate, seed)
                    config = {"parametrization": p, "n_embd": width, "max_lr": rate, "seed": seed, "n_layer": 2}
                    _log_run(client, exp, parent, number, f"w{number:05d}", config,
                             ("parametrization", "n_embd", "max_lr", "seed"), [{metrics.VAL_LOSS: loss}],
                             metrics.STATUS_DIVERGED if diverged else metrics.COMPLETED, T0 + 1000 * number)
                    number += 1
    client.set_terminated(parent, "FINISHED")
    return analysis.load("fixture-widths", uri)


def test_optima_per_width_and_their_shift(widths_runs):
    runs, _ = widths_runs
    assert gpt_report.learning_rate(runs) == "max_lr"
    optima = gpt_report.lr_optima(runs)
    got = {(r.parametrization, r.n_embd): r.max_lr for r in optima.itertuples()}
    want = {(p, w): best_rate(p, w) for p in ("sp", "mup") for w in WIDTHS}
    assert got == want
    assert optima.attrs["shift"] == {"sp": 1 / 8, "mup": 1.0}
    assert (optima.attrs["narrowest"], optima.attrs["widest"]) == (32, 256)
    row = optima[(optima.parametrization == "mup") & (optima.n_embd == 64)].iloc[0]
    assert row["n"] == 2
    assert row["mean"] == pytest.approx(final_loss("mup", 64, 2.0**-5, 0) + 0.0005)


def test_a_rate_where_a_seed_diverged_is_no_point_and_no_optimum(widths_runs):
    runs, _ = widths_runs
    table = gpt_report.lr_width_table(runs)
    cell = table[(table.parametrization == "sp") & (table.n_embd == 256) & (table.max_lr == 2.0**-7)].iloc[0]
    assert cell["diverged"] == 1 and math.isnan(cell["mean"])
    assert len(table) == 2 * len(WIDTHS) * len(RATES) and set(table["n"]) == {2}


def test_report_section_draws_the_figure_and_the_table(widths_runs, tmp_path):
    runs, history = widths_runs
    blocks = gpt_report.report_blocks(runs, history)
    kinds = [b[0] for b in blocks]
    assert kinds == ["h", "figure", "table"]
    plot = blocks[1][1]
    assert plot.name == "lr_width"
    assert [ax.get_xscale() for ax in plot.figure.axes] == ["log", "log"]
    assert [ax.get_title().split(":")[0] for ax in plot.figure.axes] == ["sp", "mup"]
    assert len(plot.figure.axes[0].lines) == 2 * len(WIDTHS)  # a curve and its star per width
    assert "×0.125 from width 32 to 256" in plot.figure.axes[0].get_title()
    assert "mup: the optimum moves ×1" in blocks[2][2]
    assert plot.save(tmp_path)[0].stat().st_size > 10_000
    # the whole report goes through the registry's entry for the trainable the parent names
    out = analysis.report("fixture-widths", analysis.search_info(runs)["tracking_uri"], tmp_path / "report",
                          log_artifacts=False)
    text = (out / "report.md").read_text()
    assert "## Learning rate against width" in text and "figures/lr_width.png" in text


def test_no_section_without_width_crossed_with_a_learning_rate(store):
    runs, history = analysis.load("fixture-gpt", store.uri)  # varies the width, not the learning rate
    assert gpt_report.learning_rate(runs) is None
    assert gpt_report.report_blocks(runs, history) == []
    with pytest.raises(analysis.AnalysisError, match="does not vary the width"):
        gpt_report.lr_width_table(runs)
