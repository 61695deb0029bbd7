"""Warm start: an earlier search's trials seed a new study (search/_warmstart.py).

The fast tests build the earlier search by hand, as an Optuna journal in a results folder and as an
MLflow store, with made-up trials whose fate is known; the slow one runs real searches.
"""

from __future__ import annotations

import json
import math

import optuna
import pytest
from mlflow.entities import Metric, Param
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tunelab import _mlflow
from tunelab import search
from tunelab import spaces
from tunelab.search import _warmstart
from tunelab.search._parent import ParentRun
from tunelab.search._paths import STUDY_FILE, load_study
from tunelab.search._searcher import REASON_ATTR, STATUS_ATTR, open_storage
from tunelab.search.cli import main
from tunelab.trainables import metrics
from tunelab.trainables import tags

EARLIER = """\
# an earlier synthetic search, written by hand for these tests
name: a
trainable: synthetic
metric: val_loss
mode: min
space:
  x: {uniform: [-1.0, 1.0]}
  y: {uniform: [-1.0, 1.0]}
  epochs: {int: [0, 4]}
data: {corpus: none}
"""
DISTS = {"x": FloatDistribution(-1.0, 1.0), "y": FloatDistribution(-1.0, 1.0), "epochs": IntDistribution(0, 4)}


def _new(tmp_path, warm: str, *, x="[-0.5, 1.0]", extra: str = "", name="b") -> spaces.Search:
    """A new search over a narrower x, warm-started as ``warm`` (YAML flow mapping) says."""
    text = EARLIER.replace("name: a", f"name: {name}").replace("x: {uniform: [-1.0, 1.0]}", f"x: {{uniform: {x}}}")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text + f"storage: {tmp_path / 'runs'}\nwarm_start: {warm}\n" + extra)
    return spaces.load(path)


def _trial(state, x, y, epochs, value=None, steps=(), constraints=None, status=None):
    return create_trial(state=state, value=value, params={"x": x, "y": y, "epochs": epochs}, distributions=DISTS,
                        intermediate_values=dict(steps), constraints=constraints,
                        user_attrs={STATUS_ATTR: status} if status else None)


@pytest.fixture
def earlier_folder(tmp_path):
    """Results folder of search ``a``: its resolved file and a journal with one trial of each fate."""
    folder = tmp_path / "runs" / "a"
    folder.mkdir(parents=True)
    (folder / "search.yaml").write_text(spaces.load(_write(tmp_path / "a.yaml", EARLIER)).resolved_yaml())
    study = optuna.create_study(storage=open_storage(folder / STUDY_FILE), study_name="a", direction="minimize")
    study.add_trials([
        _trial(TrialState.COMPLETE, 0.3, -0.2, 4, 1.25, {1: 2.0, 2: 1.5, 3: 1.33, 4: 1.25}, status=metrics.COMPLETED),
        _trial(TrialState.COMPLETE, -0.9, 0.0, 4, 2.73, {4: 2.73}, status=metrics.COMPLETED),  # x outside
        _trial(TrialState.PRUNED, 0.1, 0.0, 4, 2.08, {1: 2.08}, status=metrics.STOPPED_EARLY),
        _trial(TrialState.PRUNED, 0.0, 0.0, 0, None, {}, {"feasible": 1.0}, status=metrics.INFEASIBLE),
        _trial(TrialState.FAIL, 0.2, 0.2, 3, status=metrics.ERROR),
        _trial(TrialState.COMPLETE, 0.5, 0.5, 2, math.inf, {1: 9.0}, status=metrics.STATUS_DIVERGED),
        _trial(TrialState.PRUNED, 0.2, -0.1, 3, 2.1, {1: 2.1}, {"fits_memory": 1.0}, status=metrics.STATUS_OOM),
    ])
    study.ask()  # one left RUNNING by a driver that stopped
    return folder


def _write(path, text):
    path.write_text(text)
    return path


