"""Files a trial leaves with its last checkpoint for the record, logged on its MLflow child run.

A trainable puts them under its state's ``trainables._report.ARTIFACTS`` key; the report helper writes
them into the checkpoint folder's ``artifacts/`` (the arithmetic GPT's attention maps, for one). When
the trial ends, the driver copies that folder to the root of the trial's run, where ``analysis``
reads them back. Only the driver talks to MLflow, and trials need not see the tracking server.
"""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from tunelab.trainables._report import ARTIFACTS


def log_checkpoint_artifacts(client: MlflowClient, run_id: str, trial) -> list[str]:
    """Log the ``artifacts/`` files of ``trial``'s latest checkpoint on run ``run_id``.

    Args:
        client: the driver's MLflow client.
        run_id: the trial's child run.
        trial: the Ray Tune trial (its ``checkpoint`` is the latest one Ray kept).

    Returns:
        The names of the files logged (none when the checkpoint has no such folder).
    """
    checkpoint = trial.checkpoint
    if checkpoint is None:
        return []
    with checkpoint.as_directory() as path:
        folder = Path(path) / ARTIFACTS
        if not folder.is_dir():
            return []
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        if names:
            client.log_artifacts(run_id, str(folder))
    return names
