"""What the search needs to know about each trainable, without importing torch.

The trainable function itself is imported on first use (``Entry.trainable``), so loading and
validating a search file stays light; everything else here is torch-free.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from trainables import _config


@dataclasses.dataclass(frozen=True)
class Entry:
    """One trainable family.

    Attributes:
        name: the registry key a search file names in ``trainable:``.
        config_cls: the config dataclass; its fields are the parameters a search may set.
        train_module: module holding ``train(config, data=None)``, the Ray Tune function trainable.
        constraint_check: ``(cfg, constraints) -> reason | None`` for configs that parse but cannot run.
        flops: ``cfg -> int`` training FLOPs (forward + backward) per token.
        data_loader: driver-side ``data_section -> object`` handed to every trial once, via the
            object store (``tune.with_parameters``).
        resources: default per-trial resources.
        constraint_names: the named checks ``constraints:`` in a search file may use.
        summarize: ``cfg -> dict`` of sizes and costs (params, FLOPs, steps...) for ``tunelab inspect``.
    """

    name: str
    config_cls: type
    train_module: str
    constraint_check: Callable[[Any, Mapping[str, Any]], str | None]
    flops: Callable[[Any], int]
    data_loader: Callable[[Mapping[str, Any]], Any]
    resources: Mapping[str, float] = dataclasses.field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    constraint_names: tuple[str, ...] = ()
    summarize: Callable[[Any], dict[str, Any]] | None = None

    @property
    def parameters(self) -> tuple[str, ...]:
        return _config.field_names(self.config_cls)

    def defaults(self) -> dict[str, Any]:
        return _config.defaults(self.config_cls)

    def parse(self, config: Mapping[str, Any]) -> Any:
        """The config dataclass for ``config``; raises ConfigError."""
        return _config.parse_config(self.config_cls, config)

    def check(self, config: Mapping[str, Any], constraints: Mapping[str, Any] | None = None) -> str | None:
        """Why ``config`` cannot run (a readable reason), or None when it is feasible."""
        try:
            cfg = self.parse(config)
        except _config.ConfigError as exc:
            return str(exc)
        return self.constraint_check(cfg, constraints or {})

    def flops_per_token(self, config: Mapping[str, Any]) -> int:
        return self.flops(self.parse(config))

    def summary(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Sizes and costs of ``config`` (no torch, no data): what ``tunelab inspect`` prints."""
        cfg = self.parse(config)
        out = {"flops_per_token": self.flops(cfg)}
        if self.summarize is not None:
            out.update(self.summarize(cfg))
        return out

    def load_data(self, data: Mapping[str, Any]) -> Any:
        return self.data_loader(data)

    @property
    def trainable(self) -> Callable[..., None]:
        return importlib.import_module(self.train_module).train