def test_a_journal_gives_its_finished_trials_inside_the_new_space(tmp_path, earlier_folder):
    new = _new(tmp_path, "{search: a}")
    journal = earlier_folder / STUDY_FILE
    with open(journal, "ab") as f:  # the earlier search's driver is in the middle of a write
        f.write(b'{"op_code": 6, "worker_id": "x"')
    before = journal.read_bytes()
    warm = _warmstart.prepare(new)
    assert journal.read_bytes() == before  # read, never written
    assert warm.source == f"search a in {tmp_path / 'runs'}"
    assert (warm.taken, warm.skipped) == (5, {_warmstart.OUTSIDE: 1, _warmstart.UNFINISHED: 2})
    got = [(t.state, t.params, t.value, t.intermediate_values, t.constraints) for t in warm.trials]
    assert got == [
        (TrialState.COMPLETE, {"x": 0.3, "y": -0.2, "epochs": 4}, 1.25, {1: 2.0, 2: 1.5, 3: 1.33, 4: 1.25}, {}),
        (TrialState.PRUNED, {"x": 0.1, "y": 0.0, "epochs": 4}, 2.08, {1: 2.08}, {}),
        (TrialState.PRUNED, {"x": 0.0, "y": 0.0, "epochs": 0}, None, {}, {"feasible": 1.0}),
        (TrialState.COMPLETE, {"x": 0.5, "y": 0.5, "epochs": 2}, math.inf, {1: 9.0}, {}),
        (TrialState.PRUNED, {"x": 0.2, "y": -0.1, "epochs": 3}, 2.1, {1: 2.1}, {"fits_memory": 1.0}),
    ]
    assert all(t.distributions["x"] == FloatDistribution(-0.5, 1.0) for t in warm.trials)  # the new space's


def test_seeded_trials_feed_the_sampler_and_stay_out_of_the_new_search_counts(tmp_path, earlier_folder):
    new = _new(tmp_path, "{search: a}")
    warm = _warmstart.prepare(new)
    journal = tmp_path / "b.log"
    store = _mlflow.client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = ParentRun.open(store, store.create_experiment("b"), new, tmp_path / "runs" / "b", [], warm).run_id
    _warmstart.seed(warm, str(journal), new.spec)
    study = optuna.load_study(study_name="b", storage=open_storage(journal))
    assert [t.state for t in study.trials] == [t.state for t in warm.trials]
    assert study.best_value == 1.25 and study.best_params == {"x": 0.3, "y": -0.2, "epochs": 4}
    assert all(t.user_attrs[_warmstart.SOURCE_ATTR] == warm.source and STATUS_ATTR not in t.user_attrs
               for t in study.trials)
    # TPE past its start-up trials samples the new space from them.
    sampler_study = optuna.load_study(study_name="b", storage=open_storage(journal),
                                      sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=2))
    trial = sampler_study.ask()
    params = new.space(trial)
    assert -0.5 <= params["x"] <= 1.0
    run = store.get_run(parent)
    assert run.data.params["warm_start.taken"] == "5" and run.data.params["warm_start.skipped"] == "3"
    assert run.data.tags[tags.WARM_START] == (
        f"search a in {tmp_path / 'runs'}: 5 trials taken, 3 skipped (1 outside the space, 2 failed or unfinished)")


def test_an_infeasible_config_that_the_new_search_accepts_is_skipped(tmp_path, earlier_folder):
    # epochs fixed at 4: the earlier trial with epochs 0 would run now, so its verdict does not carry over.
    new = _new(tmp_path, "{search: a}", x="[-1.0, 1.0]")
    new = spaces.load(new.file, ["epochs=4"])
    warm = _warmstart.prepare(new)
    assert warm.skipped == {_warmstart.NOW_FEASIBLE: 1, _warmstart.UNFINISHED: 2}
    assert all(set(t.params) == {"x", "y"} for t in warm.trials)


def test_values_off_a_stepped_grid_or_outside_a_choice_are_outside(tmp_path, earlier_folder):
    new = _new(tmp_path, "{search: a}", x="[-1.0, 1.0]")
    # x's: 0.3, -0.9, 0.1, 0.0, 0.5, 0.2 (finished trials); y's: -0.2, 0.0, 0.0, 0.0, 0.5, -0.1.
    on_grid = spaces.load(new.file, ["space.x.step=0.1", "space.y={choice: [-0.2, 0.0]}"])
    on_grid = _warmstart.prepare(on_grid)
    assert [t.params["x"] for t in on_grid.trials] == [0.3, -0.9, 0.1, 0.0]
    assert on_grid.skipped[_warmstart.OUTSIDE] == 2
    coarse = _warmstart.prepare(spaces.load(new.file, ["space.x.step=0.2"]))
    assert [t.params["x"] for t in coarse.trials] == [0.0, 0.2]
    assert coarse.skipped[_warmstart.OUTSIDE] == 4


