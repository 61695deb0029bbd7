"""analysis._plot: the ``Plot`` and the helpers every figure shares, on hand-built tables and figures."""

from __future__ import annotations

import math
import struct
import subprocess
import sys

import pandas as pd
import pytest
from hand_tables import runs_table

from tunelab.analysis._plot import (
    STATUS_COLORS,
    Plot,
    _captioned,
    label,
    new_figure,
    set_metric_scale,
    trial_labels,
    trial_names,
    with_trial_names,
)
from tunelab.trainables import metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CAPTION = "Validation perplexity & its best <epoch>; t003 diverged."  # one line (under 70 characters)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG's IHDR chunk."""
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def plot() -> Plot:
    fig, (ax,) = new_figure()
    ax.plot([1, 2, 3], [120.0, 95.0, 90.0])
    return Plot(fig, CAPTION, "curves")


def runs():
    """Four trials as load names them: a run name starting with the short name, or none at all."""
    return runs_table({
        "run_id": ["0123456789abcdef", "1123456789abcdef", "2123456789abcdef", "3123456789abcdef"],
        "trial_id": ["a_00000", "a_00001", "a_00002", None],
        "run_name": ["t000 lr=0.1 cell=lstm", "t001", None, ""],
    })


# --- saving ---------------------------------------------------------------------------------------

def test_save_writes_png_and_svg_with_the_caption_drawn_in(plot, tmp_path):
    paths = plot.save(tmp_path / "figures" / "new")
    assert paths == [tmp_path / "figures" / "new" / "curves.png", tmp_path / "figures" / "new" / "curves.svg"]
    png_size(paths[0].read_bytes())
    svg = paths[1].read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    # matplotlib draws text as paths and names it in a comment (escaped for XML)
    assert "Validation perplexity &amp; its best &lt;epoch&gt;; t003 diverged." in svg


def test_save_without_caption_leaves_it_out_and_the_image_shorter(plot, tmp_path):
    with_caption = plot.save(tmp_path / "with")
    without = plot.save(tmp_path / "without", caption=False)
    assert "Validation perplexity" not in without[1].read_text(encoding="utf-8")
    (w1, h1), (w0, h0) = (png_size(p[0].read_bytes()) for p in (with_caption, without))
    assert w1 == w0 and h1 > h0  # the caption goes under the axes


def test_the_caption_is_drawn_only_while_saving(plot, tmp_path):
    plot.save(tmp_path)
    assert plot.figure.texts == []
    plot.save(tmp_path, caption=False)
    assert plot.figure.texts == []
    with pytest.raises(ValueError):
        plot.save(tmp_path, formats=("png", "no-such-format"))
    assert plot.figure.texts == []  # taken off again when saving fails
    assert (tmp_path / "curves.png").exists() and not (tmp_path / "curves.no-such-format").exists()


def test_save_writes_the_formats_asked_for_at_the_dpi_asked_for(plot, tmp_path):
    (pdf,) = plot.save(tmp_path / "pdf", formats=("pdf",))
    assert pdf.name == "curves.pdf" and pdf.read_bytes()[:5] == b"%PDF-"
    assert [p.name for p in (tmp_path / "pdf").iterdir()] == ["curves.pdf"]
    (low,) = plot.save(tmp_path / "low", formats=("png",), dpi=50, caption=False)
    (high,) = plot.save(tmp_path / "high", formats=("png",), dpi=100, caption=False)
    (wl, hl), (wh, hh) = png_size(low.read_bytes()), png_size(high.read_bytes())
    assert wh == pytest.approx(2 * wl, abs=2) and hh == pytest.approx(2 * hl, abs=2)


def test_the_caption_wraps_to_the_figures_width():
    words = " ".join(["perplexity"] * 40)
    for width, chars in ((2.0, 40), (5.0, 70), (10.0, 140)):  # 14 characters an inch, 40 at least
        fig, _ = new_figure(width=width)
        with _captioned(Plot(fig, words, "x")):
            (text,) = fig.texts
            lines = text.get_text().split("\n")
        assert max(map(len, lines)) <= chars and len(lines[0]) > chars - len("perplexity ") - 1
        assert fig.texts == []


def test_png_is_the_figure_without_caption(plot, tmp_path):
    data = plot.png()
    assert data == plot._repr_png_()  # what Jupyter shows
    assert png_size(data) == png_size(plot.save(tmp_path, formats=("png",), dpi=100, caption=False)[0].read_bytes())
    assert plot.figure.texts == []


# --- figures ------------------------------------------------------------------------------------------

def test_new_figure_gives_a_flat_list_of_axes_in_reading_order():
    fig, axes = new_figure(ncols=3, nrows=2, width=4.0, height=2.5)
    assert len(axes) == 6 and tuple(fig.get_size_inches()) == (12.0, 5.0)
    assert fig.get_layout_engine().__class__.__name__ == "ConstrainedLayoutEngine"
    spans = [(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start) for ax in axes]
    assert spans == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    fig, axes = new_figure()
    assert len(axes) == 1 and tuple(fig.get_size_inches()) == (5.0, 3.6)


