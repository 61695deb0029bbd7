"""What travels with a submitted search (search/_jobs.py), checked without a cluster."""

from __future__ import annotations

import pytest

from tunelab import spaces
from tunelab.search import _jobs

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


def test_a_relative_data_folder_inside_what_is_sent_is_given_relative_to_the_folder_sent(tmp_path, monkeypatch):
    (tmp_path / "data" / "ptb").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert _jobs.travelling_data(_search(tmp_path, "{corpus: none, dir: ./data/../data/ptb}")) == ["data.dir=data/ptb"]
    monkeypatch.chdir(tmp_path / "data")  # the folder submitted from is what is sent
    assert _jobs.travelling_data(_search(tmp_path, "{corpus: none, dir: ptb}")) == ["data.dir=ptb"]


def test_absolute_home_and_unset_data_folders_are_the_cluster_s(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _jobs.travelling_data(_search(tmp_path, f"{{corpus: none, dir: {tmp_path}}}")) == []
    assert _jobs.travelling_data(_search(tmp_path, "{corpus: none, tokens: ~/tokens/x}")) == []
    assert _jobs.travelling_data(_search(tmp_path, "{corpus: none}")) == []
    # a relative token folder that is not here is looked up under data.dir, there as here
    assert _jobs.travelling_data(_search(tmp_path, f"{{corpus: none, dir: {tmp_path}, tokens: tok}}")) == []


@pytest.mark.parametrize("data, where", [
    ("{corpus: none, dir: ../here}", "outside the folder submitted from"),
    ("{corpus: none, tokens: tokens/shakespeare-char}", "in a part of the folder submitted from that is not sent"),
])
def test_a_relative_data_folder_that_cannot_travel_is_refused(tmp_path, monkeypatch, data, where):
    (tmp_path / "here").mkdir()
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    s = _search(tmp_path, data)
    with pytest.raises(spaces.SpecError, match=f"cannot travel with the job: it is {where}") as err:
        _jobs.travelling_data(s)
    assert str(err.value).startswith(f"{s.file}: data.")


def test_the_entrypoint_writes_the_carried_text_under_the_file_s_name_then_runs_it():
    cmd = _jobs.entrypoint("my search.yaml", ["lr=0.5"], "n", None)
    assert cmd == ("mkdir -p .tunelab-submitted && printf \"%s\" \"$TUNELAB_SEARCH_TEXT\" > "
                   "'.tunelab-submitted/my search.yaml' && python -m tunelab run '.tunelab-submitted/my search.yaml' "
                   "--set lr=0.5 --name n --storage ~/tunelab-runs")
