"""What runs inside a trial: models, data, training loops and FLOP accounting.

Knows nothing of Optuna, MLflow or the search package. ``REGISTRY[name]`` describes one trainable
family (see ``Entry``); importing this package does not import torch.
"""

import functools

from trainables import metrics
from trainables._errors import ConfigError, DataError
from trainables._registry import Entry
from trainables.flops import gpt_flops_per_token, rnn_flops_per_token
from trainables.gpt import config as _gpt_config
from trainables.gpt import tokens as _gpt_tokens
from trainables.rnn import config as _rnn_config
from trainables.rnn import data as _rnn_data
from trainables import synthetic as _synthetic
from trainables import tabular as _tabular

REGISTRY: dict[str, Entry] = {
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
}
for _name, _bench in _tabular.BENCHMARKS.items():
    REGISTRY[_name] = Entry(
        name=_name,
        config_cls=_tabular.CONFIGS[_name],
        train_module="trainables.tabular",
        constraint_check=_tabular.check,
        flops=_tabular.flops_per_token,
        data_loader=functools.partial(_tabular.load_data, _name),
        summarize=functools.partial(_tabular.summary, _bench),
    )

__all__ = ["REGISTRY", "Entry", "ConfigError", "DataError", "metrics"]
