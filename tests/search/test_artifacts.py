"""The files a trial leaves with its last checkpoint go onto its MLflow child run."""

from __future__ import annotations

import types

from mlflow.tracking import MlflowClient
from ray.tune import Checkpoint

from tunelab.search._artifacts import log_checkpoint_artifacts
from tunelab.trainables._report import ARTIFACTS


def test_checkpoint_artifacts_are_logged_on_the_run(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(exp).info.run_id
    folder = tmp_path / "checkpoint"
    (folder / ARTIFACTS).mkdir(parents=True)
    (folder / "state.pt").write_bytes(b"not logged")
    (folder / ARTIFACTS / "attention.json").write_text('{"step": 3}')
    trial = types.SimpleNamespace(checkpoint=Checkpoint.from_directory(str(folder)))
    assert log_checkpoint_artifacts(client, run, trial) == ["attention.json"]
    assert [a.path for a in client.list_artifacts(run)] == ["attention.json"]
    assert log_checkpoint_artifacts(client, run, types.SimpleNamespace(checkpoint=None)) == []
    (folder / ARTIFACTS / "attention.json").unlink()
    (folder / ARTIFACTS).rmdir()
    assert log_checkpoint_artifacts(client, run, trial) == []  # a checkpoint without artifacts
