"""Metric names every trainable reports, mirrored from DESIGN.md's table.

Torch-free on purpose: ``search``, ``analysis`` and the trainables all import these constants, so a
misspelt metric is an ImportError or AttributeError at once instead of an empty plot later.
"""

TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
TRAIN_PPL = "train_ppl"
VAL_PPL = "val_ppl"
TEST_PPL = "test_ppl"
BEST_VAL_PPL = "best_val_ppl"
TRAIN_ACC = "train_acc"
VAL_ACC = "val_acc"
EPOCH = "epoch"
# Not "step": MLflow's charts already have a Step axis (our training_iteration), and a metric of the
# same name beside it reads as the axis itself.
STEP = "optimizer_steps"
TOKENS = "tokens"
FLOPS = "flops"
LR = "lr"
WALL_S = "wall_s"
TOKENS_PER_S = "tokens_per_s"
MEM_PEAK_MB = "mem_peak_mb"
# Not "params": MLflow shows a run's config under "Parameters"; these are parameter counts.
PARAMS = "n_params"
PARAMS_NONEMBED = "n_params_nonembed"
PARAM_NORM = "param_norm"
DIVERGED = "diverged"
OOM = "oom"
# Departure from DESIGN.md's table: 1 on the last report of a trial that ran its whole schedule.
# Ray marks a trial stopped by ASHA and one that finished alike (``done=True``), so without it the
# driver could not tell Optuna which trials are COMPLETE and which PRUNED.
FINISHED = "finished"

ALL = (
    TRAIN_LOSS, VAL_LOSS, TRAIN_PPL, VAL_PPL, TEST_PPL, BEST_VAL_PPL, TRAIN_ACC, VAL_ACC,
    EPOCH, STEP, TOKENS, FLOPS, LR, WALL_S, TOKENS_PER_S, MEM_PEAK_MB, PARAMS, PARAMS_NONEMBED,
    PARAM_NORM, DIVERGED, OOM, FINISHED,
)
# What the driver logs to MLflow once per trial, not per report (the trainables keep reporting them to
# Ray, whose scheduler and our searcher read them): constants as a single step-0 metric (numeric, so
# the runs table sorts them and scatter plots use them, which a string param would not allow), and the
# 0/1 flags once, with the trial's last step.
CONSTANTS = frozenset({PARAMS, PARAMS_NONEMBED})
FLAGS = frozenset({DIVERGED, OOM, FINISHED})
# Perplexities span orders of magnitude (a diverged trial reaches 1e6): every figure draws them on a
# log axis.
PERPLEXITIES = frozenset({TRAIN_PPL, VAL_PPL, TEST_PPL, BEST_VAL_PPL})

# The search-level progress the driver logs on the parent run as trials end, with step = the number
# of trials ended so far: the optimisation-history plot, against trials and against compute.
SEARCH_FLOPS = "search_flops"  # training FLOPs of the ended trials, summed
SEARCH_TRIAL_S = "search_trial_s"  # training seconds of the ended trials, summed


def best_so_far(metric: str) -> str:
    """The parent's running best of the objective over the ended trials (``best_val_ppl``)."""
    return f"best_{metric}"


def trial_value(metric: str) -> str:
    """The parent's curve of each ended trial's own best objective (``trial_val_ppl``)."""
    return f"trial_{metric}"


def is_perplexity(key: str) -> bool:
    """Whether a metric (or a ``best_``/``last_``/``trial_`` column of one) is a perplexity."""
    for prefix in ("best_", "last_", "trial_"):
        key = key.removeprefix(prefix)
    return key in PERPLEXITIES or key.endswith("_ppl")

# Final status of a trial, as tagged on its MLflow run.
COMPLETED = "completed"
STOPPED_EARLY = "stopped_early"
STATUS_DIVERGED = "diverged"
STATUS_OOM = "oom"
INFEASIBLE = "infeasible"
ERROR = "error"
STATUSES = (COMPLETED, STOPPED_EARLY, STATUS_DIVERGED, STATUS_OOM, INFEASIBLE, ERROR)


def final_status(last_result: dict | None, error: bool = False) -> str:
    """The status of a trial from its last report.

    Args:
        last_result: the trial's last reported metrics (None if it never reported).
        error: whether the trial ended by raising.
    """
    if error:
        return ERROR
    last = last_result or {}
    if last.get(OOM):
        return STATUS_OOM
    if last.get(DIVERGED):
        return STATUS_DIVERGED
    if last.get(FINISHED):
        return COMPLETED
    return STOPPED_EARLY
