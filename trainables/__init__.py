"""What runs inside a trial: models, data, training loops and FLOP accounting.

Knows nothing of Optuna, MLflow or the search package. ``REGISTRY[name]`` describes one trainable
family (see ``Entry``): the built-in ones below, and those other installed packages declare under the
entry-point group ``tunelab.trainables`` (see ``Registry``). Importing this package does not import torch.
"""

import functools

from trainables import metrics
from trainables._config import config_dataclass, parse_config
from trainables._errors import ConfigError, DataError
from trainables._registry import ENTRY_POINT_GROUP, Entry, Registry
from trainables import arith as _arith
from trainables.arith import config as _arith_config
from trainables.flops import gpt_flops_per_token, rnn_flops_per_token, vit_flops_per_image
from trainables.gpt import config as _gpt_config
from trainables.gpt import tokens as _gpt_tokens
from trainables.rnn import config as _rnn_config
from trainables.rnn import data as _rnn_data
from trainables import curves as _curves
from trainables import synthetic as _synthetic
from trainables import tabular as _tabular
from trainables.vit import config as _vit_config
from trainables.vit import data as _vit_data

_BUILTIN: dict[str, Entry] = {
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
    "vit": Entry(
        name="vit",
        config_cls=_vit_config.ViTConfig,
        train_module="trainables.vit.train",
        constraint_check=_vit_config.check,
        flops=vit_flops_per_image,
        data_loader=_vit_data.load_data,
        constraint_names=_vit_config.CONSTRAINTS,
        summarize=_vit_config.summary,
    ),
    "arith": Entry(
        name="arith",
        config_cls=_arith_config.ArithConfig,
        train_module="trainables.arith.train",
        constraint_check=_arith_config.check,
        flops=_arith_config.flops_per_token,
        data_loader=_arith.load_data,
        constraint_names=_arith_config.CONSTRAINTS,
        summarize=_arith_config.summary,
    ),
    "synthetic": Entry(
        name="synthetic",
        config_cls=_synthetic.SyntheticConfig,
        train_module="trainables.synthetic",
        constraint_check=_synthetic.check,
        flops=_synthetic.flops_per_token,
        data_loader=_synthetic.load_data,
        constraint_names=_synthetic.CONSTRAINTS,
        reuse_workers=True,
    ),
    "curves": Entry(
        name="curves",
        config_cls=_curves.CurvesConfig,
        train_module="trainables.curves",
        constraint_check=_curves.check,
        flops=_curves.flops_per_token,
        data_loader=_curves.load_data,
        constraint_names=_curves.CONSTRAINTS,
        reuse_workers=True,
    ),
}
for _name, _bench in _tabular.BENCHMARKS.items():
    _BUILTIN[_name] = Entry(
        name=_name,
        config_cls=_tabular.CONFIGS[_name],
        train_module="trainables.tabular",
        constraint_check=_tabular.check,
        flops=_tabular.flops_per_token,
        data_loader=functools.partial(_tabular.load_data, _name),
        summarize=functools.partial(_tabular.summary, _bench),
        reuse_workers=True,
    )
REGISTRY: Registry = Registry(_BUILTIN)  # plus the plugins, loaded on first use

# config_dataclass and parse_config are public for the plugins: a lab's trainable declares its config
# the way the built-in ones do.
__all__ = ["ENTRY_POINT_GROUP", "REGISTRY", "ConfigError", "DataError", "Entry", "Registry", "config_dataclass",
           "metrics", "parse_config"]
