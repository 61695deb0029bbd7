"""Modular arithmetic with a GPT or an LSTM/GRU: grokking, seed report 002.

config.py (``ArithConfig``, parameter counts, FLOPs, ``check``, ``summary``; torch-free), data.py (the
equations, their split and batches; NumPy only), train.py (the Ray Tune function trainable, on the
GPT and RNN families' models) and report.py (the family's section of ``tunelab report`` and the GPT's
attention maps, on ``tunelab.analysis``; imported when a report is built). Only the torch-free trial
parts are re-exported here.
"""

from tunelab.trainables.arith.config import ATTENTION_ARTIFACT, ArithConfig, check, param_count, params_nonembed, summary
from tunelab.trainables.arith.data import ArithData, Vocabulary, batch_indices, make_data


def load_data(data: object) -> None:
    """The driver's data for every trial: none, each trial makes its equations from its config."""
    return None


__all__ = [
    "ATTENTION_ARTIFACT", "ArithConfig", "ArithData", "Vocabulary", "batch_indices", "check", "load_data",
    "make_data", "param_count", "params_nonembed", "summary",
]
