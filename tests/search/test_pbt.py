"""Population Based Training (issue 21): the search file's checks, the mutations' bounds, the population
drawn by the sampler or taken from a warm start, and real PBT searches through Ray, Optuna and MLflow."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tunelab import _lineage, _mlflow, _private, spaces
from tunelab.search import _population
from tunelab.search.cli import main
from tunelab.trainables import metrics, tags

# A tiny PBT search on PTB: three members of a 16-wide LSTM, four short epochs, a perturbation at every
# epoch, the bottom half copying the top half. Its learning rates span 400x, so members differ at once.
PBT = {
    "name": "pbt-tiny", "trainable": "rnn", "metric": "val_ppl", "mode": "min",
    "fixed": {"cell": "lstm", "hidden_size": 16, "num_layers": 1, "bptt": 20, "batch_size": 20, "epochs": 4,
              "train_fraction": 0.005, "eval_fraction": 0.02, "lr_schedule": "constant"},
    "space": {"lr": {"loguniform": [0.05, 20.0]}, "dropout": {"uniform": [0.0, 0.5]}},
    "scheduler": {"name": "pbt", "time_attr": "epoch", "perturbation_interval": 1, "quantile_fraction": 0.5,
                  "mutations": ["lr", "dropout"]},
    "budget": {"trials": 3, "max_concurrent": 3},
    "resources": {"cpu": 0.5, "gpu": 0},
    "data": {"corpus": "ptb", "dir": None},
}


def _spec(tmp_path, **changes) -> dict:
    spec = json.loads(json.dumps(PBT))
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            spec[section][field] = value
        else:
            spec[section] = value
    spec["storage"] = str(tmp_path / "runs")
    return spec


# --- the search file -----------------------------------------------------------------------------------

@pytest.mark.parametrize("change, field, expected", [
    ({"scheduler__mutations": ["lr", "momentum"]}, "scheduler.mutations[1]", "unknown mutated parameter 'momentum'"),
    ({"budget__trials": 1}, "budget.trials", "at least 2 members"),
    ({"sampler": {"name": "grid"}, "space": {"lr": {"choice": [0.1, 1.0]}, "dropout": {"choice": [0.0, 0.5]}}},
     "sampler.name", "grid cannot draw a pbt population"),
    ({"space": {"lr": {"loguniform": [0.05, 20.0]}, "dropout": {"grid": [0.0, 0.5]}}}, "space.dropout",
     "grid parameters are not drawn"),
    ({"scheduler__mutations": []}, "scheduler", "needs mutations"),
    ({"scheduler": {"name": "asha", "mutations": ["lr"]}}, "scheduler", "mutations applies to the pbt and pb2"),
    ({"space": {"lr": {"loguniform": [0.05, 20.0]}, "dropout": {"uniform": [0.0, 0.5], "when": {"cell": "lstm"}}}},
     "scheduler.mutations[1]", "conditional"),
])
def test_bad_pbt_files_exit_2_naming_the_file_and_the_field(tmp_path, capsys, change, field, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_spec(tmp_path, **change)))
    with pytest.raises(spaces.SpecError) as err:
        spaces.load(path)
    assert err.value.field == field and expected in str(err.value), str(err.value)
    assert main(["run", str(path)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(path) in line and field in line and expected in line


def test_a_pbt_file_without_a_sampler_draws_its_population_quasi_randomly(tmp_path):
    s = spaces.load(_spec(tmp_path))
    assert s.spec.sampler.name == "qmc"
    assert spaces.load(_spec(tmp_path, sampler={"name": "tpe"})).spec.sampler.name == "tpe"


# --- mutations -------------------------------------------------------------------------------------------

def test_mutations_stay_inside_their_distributions_over_many_perturbations(tmp_path):
    space = {"lr": {"loguniform": [0.05, 20.0]}, "dropout": {"uniform": [0.0, 0.5]}, "decay_start": {"int": [2, 8]},
             "batch_size": {"logint": [8, 64]}, "bptt": {"int": [10, 40], "step": 5},
             "cell": {"choice": ["lstm", "gru"]}}
    s = spaces.load(_spec(tmp_path, space=space, scheduler__mutations=list(space), fixed={"epochs": 2}))
    params = {name: s.space.params[name] for name in space}
    explorer = _population.Explorer(params, lambda config: None, resample_probability=0.25, factors=(1.2, 0.8), seed=1)
    config = {"lr": 1.0, "dropout": 0.25, "decay_start": 4, "batch_size": 20, "bptt": 20, "cell": "lstm"}
    seen = {name: set() for name in space}
    for _ in range(3000):
        config = explorer(config)
        for name, p in params.items():
            value = config[name]
            seen[name].add(value)
            if p.kind == "choice":
                assert value in p.values
                continue
            low, high = p.values
            assert low <= value <= high, (name, value)
            if p.kind in ("int", "logint"):
                assert isinstance(value, int)
        assert (config["bptt"] - 10) % 5 == 0
    assert min(seen["lr"]) < 0.1 and max(seen["lr"]) > 10  # the whole range is reached, on its log scale
    assert {0.0, 0.5} <= seen["dropout"]  # clipped at both bounds, not stuck there
    assert seen["decay_start"] == set(range(2, 9)) and seen["cell"] == {"lstm", "gru"}


def test_a_loguniform_value_is_perturbed_multiplicatively_and_a_uniform_one_additively(tmp_path):
    s = spaces.load(_spec(tmp_path))
    rng = random.Random(0)
    lr, dropout = s.space.params["lr"], s.space.params["dropout"]
    assert {_population.perturb(lr, 1.0, rng, 0.0, (1.2, 0.8)) for _ in range(50)} == {1.2, 0.8}
    shifted = {round(_population.perturb(dropout, 0.2, rng, 0.0, (1.2, 0.8)), 9) for _ in range(50)}
    assert shifted == {0.3, 0.1}  # +-20% of the range [0, 0.5]


def test_an_explored_config_the_trainable_rejects_is_redrawn_else_the_copy_is_kept(tmp_path):
    s = spaces.load(_spec(tmp_path))
    params = {"lr": s.space.params["lr"]}
    low_only = _population.Explorer(params, lambda c: None if c["lr"] < 1.0 else "too fast", 0.0, (1.2, 0.8))
    assert all(low_only({"lr": 0.9})["lr"] < 1.0 for _ in range(30))
    never = _population.Explorer(params, lambda c: "no", 0.0, (1.2, 0.8))
    assert never({"lr": 0.9}) == {"lr": 0.9}


# --- the population ------------------------------------------------------------------------------------

def _finished(value: float, lr: float, dropout: float, state=TrialState.COMPLETE):
    return create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                        params={"lr": lr, "dropout": dropout},
                        distributions={"lr": FloatDistribution(0.05, 20.0, log=True),
                                       "dropout": FloatDistribution(0.0, 0.5)})


def test_the_population_is_drawn_by_the_sampler_each_member_feasible_and_distinct(tmp_path):
    s = spaces.load(_spec(tmp_path, budget__trials=8))
    population = _population.draw(s)
    assert len(population.members) == 8 and population.warm == 0
    assert len({m["lr"] for m in population.members}) == 8
    assert all(0.05 <= m["lr"] <= 20 and 0 <= m["dropout"] <= 0.5 for m in population.members)


def test_a_warm_started_population_holds_the_earlier_search_s_best_configs(tmp_path):
    s = spaces.load(_spec(tmp_path, budget__trials=3))
    earlier = [_finished(300.0, 1.0, 0.1), _finished(150.0, 2.0, 0.2), _finished(900.0, 0.1, 0.3),
               _finished(200.0, 3.0, 0.4), _finished(0.0, 9.0, 0.4, state=TrialState.PRUNED),
               _finished(float("inf"), 19.0, 0.0)]
    population = _population.draw(s, earlier)
    assert population.members == [{"lr": 2.0, "dropout": 0.2}, {"lr": 3.0, "dropout": 0.4},
                                   {"lr": 1.0, "dropout": 0.1}]
    assert population.warm == 3
    few = _population.draw(spaces.load(_spec(tmp_path, budget__trials=4)), earlier[:1])
    assert few.members[0] == {"lr": 1.0, "dropout": 0.1} and few.warm == 1 and len(few.members) == 4


@pytest.mark.slow
def test_a_warm_start_from_a_finished_search_seeds_the_population_with_its_best(tiny_search, tmp_path):
    """The shared tiny TPE + ASHA search (synthetic) hands its finished winner to a PBT population."""
    spec = {"name": "pbt-warm", "trainable": "synthetic", "metric": "val_loss", "mode": "min",
            "fixed": {"epochs": 4, "checkpoint": True}, "data": {"corpus": "none"},
            "space": {"x": {"uniform": [-1.0, 1.0]}, "y": {"uniform": [-1.0, 1.0]}},
            "scheduler": {"name": "pbt", "time_attr": "epoch", "mutations": ["x"]}, "budget": {"trials": 3},
            "warm_start": {"search": tiny_search.experiment_dir.name,
                           "storage": str(tiny_search.experiment_dir.parent)}}
    from tunelab.search import _warmstart

    s = spaces.load(spec)
    population = _population.draw(s, _warmstart.prepare(s).trials)
    assert population.members[0] == {"x": 0.3, "y": -0.2} and population.warm == 1


# --- real PBT searches ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pbt_search(ray_session, tmp_path_factory, data_dir):
    from tunelab import search

    tmp = tmp_path_factory.mktemp("pbt")
    outcome = search.run(spaces.load(_spec(tmp)))
    client = _mlflow.client_for(outcome.tracking_uri)
    kids = _mlflow.children(client, client.get_run(outcome.parent_run_id).info.experiment_id, outcome.parent_run_id)
    return outcome, client, kids


@pytest.mark.slow
def test_a_pbt_search_exploits_and_records_the_lineage_and_the_schedule(pbt_search):
    outcome, client, kids = pbt_search
    names = {r.info.run_name.split(" ")[0]: r for r in kids}
    assert len(kids) == 3 and all(r.info.status == "FINISHED" for r in kids)
    assert all(r.data.tags[tags.STATUS] == metrics.COMPLETED for r in kids)
    exploiting = [r for r in kids if tags.LINEAGE in r.data.tags]
    assert exploiting, "no member exploited another"
    for run in exploiting:
        lineage = json.loads(run.data.tags[tags.LINEAGE])
        me = run.info.run_name.split(" ")[0]
        assert all(e["from"] in names and e["from"] != me for e in lineage)
        history = client.get_metric_history(run.info.run_id, "hp/lr")
        first = lineage[0]
        before = [m.value for m in history if m.step == first["step"]]
        after = [m.value for m in history if m.step == first["step"] + 1]
        # the schedule changes value at the exploit: the member goes on with the copied lr, perturbed
        assert after and after[-1] == pytest.approx(first["config"]["lr"])
        assert before and before[0] != after[-1]
        assert set(first["config"]) == {"lr", "dropout"}
    exploits = [json.loads(line) for line in (outcome.experiment_dir / _private.LINEAGE_FILE).read_text().splitlines()]
    assert len(exploits) == sum(len(json.loads(r.data.tags[tags.LINEAGE])) for r in exploiting)


@pytest.mark.slow
def test_the_parent_names_the_winner_and_its_lineage(pbt_search):
    outcome, client, kids = pbt_search
    parent = client.get_run(outcome.parent_run_id)
    note = parent.data.tags[tags.NOTE]
    assert "PBT on `epoch` every 1, mutating `lr`, `dropout` (population 3)" in note
    assert f"trial [{outcome.best.name}]" in note
    lineages = {r.info.run_name.split(" ")[0]: _lineage.parse(r.data.tags.get(tags.LINEAGE)) for r in kids}
    if any(lineages.values()):
        tree = _lineage.family_tree(lineages, outcome.best.name, outcome.best.iterations)
        assert _lineage.describe(tree) in note


def _tunelab(*args: str) -> list[str]:
    return [sys.executable, "-m", "tunelab.search.cli", *args]


@pytest.mark.slow
def test_kill_9_a_pbt_driver_then_resume_finishes_every_member(tmp_path, data_dir):
    """The driver dies mid-population; `tunelab resume` runs every member to its end, one run each."""
    path = tmp_path / "pbt.yaml"
    spec = _spec(tmp_path, fixed={**PBT["fixed"], "epochs": 6})
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    root = tmp_path / "runs"
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen(_tunelab("run", str(path)), stdout=log, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)
    folder = root / "pbt-tiny"
    deadline, client, kids = time.time() + 300, None, []
    while time.time() < deadline:  # until every member has reported twice
        time.sleep(2)
        if driver.poll() is not None:
            pytest.fail(f"driver ended before it was killed:\n{(tmp_path / 'driver.log').read_text()[-3000:]}")
        if not (folder / "tunelab.json").exists():
            continue
        client = client or _mlflow.client_for(f"sqlite:///{root / 'mlflow.db'}")
        state = json.loads((folder / "tunelab.json").read_text())
        kids = _mlflow.children(client, state["experiment_id"], state["parent_run_id"])
        if len(kids) == 3 and all(r.data.metrics.get("training_iteration", 0) >= 2 for r in kids):
            break
    else:
        pytest.fail("the search did not progress in time")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    proc = subprocess.run(_tunelab("resume", "pbt-tiny", "--storage", str(root)), capture_output=True, text=True,
                          env=env, timeout=600, start_new_session=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    kids = _mlflow.children(client, state["experiment_id"], state["parent_run_id"])
    assert len(kids) == 3 and len({r.data.tags[tags.TRIAL_ID] for r in kids}) == 3
    assert all(r.info.status == "FINISHED" and r.data.tags[tags.STATUS] == metrics.COMPLETED for r in kids), \
        [(r.info.run_name, r.info.status, r.data.tags.get(tags.STATUS)) for r in kids]
    assert all(r.data.metrics["epoch"] == 6 for r in kids)
    assert client.get_run(state["parent_run_id"]).info.status == "FINISHED"


@pytest.mark.slow
def test_report_on_a_pbt_search_draws_the_schedules_and_the_family_tree(pbt_search, tmp_path):
    from tunelab import analysis

    outcome, _, _ = pbt_search
    folder = analysis.report(outcome.name, outcome.tracking_uri, tmp_path / "report", log_artifacts=False)
    text = (folder / "report.md").read_text()
    assert "## Population Based Training" in text
    assert (folder / "figures" / "pbt_schedules.png").exists()
    assert (folder / "figures" / "pbt_family_tree.png").exists()
    runs, history = analysis.load(outcome.name, outcome.tracking_uri)
    assert analysis.plot_schedules(runs, history).caption.startswith("The value of each mutated parameter")


def test_pb2_needs_gpy_and_says_how_to_install_it_or_builds_ray_s_pb2(tmp_path):
    import importlib.util

    spec = _spec(tmp_path, scheduler={**PBT["scheduler"], "name": "pb2"})
    if importlib.util.find_spec("GPy") is None:
        with pytest.raises(spaces.SpecError) as err:
            spaces.load(spec)
        assert err.value.field == "scheduler.name" and "pip install 'tunelab[pb2]'" in str(err.value)
        return
    s = spaces.load(spec)
    from ray.tune.schedulers.pb2 import PB2

    assert isinstance(_population.scheduler(s), PB2)
    with pytest.raises(spaces.SpecError, match="pb2 mutates numeric parameters only"):
        spaces.load(_spec(tmp_path, scheduler={**spec["scheduler"], "mutations": ["cell"]},
                          space={**PBT["space"], "cell": {"choice": ["lstm", "gru"]}}, fixed={"epochs": 2}))