def test_figures_are_drawn_without_pyplot_and_matplotlib_is_imported_lazily(tmp_path):
    code = (
        "import sys\n"
        "import tunelab.analysis\n"
        "from tunelab.analysis._plot import Plot, new_figure\n"
        "assert 'matplotlib' not in sys.modules, 'import tunelab.analysis imported matplotlib'\n"
        "fig, (ax,) = new_figure()\n"
        "ax.plot([1, 2], [3, 4])\n"
        f"Plot(fig, 'a caption', 'x').save({str(tmp_path)!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'a figure went through pyplot'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png", "x.svg"]


def test_axis_labels_name_the_counters_and_pass_other_keys_through():
    assert label("wall_s") == "wall-clock training time (s)"
    assert label(metrics.STEP) == "optimizer step"
    assert label(metrics.PARAMS_NONEMBED) == "non-embedding parameters"
    assert label("training_iteration") == "report (training iteration)"
    assert label(metrics.VAL_PPL) == "val_ppl" and label("my_metric") == "my_metric"


def test_every_ended_status_has_its_own_colour():
    assert set(STATUS_COLORS) == set(metrics.ENDED)
    assert len(set(STATUS_COLORS.values())) == len(STATUS_COLORS)


# --- log axes -----------------------------------------------------------------------------------------

def scales(key, values=None, axis="y"):
    fig, (ax,) = new_figure()
    set_metric_scale(ax, key, values, axis=axis)
    return ax.get_xscale(), ax.get_yscale()


@pytest.mark.parametrize("key", [metrics.VAL_PPL, metrics.TRAIN_PPL, metrics.TEST_PPL, "best_val_ppl",
                                 "last_val_ppl", "trial_val_ppl", "my_lab_ppl"])
def test_perplexities_get_a_log_axis_whatever_their_values(key):
    assert scales(key) == ("linear", "log")
    assert scales(key, [90.0, 91.0]) == ("linear", "log")


@pytest.mark.parametrize(("values", "y"), [
    (None, "linear"),
    ([], "linear"),
    ([3.0], "linear"),  # one value spans nothing
    ([1.0, 10.0], "linear"),  # a factor of exactly 10 is not more than 10
    ([1.0, 10.5], "log"),
    ([0.5, 2.0, 600.0], "log"),
    ([0.0, 100.0], "linear"),  # a zero or a negative value cannot go on a log axis
    ([-1.0, 100.0], "linear"),
    ([1.0, 2.0, math.inf, math.nan], "linear"),  # a diverged trial's inf does not make a spread
    ([1.0, 50.0, math.nan], "log"),
    ([math.inf, math.nan], "linear"),
])
def test_other_metrics_get_a_log_axis_for_positive_values_spanning_more_than_tenfold(values, y):
    assert scales(metrics.VAL_LOSS, values) == ("linear", y)


def test_the_x_axis_can_be_the_log_one():
    assert scales(metrics.VAL_PPL, axis="x") == ("log", "linear")
    assert scales(metrics.FLOPS, [1e12, 1e15], axis="x") == ("log", "linear")
    assert scales(metrics.FLOPS, [1e12, 2e12], axis="x") == ("linear", "linear")


# --- trial names --------------------------------------------------------------------------------------

def test_trial_names_are_the_first_word_of_the_run_name_else_the_trial_id():
    assert trial_names(runs()) == {"a_00000": "t000", "a_00001": "t001", "a_00002": "a_00002", None: None}


def test_trial_labels_are_the_run_name_else_the_trial_id_else_the_run_ids_start():
    assert trial_labels(runs()) == {
        "0123456789abcdef": "t000 lr=0.1 cell=lstm", "1123456789abcdef": "t001",
        "2123456789abcdef": "a_00002", "3123456789abcdef": "31234567",
    }


def test_with_trial_names_names_the_trials_t000_in_a_trial_column():
    table = pd.DataFrame({"trial_id": ["a_00001", "a_00000", "b_00009"], "best_val_ppl": [95.0, 90.0, 99.0]})
    named = with_trial_names(table, runs())
    assert list(named.columns) == ["trial", "best_val_ppl"]  # in place of trial_id
    assert named["trial"].tolist() == ["t001", "t000", "b_00009"]  # a trial not in runs keeps its id
    assert named["best_val_ppl"].tolist() == [95.0, 90.0, 99.0]
    assert table["trial_id"].tolist() == ["a_00001", "a_00000", "b_00009"]  # the caller's table is untouched


def test_with_trial_names_leaves_a_table_without_trial_ids_as_it_is():
    table = pd.DataFrame({"param": ["lr"], "importance": [0.7]})
    assert with_trial_names(table, runs()) is table


def test_with_trial_names_of_an_empty_table():
    empty = pd.DataFrame({"trial_id": pd.Series([], dtype=object), "best_val_ppl": pd.Series([], dtype=float)})
    named = with_trial_names(empty, runs())
    assert list(named.columns) == ["trial", "best_val_ppl"] and len(named) == 0
    assert with_trial_names(pd.DataFrame({"trial_id": ["a_00000"]}), runs().slice(0, 0))["trial"].tolist() == ["a_00000"]
