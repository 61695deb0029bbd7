"""GPT pretraining under a FLOP budget, or by epochs over Penn Treebank's words.

config.py (``GPTConfig``, budget arithmetic, ``check``, ``summary``; torch-free), tokens.py (token
folders; numpy only), model.py (the GPT module), schedule.py (cosine with warm-up) and train.py (the
Ray Tune function trainable). Only the torch-free parts are re-exported here, so importing the package
does not import torch.
"""

from tunelab.trainables.gpt.config import GPTConfig, ModelConfig, check, param_count, params_nonembed, summary
from tunelab.trainables.gpt.tokens import TokenData, load_data, load_tokenizer, prepare

__all__ = [
    "GPTConfig", "ModelConfig", "TokenData", "check", "load_data", "load_tokenizer", "param_count",
    "params_nonembed", "prepare", "summary",
]
