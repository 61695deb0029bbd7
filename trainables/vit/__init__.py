"""Vision Transformer image classification on the GPT's blocks (seed report 001).

config.py (``ViTConfig``, parameter counts, ``check``, ``summary``; torch-free), data.py (CIFAR-10's
python batches and scikit-learn's digits; numpy only), model.py (the ViT module), schedule.py (per-step
learning rate) and train.py (the Ray Tune function trainable). Only the torch-free parts are
re-exported here, so importing the package does not import torch.
"""

from tunelab.trainables.vit.config import ViTConfig, check, param_count, params_nonembed, summary
from tunelab.trainables.vit.data import ImageData, load_data

__all__ = ["ImageData", "ViTConfig", "check", "load_data", "param_count", "params_nonembed", "summary"]
