"""The MLflow tag names tunelab writes and reads, in one place (free of torch, Ray and MLflow): the
search records them (``tunelab.search``), the analysis reads them back (``tunelab.analysis``), the UI's
saved view shows them. ``tests/test_vocabulary.py`` fails when a ``"tunelab.…"`` tag is spelt out
anywhere else.
"""

from __future__ import annotations

# MLflow's own tags that tunelab sets.
PARENT = "mlflow.parentRunId"  # a trial's child run -> the search's parent run
RUN_NAME = "mlflow.runName"
NOTE = "mlflow.note.content"  # a run's description in the MLflow UI

# On every child run (one per trial).
TRIAL_ID = "tunelab.trial_id"  # Ray's trial id
STATUS = "tunelab.status"  # how the trial ended: one of ``metrics.STATUSES`` ("running" meanwhile)
ERROR = "tunelab.error"  # the traceback of a trial that raised
# A PBT member's exploits: JSON list of {step, from (the t003 of the member copied), config (mutated values)}.
LINEAGE = "tunelab.lineage"

# On the parent run (one per search).
TRAINABLE = "tunelab.trainable"
SAMPLER = "tunelab.sampler"
SCHEDULER = "tunelab.scheduler"
SPEC_HASH = "tunelab.spec_hash"  # the resolved search file's hash
STORAGE = "tunelab.storage"  # the search's folder
OVERRIDES = "tunelab.overrides"  # the --set arguments, as given
WARM_START = "tunelab.warm_start"  # where the warm start's trials came from, how many
TRANSFER_FROM = "tunelab.transfer_from"  # ``tunelab transfer``: the parent run of the search whose configs it re-ran
# RUNNING, FINISHED, INTERRUPTED (MLflow: KILLED; resumable) or FAILED (``metrics``' states).
STATE = "tunelab.state"
STATE_REASON = "tunelab.state_reason"  # why it is INTERRUPTED or FAILED, in a line
# The sampled parameters whose distribution is logarithmic, comma-separated (the report's slice plots
# give them a log axis).
LOG_PARAMS = "tunelab.log_params"
BEST_TRIAL = "tunelab.best_trial"  # t003
BEST_TRIAL_ID = "tunelab.best_trial_id"  # its Ray id
BEST_RUN_ID = "tunelab.best_run_id"  # its child run


def count(status: str) -> str:
    """The parent's tag holding how many trials ended with ``status`` (``tunelab.n_completed``)."""
    return f"tunelab.n_{status}"


# Metadata of a search submitted as a Ray Job (``tunelab submit``).
JOB_SEARCH = "tunelab.search"
JOB_FILE = "tunelab.file"
JOB_VERSION = "tunelab.version"
