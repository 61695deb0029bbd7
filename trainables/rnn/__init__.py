"""LSTM/GRU language models on Penn Treebank (Zaremba et al. 2014 and its variants).

config.py (``RNNConfig``, parameter counts, ``check``; torch-free), schedule.py (per-epoch learning
rate; torch-free), data.py (finding, verifying and tokenising PTB; numpy only), model.py (the
``RNNModel`` module) and train.py (the Ray Tune function trainable). Only the torch-free parts are
re-exported here, so importing the package does not import torch.
"""

from tunelab.trainables.rnn.config import RNNConfig, check, model_mb, param_count, params_nonembed
from tunelab.trainables.rnn.data import PTBData, batchify, load_data
from tunelab.trainables.rnn.schedule import epoch_lr

__all__ = [
    "PTBData", "RNNConfig", "batchify", "check", "epoch_lr", "load_data", "model_mb", "param_count",
    "params_nonembed",
]
