"""Metric names every trainable reports, the vocabulary every part of tunelab shares.

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
# Classification (the ViT): accuracy on the test split, at the end only, of the best-val_acc weights.
TEST_ACC = "test_acc"
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
# The built-in trainables report 1 on the last report of a trial that ran its whole schedule, 0
# before. A trial that ends at a scheduler's max_t has ended its search-time budget, but a built-in
# that has not run its schedule (its LR not annealed) still says so. A plain function trainable
# need not report it: the driver knows when one returns (``final_status``).
FINISHED = "finished"
# Set by the driver (never by a trainable) on the result at which Ray decided to stop a trial (a
# scheduler below its max_t, a stopper): what tells "stopped" from "returned" for a trial that does
# not report FINISHED. Kept in Ray's records of the trial, never logged to MLflow.
STOPPED = "tunelab_stopped"

# Modular arithmetic (seed report 002). Per operation order, when a trial mixes binary (a ∘ b) and
# ternary (a ∘ b ∘ c) equations: the same losses and accuracies on each order's part of a split.
TRAIN_LOSS_O2 = "train_loss_o2"
VAL_LOSS_O2 = "val_loss_o2"
TRAIN_ACC_O2 = "train_acc_o2"
VAL_ACC_O2 = "val_acc_o2"
TRAIN_LOSS_O3 = "train_loss_o3"
VAL_LOSS_O3 = "val_loss_o3"
TRAIN_ACC_O3 = "train_acc_o3"
VAL_ACC_O3 = "val_acc_o3"
# order -> (train_loss, val_loss, train_acc, val_acc) of that order
BY_ORDER = {
    2: (TRAIN_LOSS_O2, VAL_LOSS_O2, TRAIN_ACC_O2, VAL_ACC_O2),
    3: (TRAIN_LOSS_O3, VAL_LOSS_O3, TRAIN_ACC_O3, VAL_ACC_O3),
}
# Non-embedding compute so far, C = P·B·T (seed 002): n_params_nonembed × training sequences drawn.
COMPUTE = "compute"
# t_f, the optimizer step at which an extremum is reached (seed 002): the step of the minimum loss,
# the first step of the maximum accuracy, over the trial's evaluations. Steps: no direction.
TRAIN_LOSS_T_F = "train_loss_t_f"
VAL_LOSS_T_F = "val_loss_t_f"
TRAIN_ACC_T_F = "train_acc_t_f"
VAL_ACC_T_F = "val_acc_t_f"
# Δt(L) = t_f(L_val) - t_f(L_train) and Δt(A) = t_f(A_val) - t_f(A_train): how long generalisation
# lags behind fitting the training split.
LOSS_DELTA_T = "loss_delta_t"
ACC_DELTA_T = "acc_delta_t"
# metric -> the t_f metric of its extremum
T_F = {TRAIN_LOSS: TRAIN_LOSS_T_F, VAL_LOSS: VAL_LOSS_T_F, TRAIN_ACC: TRAIN_ACC_T_F, VAL_ACC: VAL_ACC_T_F}

# What every torch family reports, every time (the FINAL ones on the last report only).
COMMON = (
    TRAIN_LOSS, VAL_LOSS, TRAIN_PPL, VAL_PPL, TEST_PPL, BEST_VAL_PPL, TRAIN_ACC, VAL_ACC, TEST_ACC,
    EPOCH, STEP, TOKENS, FLOPS, LR, WALL_S, TOKENS_PER_S, MEM_PEAK_MB, PARAMS, PARAMS_NONEMBED,
    PARAM_NORM, DIVERGED, OOM, FINISHED,
)
# What only the last report of a trial that ran its schedule carries (a family reports those it has).
FINAL = (TEST_PPL, TEST_ACC)
# What one family or another adds: the arithmetic trainable's (seed 002).
ARITH = (*BY_ORDER[2], *BY_ORDER[3], COMPUTE, *T_F.values(), LOSS_DELTA_T, ACC_DELTA_T)
# Every metric name a search may optimise or the driver logs.
ALL = COMMON + ARITH
# What the driver logs to MLflow once per trial, not per report (the trainables keep reporting them to
# Ray, whose scheduler and our searcher read them): constants as a single step-0 metric (numeric, so
# the runs table sorts them and scatter plots use them, which a string param would not allow), and the
# 0/1 flags once, with the trial's last step.
CONSTANTS = frozenset({PARAMS, PARAMS_NONEMBED})
FLAGS = frozenset({DIVERGED, OOM, FINISHED})
# Which way each metric of the vocabulary improves: a search's objective needs no ``mode`` when it is
# one of these, and ``analysis`` keeps each trial's best of them. Counters and costs (epoch, flops,
# wall_s, n_params, the t_f steps...) have no better direction.
MINIMISE = frozenset({TRAIN_LOSS, VAL_LOSS, TRAIN_PPL, VAL_PPL, TEST_PPL, BEST_VAL_PPL,
                      TRAIN_LOSS_O2, VAL_LOSS_O2, TRAIN_LOSS_O3, VAL_LOSS_O3})
MAXIMISE = frozenset({TRAIN_ACC, VAL_ACC, TEST_ACC, TRAIN_ACC_O2, VAL_ACC_O2, TRAIN_ACC_O3, VAL_ACC_O3})
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


def direction(key: str) -> str | None:
    """Which way a metric of the vocabulary improves: "min", "max", or None (a counter, a cost, or a
    name outside the vocabulary, such as a lab's own metric: its search file says with ``mode``)."""
    if key in MINIMISE:
        return "min"
    if key in MAXIMISE:
        return "max"
    return None


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
# A trial the search's interruption (Ctrl-C, SIGTERM, a full disk) caught running or waiting to run:
# not an outcome yet; ``tunelab resume`` runs it on from its last checkpoint.
INTERRUPTED = "interrupted"
STATUSES = (COMPLETED, STOPPED_EARLY, STATUS_DIVERGED, STATUS_OOM, INFEASIBLE, ERROR, INTERRUPTED)
# The end states of trials: the ones a search's end leaves.
ENDED = frozenset(STATUSES) - {INTERRUPTED}

# A search's state, as tag ``tags.STATE`` of its parent run (and in ``tunelab ls``): RUNNING while a
# driver runs it; FINISHED once it has run its budget (MLflow: FINISHED); INTERRUPTED when a signal or
# a fault ended it first (MLflow: KILLED), resumable; FAILED when it could not go on (MLflow: FAILED).
RUNNING, FINISHED_STATE, INTERRUPTED_STATE, FAILED = "RUNNING", "FINISHED", "INTERRUPTED", "FAILED"


def final_status(last_result: dict | None, error: bool = False) -> str:
    """The status of a trial from its last result as Ray keeps it.

    A trainable that reports ``finished`` says itself whether it ran its schedule. Otherwise the
    result says how the trial ended: Ray adds ``done`` to the last result of a trial that returned,
    and of one it stopped, which the driver marks ``STOPPED`` (``tunelab.search._ends``); a trial
    ended by the search's own end (its time or FLOP budget) has neither.

    Args:
        last_result: the trial's last result (None if it never reported).
        error: whether the trial ended by raising.
    """
    if error:
        return ERROR
    last = last_result or {}
    if last.get(OOM):
        return STATUS_OOM
    if last.get(DIVERGED):
        return STATUS_DIVERGED
    if FINISHED in last:
        return COMPLETED if last[FINISHED] else STOPPED_EARLY
    if last.get("done") and not last.get(STOPPED):
        return COMPLETED  # the function returned (or reached the scheduler's max_t)
    return STOPPED_EARLY
