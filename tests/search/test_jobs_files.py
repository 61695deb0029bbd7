"""What travels with a submitted search (search/_jobs.py), checked without a cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import spaces
from search import _jobs

ROOT = Path(__file__).resolve().parents[2]
FILE = """\
# tests/search/test_jobs_files.py
name: travel
trainable: synthetic
metric: val_loss
space:
  x: {uniform: [-1.0, 1.0]}
data: DATA
"""


def _search(tmp_path, data: str) -> spaces.Search:
    path = tmp_path / "s.yaml"
    path.write_text(FILE.replace("DATA", data))
    return spaces.load(path)


def test_a_relative_data_folder_inside_what_is_sent_is_given_relative_to_the_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = os.path.relpath(ROOT / "spaces", tmp_path)  # ../../work/.../spaces
    assert _jobs.travelling_data(_search(tmp_path, f"{{corpus: none, dir: {rel}}}")) == ["data.dir=spaces"]
    monkeypatch.chdir(ROOT)
    assert _jobs.travelling_data(_search(tmp_path, "{corpus: none, dir: analysis/notebooks}")) == \
        ["data.dir=analysis/notebooks"]


def test_absolute_home_and_unset_data_folders_are_the_cluster_s(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _jobs.travelling_data(_search(tmp_path, f"{{corpus: none, dir: {tmp_path}}}")) == []
    assert _jobs.travelling_data(_search(tmp_path, "{corpus: none, tokens: ~/tokens/x}")) == []
    assert _jobs.travelling_data(_search(tmp_path, "{corpus: none}")) == []
    # a relative token folder that is not here is looked up under data.dir, there as here
    assert _jobs.travelling_data(_search(tmp_path, f"{{corpus: none, dir: {tmp_path}, tokens: tok}}")) == []


@pytest.mark.parametrize("data, where", [
    ("{corpus: none, dir: here}", "outside the project folder"),
    ("{corpus: none, tokens: tokens/shakespeare-char}", "in a part of the project folder that is not sent"),
])
def test_a_relative_data_folder_that_cannot_travel_is_refused(tmp_path, monkeypatch, data, where):
    (tmp_path / "here").mkdir()
    if "tokens/" in data:
        monkeypatch.chdir(ROOT)
    else:
        monkeypatch.chdir(tmp_path)
    s = _search(tmp_path, data)
    with pytest.raises(spaces.SpecError, match=f"cannot travel with the job: it is {where}") as err:
        _jobs.travelling_data(s)
    assert str(err.value).startswith(f"{s.file}: data.")


def test_the_entrypoint_writes_the_carried_text_under_the_file_s_name_then_runs_it():
    cmd = _jobs.entrypoint("my search.yaml", ["lr=0.5"], "n", None)
    assert cmd == ("mkdir -p .tunelab-submitted && printf \"%s\" \"$TUNELAB_SEARCH_TEXT\" > "
                   "'.tunelab-submitted/my search.yaml' && python -m search.cli run '.tunelab-submitted/my search.yaml' "
                   "--set lr=0.5 --name n --storage ~/tunelab-runs")
