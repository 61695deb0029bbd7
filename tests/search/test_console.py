"""The console of a running search, fed made-up trials: plain lines without a terminal; Ray's output
kept for the search's ray.log."""

from __future__ import annotations

import io
import sys
import types

from tunelab.search import _console
from tunelab.trainables import metrics


def _trial(trial_id, **config):
    return types.SimpleNamespace(trial_id=trial_id, config=config, last_result={})


def test_without_a_terminal_each_trial_leaves_one_plain_line():
    out = io.StringIO()
    names = {"a": "t000", "b": "t001"}
    view = _console.LiveConsole(metrics.VAL_PPL, "min", ["lr", "cell"], 2, "epoch", 4,
                                label=lambda t: names[t.trial_id], header="demo: 2 trials", out=out)
    view.setup()
    a, b = _trial("a", lr=0.5, cell="lstm"), _trial("b", lr=2.25, cell="gru")
    for t in (a, b):
        view.on_trial_start(0, [a, b], t)
    for epoch, (va, vb) in enumerate([(400.0, 900.0), (300.0, 2e6)], 1):
        view.on_trial_result(0, [a, b], a, {"epoch": epoch, "val_ppl": va})
        view.on_trial_result(0, [a, b], b, {"epoch": epoch, "val_ppl": vb})
    b.last_result = {"epoch": 2, "diverged": 1}
    view.on_trial_complete(0, [a, b], b)
    a.last_result = {"epoch": 4, "finished": 1}
    view.on_trial_result(0, [a], a, {"epoch": 4, "val_ppl": 250.0})
    view.on_trial_complete(0, [a], a)
    view.on_experiment_end([a, b])
    lines = [" ".join(line.split()) for line in out.getvalue().splitlines()]
    assert lines[0] == "demo: 2 trials"
    assert lines[1].startswith("[1/2 0:0") and lines[1].endswith("t001 diverged epoch 2 val_ppl 900 best so far "
                                                                 "lr=2.25 cell=gru")
    assert lines[2].endswith("t000 completed epoch 4 val_ppl 250 best so far lr=0.5 cell=lstm")
    assert len(lines) == 3 and "\x1b" not in out.getvalue()  # no escape codes in a pipe


def test_the_live_view_shows_the_running_trials_and_the_budget():
    from rich.console import Console

    view = _console.LiveConsole(metrics.VAL_PPL, "min", ["lr"], 8, "epoch", 4, label=lambda t: "t003",
                                out=io.StringIO())
    view.setup()
    t = _trial("c", lr=0.5)
    view.on_trial_start(0, [t], t)
    view.on_trial_result(0, [t], t, {"epoch": 2, "val_ppl": 512.0})
    screen = io.StringIO()
    Console(file=screen, width=100).print(_console._Running(view))
    text = screen.getvalue()
    assert "t003" in text and "2/4" in text and "512" in text and "lr=0.5" in text
    assert "0/8 trials ended" in text


def test_ray_output_is_kept_then_written_to_the_log_and_shown_when_the_search_never_started(tmp_path):
    console = io.StringIO()
    with _console.ray_output(False, console) as log:
        print("Trial status: 2 PENDING")
        log.open(tmp_path / _console.RAY_LOG)
        print("Checkpoint successfully created", file=sys.stderr)
    assert (tmp_path / _console.RAY_LOG).read_text() == "Trial status: 2 PENDING\nCheckpoint successfully created\n"
    assert console.getvalue() == ""
    with _console.ray_output(False, console):
        print("a warning before the search folder existed")
    assert console.getvalue() == "a warning before the search folder existed\n"
