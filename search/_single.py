"""One config of a search file, in this process, with no Ray and no MLflow: the core of ``tunelab
inspect`` (``inspect``: its sizes, costs and feasibility) and ``tunelab train`` (``prepare_training``,
then ``Training.run``: the trainable called directly, its reports printed as table rows).

The config is the file's fixed part with each still-searched parameter filled in (``inspect_config``),
so both commands say what a trial of the search would be before any trial runs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tunelab import spaces
from tunelab import trainables
from tunelab.search import _inputs


def inspect_config(s: spaces.Search) -> tuple[dict, dict]:
    """The config ``tunelab inspect`` sizes: the fixed part, with each still-searched parameter taken
    from the first warm-start point, else its log-/midpoint or first choice.

    Args:
        s: the loaded search file.

    Returns:
        (config, from_space): the whole config, and the parameters filled in from the space (those
        whose ``when`` holds in that config).
    """
    point = s.spec.points_to_evaluate[0] if s.spec.points_to_evaluate else {}
    filled = {}
    for name, p in s.space.params.items():
        if name in point:
            filled[name] = point[name]
        elif p.kind in ("choice", "grid"):
            filled[name] = p.values[0]
        else:
            low, high = p.values
            mid = (low * high) ** 0.5 if p.kind.startswith("log") else (low + high) / 2
            filled[name] = round(mid) if p.kind in ("int", "logint") else mid
    config = {**s.base_config, **filled}
    filled = {k: v for k, v in filled.items() if spaces.condition_holds(s.space.params[k].when, config)}
    return {**s.base_config, **filled}, filled


def inspect(s: spaces.Search) -> dict[str, Any]:
    """What ``tunelab inspect`` prints: the config of ``inspect_config``, its sizes and costs
    (``Entry.summary``: parameters, FLOPs per token, steps...) and whether it can run.

    Args:
        s: the loaded search file.

    Returns:
        ``{"config", "from_space", <the sizes>, "feasible", "reason"}``; ``reason`` is why the config
        cannot run (the trainable's check, or its summary's refusal), else None.
    """
    config, filled = inspect_config(s)
    reason = s.entry.check(config, s.spec.constraints)
    try:
        sizes = s.entry.summary(config)
    except trainables.ConfigError as exc:
        sizes, reason = {}, reason or str(exc)
    return {"config": config, "from_space": filled, **sizes, "feasible": reason is None, "reason": reason}


@dataclasses.dataclass(frozen=True)
class Training:
    """One config of a search file, checked and with its data loaded, ready to train in this process.

    Attributes:
        trainable: the registry name the file gives.
        file: the search file.
        config: the whole config (``inspect_config``).
        from_space: the parameters filled in from the space.
        entry: the trainable's registry entry.
        data: what the entry's data loader gave (None for a trainable that loads its own).
    """

    trainable: str
    file: str
    config: dict[str, Any]
    from_space: dict[str, Any]
    entry: trainables.Entry
    data: Any

    def run(self) -> None:
        """Train: the trainable itself, outside Tune, so each report prints as a table row."""
        self.entry.trainable(self.config, self.data)


def prepare_training(s: spaces.Search) -> Training:
    """Check the config ``tunelab train`` trains and load its data, before anything trains.

    Args:
        s: the loaded search file.

    Raises:
        spaces.SpecError: the config is infeasible (field ``config``) or its data cannot be had
            (field ``data``).
    """
    config, filled = inspect_config(s)
    reason = s.entry.check(config, s.spec.constraints)
    if reason is not None:
        raise spaces.SpecError(s.file, "config", f"the config to train is infeasible: {reason}")
    return Training(s.spec.trainable, s.file, config, filled, s.entry, _inputs.load_data(s))
