"""What every figure test checks: the Plot saves a non-empty PNG (and an SVG) with a caption."""

from __future__ import annotations

from pathlib import Path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_plot(plot, directory: Path) -> None:
    assert plot.caption and plot.name
    paths = plot.save(directory)
    png, svg = directory / f"{plot.name}.png", directory / f"{plot.name}.svg"
    assert paths == [png, svg]
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    assert b"<svg" in svg.read_bytes()[:2000]
    for ax in plot.figure.axes:  # labelled axes; a colour bar has one label, along its length
        if getattr(ax, "_colorbar", None) is not None:
            assert ax.get_ylabel() or ax.get_xlabel()
            continue
        assert ax.get_xlabel() and ax.get_ylabel()