def test_an_mlflow_experiment_gives_its_child_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = _mlflow.client_for(uri)
    exp = client.create_experiment("a", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(exp, tags={tags.TRAINABLE: "synthetic"}).info.run_id
    client.log_text(parent, json.dumps([{"params": {"x": 0.0, "y": 0.0, "epochs": 0}, "reason": "epochs=0"}]),
                    "report/infeasible.json")

    def child(status, x, y, epochs, val_ppl):
        run = client.create_run(exp, tags={tags.PARENT: parent, tags.STATUS: status}).info.run_id
        client.log_batch(run, params=[Param("x", str(x)), Param("y", str(y)), Param("epochs", str(epochs)),
                                      Param("seed", "0")],
                         metrics=[Metric(metrics.VAL_PPL, v, 0, s) for s, v in val_ppl.items()])

    child(metrics.COMPLETED, 0.3, -0.2, 4, {1: 7.4, 2: 4.5, 3: 3.8, 4: 3.49})
    child(metrics.STOPPED_EARLY, 0.1, 0.0, 4, {1: 8.0})
    child(metrics.STATUS_DIVERGED, 0.5, 0.5, 2, {1: 9.0, 2: math.nan})
    child(metrics.STATUS_OOM, 0.2, -0.1, 3, {})
    child(metrics.ERROR, 0.2, 0.2, 3, {1: 5.0})
    child("running", 0.2, 0.2, 3, {1: 5.0})
    child(metrics.COMPLETED, -0.9, 0.0, 4, {4: 15.3})  # outside the new x range
    child(metrics.COMPLETED, 0.3, -0.2, 7, {4: 3.49})  # epochs outside [0, 4]

    new = _new(tmp_path, f"{{experiment: a, tracking: '{uri}'}}", extra="", name="b")
    new = spaces.load(new.file, ["metric=val_ppl"])  # the runs keep every metric: another one works
    warm = _warmstart.prepare(new)
    assert warm.source == f"experiment a at {uri}"
    assert (warm.taken, warm.skipped) == (5, {_warmstart.UNFINISHED: 2, _warmstart.OUTSIDE: 2})
    got = [(t.state, t.params, t.value, t.intermediate_values, t.constraints) for t in warm.trials]
    assert got == [
        (TrialState.COMPLETE, {"x": 0.3, "y": -0.2, "epochs": 4}, 3.49, {1: 7.4, 2: 4.5, 3: 3.8, 4: 3.49}, {}),
        (TrialState.PRUNED, {"x": 0.1, "y": 0.0, "epochs": 4}, 8.0, {1: 8.0}, {}),
        (TrialState.COMPLETE, {"x": 0.5, "y": 0.5, "epochs": 2}, math.inf, {1: 9.0}, {}),
        (TrialState.PRUNED, {"x": 0.2, "y": -0.1, "epochs": 3}, None, {}, {"fits_memory": 1.0}),
        (TrialState.PRUNED, {"x": 0.0, "y": 0.0, "epochs": 0}, None, {}, {"feasible": 1.0}),
    ]
    assert warm.trials[-1].user_attrs[REASON_ATTR]


@pytest.mark.parametrize("warm, field, message", [
    ("{search: a, experiment: a}", "warm_start", "exactly one of search"),
    ("{}", "warm_start", "exactly one of search"),
    ("{experiment: a, storage: runs}", "warm_start", "storage goes with search"),
    ("{search: a, tracking: 'sqlite:///x.db'}", "warm_start", "tracking goes with experiment"),
    ("{search: a, folder: runs}", "warm_start.folder", "Extra inputs are not permitted"),
])
def test_a_malformed_warm_start_is_exit_2_naming_it(tmp_path, capsys, warm, field, message):
    path = tmp_path / "b.yaml"
    path.write_text(EARLIER.replace("name: a", "name: b") + f"warm_start: {warm}\n")
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{path}: {field}: " in err and message in err, err


def test_an_earlier_search_that_cannot_be_used_stops_the_run_before_anything_is_written(tmp_path, earlier_folder, capsys):
    cases = [
        ("{search: nope}", "warm_start.search", "no search named 'nope' under"),
        ("{search: a}", "warm_start.search", "optimised val_loss (min), this one val_ppl (min)"),
        (f"{{experiment: nope, tracking: 'sqlite:///{tmp_path / 'm.db'}'}}", "warm_start.experiment",
         "no MLflow experiment named 'nope'"),
        (f"{{experiment: a, tracking: 'sqlite:///{tmp_path / 'none.db'}'}}", "warm_start.tracking",
         "no MLflow database at"),
        ("{experiment: a, tracking: 'ftp://x'}", "warm_start.tracking", "no store for the scheme 'ftp'"),
    ]
    _mlflow.client_for(f"sqlite:///{tmp_path / 'm.db'}").create_experiment("other")
    capsys.readouterr()  # MLflow's notes on creating that database
    for warm, field, message in cases:
        path = tmp_path / "b.yaml"
        text = EARLIER.replace("name: a", "name: b") + f"storage: {tmp_path / 'runs'}\nwarm_start: {warm}\n"
        if "optimised" in message:  # this search optimises another metric than the earlier one
            text = text.replace("metric: val_loss", "metric: val_ppl")
        path.write_text(text)
        before = sorted(p.name for p in (tmp_path / "runs").iterdir())
        assert main(["run", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"{path}: {field}: " in err and message in err, err
        assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == before  # no folder, no database
    assert not (tmp_path / "none.db").exists()


def test_a_trainable_of_another_kind_is_refused(tmp_path, earlier_folder, capsys):
    resolved = earlier_folder / "search.yaml"
    resolved.write_text(resolved.read_text().replace("trainable: synthetic", "trainable: rnn"))
    with pytest.raises(spaces.SpecError, match="'a' searched trainable 'rnn', this search 'synthetic'"):
        _warmstart.prepare(_new(tmp_path, "{search: a}"))


# --- real searches --------------------------------------------------------------------------------
LOAD = spaces.CATALOGUE / "synthetic_load.yaml"
# One trial at a time: each suggestion follows the last tell, so a seeded TPE proposes the same
# configs on every run, and ASHA (grace 1, max_t 2) stops some trials: the earlier study holds PRUNED ones.
SMALL = ["budget.max_concurrent=1", "epochs=2", "scheduler.max_t=2", "scheduler.grace_period=1"]


def _first_reaching(outcome, target: float) -> int | None:
    """1-based number, among the search's own trials in the order asked, of the first at or below target."""
    own = [t for t in load_study(outcome.experiment_dir).trials if _warmstart.SOURCE_ATTR not in t.user_attrs]
    return next((i for i, t in enumerate(own, 1) if t.value is not None and t.value <= target), None)


@pytest.mark.slow
def test_a_warm_started_tpe_search_reaches_the_earlier_best_sooner_than_a_cold_one(ray_session, tmp_path):
    storage = tmp_path / "runs"
    earlier = search.run(spaces.load(LOAD, [*SMALL, "name=earlier", "budget.trials=8", f"storage={storage}"]))
    counts = earlier.counts()
    assert counts[metrics.STOPPED_EARLY] >= 1 and counts[metrics.COMPLETED] >= 1
    target = earlier.best.best

    later = [*SMALL, "budget.trials=8", "sampler.seed=1", f"storage={storage}"]
    cold = search.run(spaces.load(LOAD, [*later, "name=cold"]))
    warm = search.run(spaces.load(LOAD, [*later, "name=warm", "warm_start.search=earlier"]))
    n_cold, n_warm = _first_reaching(cold, target), _first_reaching(warm, target)
    print(f"earlier best {target:.4f}; reached after {n_warm} warm trials, {n_cold} cold (of 8)")
    assert n_warm is not None and (n_cold is None or n_warm < n_cold), (n_warm, n_cold)

    # Every finished trial of the earlier search was taken (the space is the same), with its state.
    study = load_study(warm.experiment_dir)
    seeded = [t for t in study.trials if _warmstart.SOURCE_ATTR in t.user_attrs]
    before = load_study(earlier.experiment_dir).trials
    assert [(t.state, t.params, t.value, t.intermediate_values) for t in seeded] == \
        [(t.state, t.params, t.value, t.intermediate_values) for t in before]
    assert seeded[0].number == 0  # before the first suggestion
    assert len(warm.trials) == 8  # the budget counts the new search's own trials only
    client = _mlflow.client_for(warm.tracking_uri)
    parent = client.get_run(warm.parent_run_id)
    assert parent.data.params["warm_start.taken"] == "8" and parent.data.params["warm_start.skipped"] == "0"
    assert parent.data.tags[tags.WARM_START].startswith(f"search earlier in {storage}: 8 trials taken")
    assert parent.data.tags["tunelab.n_completed"] != "" and "warm_start.taken" not in client.get_run(cold.parent_run_id).data.params
