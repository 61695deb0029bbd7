"""analysis._schema: what a runs table's columns mean, read from hand-built tables and their metadata."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hand_tables import runs_table

from tunelab.analysis._schema import (
    RUN_COLUMNS,
    metric_keys,
    metric_mode,
    param_columns,
    search_info,
    varied_params,
)
from tunelab.trainables import metrics


@pytest.mark.parametrize(("key", "mode"), [
    (metrics.TRAIN_LOSS, "min"), (metrics.VAL_LOSS, "min"),
    (metrics.TRAIN_PPL, "min"), (metrics.VAL_PPL, "min"), (metrics.TEST_PPL, "min"), (metrics.BEST_VAL_PPL, "min"),
    (metrics.TRAIN_ACC, "max"), (metrics.VAL_ACC, "max"), (metrics.TEST_ACC, "max"),
    (metrics.VAL_LOSS_O3, "min"), (metrics.TRAIN_ACC_O2, "max"),  # one operation order's
])
def test_losses_and_perplexities_fall_accuracies_rise(key, mode):
    assert metric_mode(key) == mode


def test_a_lab_s_own_metric_goes_the_way_its_search_did_when_it_is_the_objective():
    assert metric_mode("my_lab_loss") is None and metric_mode("top1_acc") is None  # not guessed from the name
    assert metric_mode("top1_acc", "top1_acc", "max") == "max"
    assert metric_mode("my_lab_loss", "top1_acc", "max") is None


@pytest.mark.parametrize("key", [
    metrics.EPOCH, metrics.STEP, metrics.TOKENS, metrics.FLOPS, metrics.LR, metrics.WALL_S, metrics.TOKENS_PER_S,
    metrics.MEM_PEAK_MB, metrics.PARAMS, metrics.PARAM_NORM, metrics.DIVERGED, metrics.FINISHED, metrics.COMPUTE,
    # the steps of an extremum end in _t_f so that they are not taken for a loss or an accuracy
    metrics.VAL_LOSS_T_F, metrics.TRAIN_ACC_T_F, metrics.LOSS_DELTA_T, metrics.ACC_DELTA_T,
    "accuracy", "loss_scale", "",
])
def test_counters_and_other_metrics_have_no_direction(key):
    assert metric_mode(key) is None


def test_a_table_without_metadata_describes_a_default_search():
    info = search_info(runs_table({"run_id": ["a"]}))
    assert info == {"params": [], "parent_tags": {}, "parent_metrics": {}, "parent_params": {},
                    "metric": "val_ppl", "mode": "min"}


def test_other_schema_metadata_is_not_the_search():
    table = pa.table({"run_id": ["a"]}).replace_schema_metadata({b"pandas": b"{}"})
    assert search_info(table)["metric"] == "val_ppl" and search_info(table)["params"] == []


def test_metric_and_mode_come_from_the_parents_params():
    info = search_info(runs_table({"run_id": ["a"]}, {"parent_params": {"metric": "val_acc", "mode": "max"}}))
    assert (info["metric"], info["mode"]) == ("val_acc", "max")


def test_a_mode_the_parent_does_not_give_follows_the_metric():
    info = search_info(runs_table({"run_id": ["a"]}, {"parent_params": {"metric": "test_acc"}}))
    assert (info["metric"], info["mode"]) == ("test_acc", "max")  # not the "min" of the default metric
    info = search_info(runs_table({"run_id": ["a"]}, {"parent_params": {"metric": "val_loss"}}))
    assert info["mode"] == "min"


def test_the_parents_mode_wins_over_the_metrics_direction():
    info = search_info(runs_table({"run_id": ["a"]}, {"parent_params": {"metric": "val_acc", "mode": "min"}}))
    assert info["mode"] == "min"


def test_a_metric_with_no_direction_is_minimised_unless_the_parent_says():
    info = search_info(runs_table({"run_id": ["a"]}, {"parent_params": {"metric": metrics.WALL_S}}))
    assert (info["metric"], info["mode"]) == ("wall_s", "min")
    info = search_info(runs_table({"run_id": ["a"]}, {"parent_params": {"metric": metrics.FLOPS, "mode": "max"}}))
    assert info["mode"] == "max"


def test_metric_and_mode_stored_in_the_description_itself_win():
    info = search_info(runs_table({"run_id": ["a"]}, {
        "metric": "val_loss", "mode": "max", "parent_params": {"metric": "val_acc", "mode": "min"}}))
    assert (info["metric"], info["mode"]) == ("val_loss", "max")


def test_search_info_returns_the_stored_description_whole():
    stored = {"experiment": "ptb", "experiment_id": "7", "parent_run_id": "p1", "params": ["lr"],
              "parent_tags": {"tunelab.scheduler": "asha"}, "parent_metrics": {"n_infeasible": 2.0},
              "parent_params": {"metric": "val_ppl", "mode": "min"}}
    table = pa.table({"run_id": ["a"]}).replace_schema_metadata({b"tunelab": json.dumps(stored).encode()})
    assert search_info(table) == {**stored, "metric": "val_ppl", "mode": "min"}


def test_param_columns_follow_the_table_not_the_description():
    runs = runs_table({"run_id": ["a"], "seed": [0], "cell": ["lstm"], "lr": [1.0], "last_val_ppl": [90.0]},
                      {"params": ["lr", "cell", "seed", "gone"]})
    assert param_columns(runs) == ["seed", "cell", "lr"]  # table order; "gone" is no column
    assert param_columns(runs_table({"run_id": ["a"], "lr": [1.0]})) == []  # no description: no params


def test_varied_params_need_two_values_and_nulls_count_as_one():
    runs = runs_table({
        "run_id": ["a", "b", "c"],
        "lr": [0.1, 0.2, 0.1],
        "hidden_size": [64, 64, 64],
        "emb_size": [None, None, None],
        "dropout": [None, 0.2, None],  # unset in two trials, set in one: varied
        "seed": [0, 1, 2],
        "cell": ["lstm", "lstm", "gru"],
    }, {"params": ["cell", "dropout", "emb_size", "hidden_size", "lr", "seed"]})
    assert varied_params(runs) == ["lr", "dropout", "seed", "cell"]
    assert varied_params(runs, exclude=("seed", "cell")) == ["lr", "dropout"]


def test_varied_params_of_one_trial_or_none_are_none():
    info = {"params": ["lr"]}
    assert varied_params(runs_table({"run_id": ["a"], "lr": [0.1]}, info)) == []
    empty = runs_table({"run_id": pa.array([], pa.string()), "lr": pa.array([], pa.float64())}, info)
    assert varied_params(empty) == [] and param_columns(empty) == ["lr"]


def test_a_column_not_in_the_description_never_varies():
    runs = runs_table({"run_id": ["a", "b"], "status": ["completed", "diverged"], "lr": [0.1, 0.1]},
                      {"params": ["lr"]})
    assert varied_params(runs) == []


def test_metric_keys_are_the_last_columns_less_any_parameter_named_so():
    runs = runs_table({
        "run_id": ["a"], "last_val_ppl": [90.0], "best_val_ppl": [80.0], "last_epoch": [6.0],
        "last_k": [3], "last_wall_s": [12.5],
    }, {"params": ["last_k"]})
    assert metric_keys(runs) == ["val_ppl", "epoch", "wall_s"]
    assert metric_keys(runs_table({name: pa.array([], pa.string()) for name in RUN_COLUMNS})) == []

