"""What runs inside a trial: models, data, training loops and FLOP accounting.

Knows nothing of Optuna, MLflow or the search package. ``REGISTRY[name]`` describes one trainable
family (see ``Entry``): the built-in ones below, and those other installed packages declare under the
entry-point group ``tunelab.trainables`` (see ``Registry``). Importing this package does not import torch.
"""

from trainables import metrics
from trainables._config import config_dataclass, parse_config
from trainables._errors import ConfigError, DataError
from trainables._registry import ENTRY_POINT_GROUP, Entry, Registry
from trainables.flops import gpt_flops_per_token, rnn_flops_per_token
from trainables.gpt import config as _gpt_config
from trainables.gpt import tokens as _gpt_tokens
from trainables.rnn import config as _rnn_config
from trainables.rnn import data as _rnn_data
from trainables import synthetic as _synthetic

REGISTRY: Registry = Registry({
    "rnn": Entry(
        name="rnn",
        config_cls=_rnn_config.RNNConfig,
        train_module="trainables.rnn.train",
        constraint_check=_rnn_config.check,
        flops=rnn_flops_per_token,
        data_loader=_rnn_data.load_data,
        constraint_names=_rnn_config.CONSTRAINTS,
        summarize=_rnn_config.summary,
    ),
    "gpt": Entry(
        name="gpt",
        config_cls=_gpt_config.GPTConfig,
        train_module="trainables.gpt.train",
        constraint_check=_gpt_config.check,
        flops=gpt_flops_per_token,
        data_loader=_gpt_tokens.load_data,
        constraint_names=_gpt_config.CONSTRAINTS,
        summarize=_gpt_config.summary,
    ),
    "synthetic": Entry(
        name="synthetic",
        config_cls=_synthetic.SyntheticConfig,
        train_module="trainables.synthetic",
        constraint_check=_synthetic.check,
        flops=_synthetic.flops_per_token,
        data_loader=_synthetic.load_data,
        constraint_names=_synthetic.CONSTRAINTS,
    ),
})  # plus the plugins, loaded on first use

# config_dataclass and parse_config are public for the plugins: a lab's trainable declares its config
# the way the built-in ones do.
__all__ = ["ENTRY_POINT_GROUP", "REGISTRY", "ConfigError", "DataError", "Entry", "Registry", "config_dataclass",
           "metrics", "parse_config"]
