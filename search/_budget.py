"""``budget.total_flops``: stop the whole search once its trials together have spent the budget."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ray.tune.stopper import Stopper

from tunelab.trainables import metrics


class FlopBudgetStopper(Stopper):
    """Sums each trial's latest cumulative ``flops`` and stops every trial once the sum reaches ``total``.

    The per-trial sums are kept in a JSON file in the experiment folder, so a resumed search still
    counts what the first launch spent.

    Args:
        total: the search's FLOP budget.
        state_file: where the per-trial sums are kept.
    """

    def __init__(self, total: float, state_file: str | os.PathLike):
        self.total = float(total)
        self.state_file = str(state_file)
        self._spent: dict[str, float] | None = None

    @property
    def spent(self) -> float:
        return sum(self._load().values())

    def _load(self) -> dict[str, float]:
        if self._spent is None:
            path = Path(self.state_file)
            self._spent = json.loads(path.read_text()) if path.exists() else {}
        return self._spent

    def __call__(self, trial_id: str, result: dict) -> bool:
        flops = result.get(metrics.FLOPS)
        if flops is not None:
            spent = self._load()
            spent[trial_id] = max(float(flops), spent.get(trial_id, 0.0))
            tmp = f"{self.state_file}.tmp"
            Path(tmp).write_text(json.dumps(spent))
            os.replace(tmp, self.state_file)
        return self.spent >= self.total

    def stop_all(self) -> bool:
        return self.spent >= self.total

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_spent": None}
