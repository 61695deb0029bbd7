"""A small MLflow store written with ``MlflowClient`` in the layout ``search`` writes.

Made-up but plausible numbers (STYLE rule 11): an RNN search with repeated seeds, ASHA-stopped and
diverged trials and an earlier launch of the same search; a GPT search over three FLOP budgets whose
losses lie on known parabolas in log(params); an experiment whose search has no trials.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from tunelab.trainables import metrics

RNN = "fixture-rnn"
GPT = "fixture-gpt"
EMPTY = "fixture-empty"
T0 = 1_700_000_000_000  # ms
# GPT fixture: the compute-optimal size grows as N*(C) = K * C**ALPHA; losses are exact parabolas in
# ln N around it, so the iso-FLOP fit must give back ALPHA.
ALPHA, K = 0.5, 0.05
BUDGETS = (1e13, 1e14, 1e15)
SIZE_FACTORS = (1 / 8, 1 / 3, 1.0, 3.0, 8.0)

# (cell, lr, dropout, seed, epochs run, status). The first three repeat one config over seeds.
RNN_TRIALS = [
    ("lstm", 1.0, 0.2, 0, 6, metrics.COMPLETED),
    ("lstm", 1.0, 0.2, 1, 6, metrics.COMPLETED),
    ("lstm", 1.0, 0.2, 2, 6, metrics.COMPLETED),
    ("gru", 2.0, 0.0, 0, 6, metrics.COMPLETED),
    ("gru", 2.0, 0.0, 1, 2, metrics.STOPPED_EARLY),
    ("lstm", 8.0, 0.5, 0, 1, metrics.STOPPED_EARLY),
    ("gru", 15.0, 0.1, 0, 1, metrics.STATUS_DIVERGED),
    ("lstm", 0.5, 0.3, 0, 2, metrics.STOPPED_EARLY),
]
RNN_FIXED = {"hidden_size": 64, "num_layers": 1, "epochs": 6, "optimizer": "sgd", "emb_size": None,
             "tie_weights": False, "train_fraction": 0.05}


@dataclasses.dataclass
class Store:
    uri: str
    root: Path
    rnn_parent: str
    rnn_old_parent: str
    gpt_parent: str


def _rnn_curve(cell: str, lr: float, dropout: float, seed: int, epochs: int, diverged: bool) -> list[dict]:
    """Per-epoch reports of a made-up PTB run: training loss falls; validation loss turns up again
    (overfitting) after an epoch that depends on dropout, so its best epoch is not always the last."""
    rows = []
    params = 658_448 if cell == "lstm" else 656_336
    jitter = 0.02 * (seed - 1)
    turn = 2 + round(6 * dropout)
    best = math.inf
    for e in range(1, epochs + 1):
        if diverged:
            train_loss = val_loss = math.inf
        else:
            train_loss = 5.0 + 1.5 / e + 0.05 * abs(math.log(lr)) + jitter
            val_loss = 5.2 + 1.2 / e + 0.04 * max(0, e - turn) + 0.05 * abs(math.log(lr)) + 0.3 * dropout**2 + jitter
        val_ppl = math.exp(val_loss) if math.isfinite(val_loss) else math.inf
        best = min(best, val_ppl)
        last = e == epochs
        rows.append({
            metrics.TRAIN_LOSS: train_loss, metrics.VAL_LOSS: val_loss,
            metrics.TRAIN_PPL: math.exp(train_loss) if math.isfinite(train_loss) else math.inf,
            metrics.VAL_PPL: val_ppl, metrics.BEST_VAL_PPL: best,
            metrics.TRAIN_ACC: 0.1 + 0.02 * e, metrics.VAL_ACC: 0.09 + 0.015 * e,
            metrics.EPOCH: e, metrics.STEP: 115 * e, metrics.TOKENS: 46_000 * e,
            metrics.FLOPS: 46_000 * e * 6 * params, metrics.LR: lr / (2 ** max(0, e - 2)),
            metrics.WALL_S: (4.0 + (1.0 if cell == "gru" else 0.0)) * e + 0.1 * seed,
            metrics.TOKENS_PER_S: 11_000.0, metrics.MEM_PEAK_MB: 300.0 + 2 * e + (5 if cell == "gru" else 0),
            metrics.PARAMS: params, metrics.PARAMS_NONEMBED: params - 640_000, metrics.PARAM_NORM: 20.0 + e,
            metrics.DIVERGED: float(diverged and last), metrics.OOM: 0.0,
            metrics.FINISHED: float(last and epochs == 6 and not diverged),
            "training_iteration": e, "time_total_s": 4.5 * e,
        })
    if epochs == 6 and not diverged:
        rows[-1][metrics.TEST_PPL] = min(r[metrics.VAL_PPL] for r in rows) * 0.97
    return rows


def gpt_point(budget: float, factor: float) -> tuple[int, float]:
    """(params, final val_loss) of the made-up GPT trial at ``factor`` × the optimal size."""
    n_opt = K * budget**ALPHA
    n = int(round(n_opt * factor))
    loss_opt = 1.8 + 40 * budget**-0.1
    return n, loss_opt + 0.2 * math.log(n / n_opt) ** 2


def _gpt_curve(budget: float, factor: float) -> list[dict]:
    n, final = gpt_point(budget, factor)
    rows = []
    for i in range(1, 5):
        frac = i / 4
        val_loss = final + 1.5 * (1 - frac)  # falls to `final` at the last evaluation: best = last
        rows.append({
            metrics.TRAIN_LOSS: val_loss - 0.05, metrics.VAL_LOSS: val_loss,
            metrics.TRAIN_PPL: math.exp(val_loss - 0.05), metrics.VAL_PPL: math.exp(val_loss),
            metrics.BEST_VAL_PPL: math.exp(val_loss), metrics.EPOCH: 0.1 * i, metrics.STEP: 50 * i,
            metrics.TOKENS: 50 * i * 8192, metrics.FLOPS: budget * frac, metrics.LR: 1e-3 * (1 - frac),
            metrics.WALL_S: 1e-11 * budget * frac + 0.3 * math.log(n), metrics.TOKENS_PER_S: 50_000.0,
            metrics.MEM_PEAK_MB: 100 + n / 1e4, metrics.PARAMS: n, metrics.PARAMS_NONEMBED: int(0.8 * n),
            metrics.PARAM_NORM: 30.0, metrics.DIVERGED: 0.0, metrics.OOM: 0.0, metrics.FINISHED: float(i == 4),
            "training_iteration": i, "time_total_s": 2.0 * i,
        })
    return rows


def _log_run(client, exp_id, parent_id, number, trial_id, config, sampled, rows, status, start):
    from mlflow.entities import Metric, Param, RunTag

    name = " ".join([f"t{number:03d}", *(f"{k}={config[k]}" for k in sampled)])
    run = client.create_run(exp_id, start_time=start, run_name=name, tags={
        "mlflow.parentRunId": parent_id, "tunelab.trial_id": trial_id, "tunelab.status": "running"})
    rid = run.info.run_id
    ms = [Metric(k, float(v), start + 1000 * step, step) for step, row in enumerate(rows, 1) for k, v in row.items()]
    client.log_batch(rid, metrics=ms, params=[Param(k, str(v)) for k, v in sorted(config.items())],
                     tags=[RunTag("tunelab.status", status)])
    client.set_terminated(rid, "FAILED" if status == metrics.ERROR else "FINISHED",  # as search._children ends runs
                          end_time=start + 1000 * len(rows) + 500)
    return rid


def _parent(client, exp_id, name, trainable, metric, counts, start, scheduler="asha", log_params=""):
    from mlflow.entities import Metric, Param

    run = client.create_run(exp_id, start_time=start, run_name=f"{name} (search)", tags={
        "tunelab.spec_hash": "0" * 16, "tunelab.trainable": trainable, "tunelab.sampler": "tpe",
        "tunelab.scheduler": scheduler, "tunelab.log_params": log_params})
    client.log_batch(run.info.run_id, params=[Param("metric", metric), Param("mode", "min")],
                     metrics=[Metric(f"n_{k}", float(v), start, 0) for k, v in counts.items()])
    return run.info.run_id


def build_store(root: Path, uri: str | None = None) -> Store:
    """Write the fixture experiments into ``uri`` (default ``root/mlflow.db``; artifacts under
    ``root/mlartifacts``)."""
    from mlflow.tracking import MlflowClient

    root.mkdir(parents=True, exist_ok=True)
    uri = uri or f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    art = (root / "mlartifacts").resolve().as_uri()

    exp = client.create_experiment(RNN, artifact_location=art)
    # An earlier launch of the same search: two trials, must not be picked by default.
    old = _parent(client, exp, RNN, "rnn", metrics.VAL_PPL, {metrics.COMPLETED: 2}, T0 - 10**7)
    for i, seed in enumerate((5, 6)):
        cfg = {**RNN_FIXED, "cell": "lstm", "lr": 3.0, "dropout": 0.0, "seed": seed}
        _log_run(client, exp, old, i, f"old{i:05d}", cfg, ("cell", "lr"), _rnn_curve("lstm", 3.0, 0.0, seed, 6, False),
                 metrics.COMPLETED, T0 - 10**7 + 1000 * i)
    counts = {s: sum(t[5] == s for t in RNN_TRIALS) for s in metrics.STATUSES}
    counts[metrics.INFEASIBLE] = 2
    parent = _parent(client, exp, RNN, "rnn", metrics.VAL_PPL, counts, T0, log_params="lr")
    for i, (cell, lr, dropout, seed, epochs, status) in enumerate(RNN_TRIALS):
        cfg = {**RNN_FIXED, "cell": cell, "lr": lr, "dropout": dropout, "seed": seed}
        rows = _rnn_curve(cell, lr, dropout, seed, epochs, status == metrics.STATUS_DIVERGED)
        _log_run(client, exp, parent, i, f"rnn{i:05d}", cfg, ("cell", "lr", "dropout", "seed"), rows, status,
                 T0 + 1000 * i)
    client.set_terminated(parent, "FINISHED")

    exp = client.create_experiment(GPT, artifact_location=art)
    gpt_parent = _parent(client, exp, GPT, "gpt", metrics.VAL_LOSS,
                         {metrics.COMPLETED: len(BUDGETS) * len(SIZE_FACTORS)}, T0, scheduler="fifo")
    number = 0
    for budget in BUDGETS:
        for factor in SIZE_FACTORS:
            n, _ = gpt_point(budget, factor)
            cfg = {"flop_budget": budget, "n_embd": 64 * (number % 4 + 1), "n_layer": number % 3 + 1,
                   "seed": 0, "batch_size": 32, "seq_len": None}
            _log_run(client, exp, gpt_parent, number, f"gpt{number:05d}", cfg, ("flop_budget", "n_embd", "n_layer"),
                     _gpt_curve(budget, factor), metrics.COMPLETED, T0 + 1000 * number)
            number += 1
    client.set_terminated(gpt_parent, "FINISHED")

    exp = client.create_experiment(EMPTY, artifact_location=art)
    _parent(client, exp, EMPTY, "rnn", metrics.VAL_PPL, {}, T0)
    return Store(uri, root, parent, old, gpt_parent)
