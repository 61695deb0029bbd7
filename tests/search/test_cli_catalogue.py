"""The catalogue from the CLI (`tunelab spaces`, `tunelab show`), and the commands a search's end prints:
quoted for the shell, naming the tunelab that ran."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from tunelab import spaces
from tunelab.search import cli
from tunelab.search._summary import Outcome, TrialSummary


def test_spaces_lists_every_catalogue_file_with_its_opening_comment(capsys):
    assert cli.main(["spaces"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [line for line in out if not line.startswith(" ")]
    assert names == spaces.catalogue() and "ptb_smoke" in names
    smoke = out.index("ptb_smoke")
    first_comment = (spaces.CATALOGUE / "ptb_smoke.yaml").read_text().splitlines()[0].removeprefix("#").strip()
    assert out[smoke + 1] == f"    {first_comment}"


def test_show_prints_a_catalogue_file_as_it_is(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["show", "ptb_smoke"]) == 0
    assert capsys.readouterr().out == (spaces.CATALOGUE / "ptb_smoke.yaml").read_text()
    assert cli.main(["show", "no_such_search"]) == 2
    assert "no such file, nor a search of the catalogue" in capsys.readouterr().err


def test_the_program_to_run_again_is_the_one_that_ran(tmp_path, monkeypatch):
    script = tmp_path / "venv bin" / "tunelab"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(script), "run"])
    monkeypatch.setenv("PATH", "/nowhere")
    assert cli.program() == shlex.quote(str(script))  # not on the PATH: its own path, quoted
    monkeypatch.setenv("PATH", str(script.parent))
    assert cli.program() == "tunelab"  # on the PATH as this very program
    monkeypatch.setattr(sys, "argv", ["-m"])  # python -m tunelab
    assert cli.program() == f"{shlex.quote(sys.executable)} -m tunelab"


def test_the_printed_hints_are_quoted_for_the_shell(tmp_path, capsys, monkeypatch):
    storage = tmp_path / "my runs $(touch pwned)"
    monkeypatch.setattr(sys, "argv", ["-m"])
    best = TrialSummary("abc", "completed", {"x": 0.5}, 1.25, 4, name="t000")
    outcome = Outcome("s", storage / "s", "sqlite:///x.db", "run1", "val_loss", "min", [best], 0, best,
                      tracking_pending=True)
    assert cli._print_outcome(outcome) == 0
    lines = capsys.readouterr().out.splitlines()
    ui = next(line for line in lines if line.startswith("open the UI: ")).removeprefix("open the UI: ")
    assert shlex.split(ui)[-4:] == ["s", "--storage", str(storage), "--open"]
    sync = next(line for line in lines if "tunelab sync" in line)
    assert shlex.split(sync.split("`")[1])[-3:] == ["s", "--storage", str(storage)]
    assert not Path(os.getcwd(), "pwned").exists()
