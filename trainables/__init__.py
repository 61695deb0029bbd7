"""What runs inside a trial: models, data, training loops and FLOP accounting.

Knows nothing of Optuna, MLflow or the search package. ``REGISTRY[name]`` describes one trainable
family (see ``Entry``): the built-in ones below, and those other installed packages declare under the
entry-point group ``tunelab.trainables`` (see ``Registry``). Importing this package does not import torch.
"""

import functools

from tunelab.trainables import metrics
from tunelab.trainables._config import config_dataclass, parse_config
from tunelab.trainables._data import DatasetRecord
from tunelab.trainables._errors import ConfigError, DataError
from tunelab.trainables._registry import ENTRY_POINT_GROUP, Entry, Registry
from tunelab.trainables import arith as _arith
from tunelab.trainables.arith import config as _arith_config
from tunelab.trainables.flops import gpt_flops_per_token, rnn_flops_per_token, vit_flops_per_image
from tunelab.trainables.gpt import config as _gpt_config
from tunelab.trainables.gpt import tokens as _gpt_tokens
from tunelab.trainables.rnn import config as _rnn_config
from tunelab.trainables.rnn import data as _rnn_data
from tunelab.trainables import curves as _curves
from tunelab.trainables import synthetic as _synthetic
from tunelab.trainables import tabular as _tabular
from tunelab.trainables.vit import config as _vit_config
from tunelab.trainables.vit import data as _vit_data

_BUILTIN: dict[str, Entry] = {
    "rnn": Entry(
        name="rnn",
        config_cls=_rnn_config.RNNConfig,
        train_module="tunelab.trainables.rnn.train",
        constraint_check=_rnn_config.check,
        flops=rnn_flops_per_token,
        data_loader=_rnn_data.load_data,
        constraint_names=_rnn_config.CONSTRAINTS,
        summarize=_rnn_config.summary,
        metrics=metrics.COMMON,
    ),
    "gpt": Entry(
        name="gpt",
        config_cls=_gpt_config.GPTConfig,
        train_module="tunelab.trainables.gpt.train",
        constraint_check=_gpt_config.check,
        flops=gpt_flops_per_token,
        data_loader=_gpt_tokens.load_data,
        constraint_names=_gpt_config.CONSTRAINTS,
        summarize=_gpt_config.summary,
        metrics=metrics.COMMON,
        report_module="tunelab.trainables.gpt.report",
    ),
    "vit": Entry(
        name="vit",
        config_cls=_vit_config.ViTConfig,
        train_module="tunelab.trainables.vit.train",
        constraint_check=_vit_config.check,
        flops=vit_flops_per_image,
        data_loader=_vit_data.load_data,
        constraint_names=_vit_config.CONSTRAINTS,
        summarize=_vit_config.summary,
        metrics=metrics.COMMON,
        report_module="tunelab.trainables.gpt.report",
    ),
    "arith": Entry(
        name="arith",
        config_cls=_arith_config.ArithConfig,
        train_module="tunelab.trainables.arith.train",
        constraint_check=_arith_config.check,
        flops=_arith_config.flops_per_token,
        data_loader=_arith.load_data,
        constraint_names=_arith_config.CONSTRAINTS,
        summarize=_arith_config.summary,
        metrics=metrics.ALL,
        report_module="tunelab.trainables.arith.report",
    ),
    "synthetic": Entry(
        name="synthetic",
        config_cls=_synthetic.SyntheticConfig,
        train_module="tunelab.trainables.synthetic",
        constraint_check=_synthetic.check,
        flops=_synthetic.flops_per_token,
        data_loader=_synthetic.load_data,
        constraint_names=_synthetic.CONSTRAINTS,
        reuse_workers=True,
        metrics=_synthetic.METRICS,
    ),
    "curves": Entry(
        name="curves",
        config_cls=_curves.CurvesConfig,
        train_module="tunelab.trainables.curves",
        constraint_check=_curves.check,
        flops=_curves.flops_per_token,
        data_loader=_curves.load_data,
        constraint_names=_curves.CONSTRAINTS,
        reuse_workers=True,
        metrics=_curves.HISTORY_KEYS,
    ),
}
for _name, _bench in _tabular.BENCHMARKS.items():
    _BUILTIN[_name] = Entry(
        name=_name,
        config_cls=_tabular.CONFIGS[_name],
        train_module="tunelab.trainables.tabular",
        constraint_check=_tabular.check,
        flops=_tabular.flops_per_token,
        data_loader=functools.partial(_tabular.load_data, _name),
        summarize=functools.partial(_tabular.summary, _bench),
        reuse_workers=True,
        metrics=_tabular.reported(_bench),
    )
REGISTRY: Registry = Registry(_BUILTIN)  # plus the plugins, loaded on first use

# config_dataclass and parse_config are public for the plugins: a lab's trainable declares its config
# the way the built-in ones do (and its data describes itself for MLflow with DatasetRecord).
__all__ = ["ENTRY_POINT_GROUP", "REGISTRY", "ConfigError", "DataError", "DatasetRecord", "Entry", "Registry",
           "config_dataclass", "metrics", "parse_config"]
