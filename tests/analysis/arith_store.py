"""A made-up arithmetic search (seed report 002) in an MLflow store, in the layout ``search`` writes.

GPT and LSTM, d_model 64 and 128, seeds 0 and 1: eight trials evaluated every 100 steps up to 1,000.
The curves are built so that every extremum metric is known exactly (STYLE rule 11):

- training accuracy climbs linearly to 1 at ``fit`` and stays there: t_f(A_train) = fit;
- validation accuracy climbs linearly to ``top`` at ``grok`` and stays: t_f(A_val) = grok;
- training loss falls linearly to 0.01 at the last step: t_f(L_train) = 1,000;
- validation loss is V-shaped with its minimum 0.5 at ``grok``: t_f(L_val) = grok.

GPT trials also carry ``attention.json`` as the driver logs it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from tunelab.trainables import metrics
from tunelab.trainables.arith.config import ATTENTION_ARTIFACT, ArithConfig, params_nonembed

ARITH = "fixture-arith"
T0 = 1_700_000_000_000  # ms
STEPS = list(range(100, 1001, 100))
PARAMS = {(m, d): params_nonembed(ArithConfig(model=m, d_model=d)) for m in ("gpt", "lstm") for d in (64, 128)}


def fit(model: str, d: int, seed: int) -> int:
    return (200 if model == "gpt" else 300) + 100 * seed


def grok(model: str, d: int, seed: int) -> int:
    return (600 if d == 128 else 700) + (100 if model == "lstm" else 0) + 100 * seed


def top(model: str, d: int, seed: int) -> float:
    return 1.0 if model == "gpt" else 0.9


def curve(model: str, d: int, seed: int) -> list[dict]:
    f, g, a = fit(model, d, seed), grok(model, d, seed), top(model, d, seed)
    rows = []
    for i, step in enumerate(STEPS, start=1):
        rows.append({
            metrics.TRAIN_LOSS: 0.01 + 2.0 * (1000 - step) / 1000, metrics.VAL_LOSS: 0.5 + abs(step - g) / 100,
            metrics.TRAIN_ACC: min(step / f, 1.0), metrics.VAL_ACC: a * min(step / g, 1.0),
            metrics.STEP: step, metrics.TOKENS: 480 * 6 * step, metrics.EPOCH: float(step),
            metrics.PARAMS_NONEMBED: PARAMS[(model, d)], metrics.PARAMS: PARAMS[(model, d)] + 44 * d,
            metrics.PARAM_NORM: 40.0 - step / 100 - (10 if d == 128 else 0), metrics.WALL_S: 0.3 * step,
            metrics.COMPUTE: PARAMS[(model, d)] * 480 * step, metrics.DIVERGED: 0.0, metrics.OOM: 0.0,
            metrics.FINISHED: float(step == 1000), "training_iteration": i, "time_total_s": 0.3 * step,
        })
    g_l = min(STEPS, key=lambda s: (0.01 + 2.0 * (1000 - s) / 1000, s))
    rows[-1].update({metrics.TRAIN_LOSS_T_F: g_l, metrics.VAL_LOSS_T_F: g, metrics.TRAIN_ACC_T_F: f,
                     metrics.VAL_ACC_T_F: g, metrics.LOSS_DELTA_T: g - g_l, metrics.ACC_DELTA_T: g - f})
    return rows


def attention(seed: int) -> dict:
    """Causal attention weights (2 samples, 2 layers, 4 heads, 6 × 6), each row a distribution."""
    rng = np.random.default_rng(seed)
    w = np.tril(rng.random((2, 2, 4, 6, 6)) + 0.01)
    w /= w.sum(-1, keepdims=True)
    return {"tokens": [["BOS", "12", "+", "8", "=", "20"], ["BOS", "6", "+", "6", "=", "12"]],
            "weights": w.round(5).tolist(), "step": 1000}


@dataclasses.dataclass
class ArithStore:
    uri: str
    root: Path
    parent: str
    runs: dict  # (model, d, seed) -> run id


def build_arith_store(root: Path) -> ArithStore:
    """Write the made-up search into ``root/mlflow.db`` (artifacts under ``root/mlartifacts``)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(ARITH, artifact_location=(root / "mlartifacts").resolve().as_uri())
    parent = client.create_run(exp, start_time=T0, run_name=f"{ARITH} (search)", tags={
        "tunelab.spec_hash": "0" * 16, "tunelab.trainable": "arith", "tunelab.sampler": "grid",
        "tunelab.scheduler": "fifo"}).info.run_id
    client.log_batch(parent, params=[Param("metric", metrics.VAL_ACC), Param("mode", "max")],
                     metrics=[Metric(f"n_{metrics.COMPLETED}", 8.0, T0, 0)])
    ids = {}
    number = 0
    for model in ("gpt", "lstm"):
        for d in (64, 128):
            for seed in (0, 1):
                config = {"model": model, "d_model": d, "seed": seed, "p": 31, "op": "+", "orders": [2],
                          "r_train": 0.5, "num_layers": 2, "steps": 1000, "eval_every": 100}
                start = T0 + 10_000 * number
                run = client.create_run(exp, start_time=start, run_name=f"t{number:03d} model={model} d_model={d} "
                                        f"seed={seed}", tags={"mlflow.parentRunId": parent,
                                                               "tunelab.trial_id": f"ar{number:03d}",
                                                               "tunelab.status": "running"})
                rid = run.info.run_id
                ms = [Metric(k, float(v), start + 100 * i, i) for i, row in enumerate(curve(model, d, seed), 1)
                      for k, v in row.items()]
                client.log_batch(rid, metrics=ms, params=[Param(k, str(v)) for k, v in sorted(config.items())],
                                 tags=[RunTag("tunelab.status", metrics.COMPLETED)])
                if model == "gpt":
                    path = root / f"attention_{number}" / ATTENTION_ARTIFACT
                    path.parent.mkdir()
                    path.write_text(json.dumps(attention(seed)))
                    client.log_artifact(rid, str(path))
                client.set_terminated(rid, "FINISHED", end_time=start + 5_000)
                ids[(model, d, seed)] = rid
                number += 1
    client.set_terminated(parent, "FINISHED")
    return ArithStore(uri, root, parent, ids)
