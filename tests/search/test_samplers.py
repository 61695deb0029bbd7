"""The search file's samplers as the searcher uses them: ask and tell, never ``study.optimize``."""

from __future__ import annotations

import functools
import itertools

import optuna
import pytest

from tunelab import spaces
from tunelab.spaces._schema import SAMPLERS
from tunelab.search._samplers import make_sampler
from tunelab.search._searcher import OptunaSearcher
from tunelab.trainables import metrics

optuna.logging.set_verbosity(optuna.logging.WARNING)

GRID = """\
name: grid
trainable: synthetic
metric: val_loss
space:
  x: {choice: [0.0, 0.3, 0.6]}
  seed: {grid: [0, 1]}
sampler: {name: grid, seed: 0}
scheduler: {name: fifo}
budget: {trials: 6, max_concurrent: 2}
"""


def test_grid_sampler_tells_every_point_once_and_the_last_tell_does_not_raise(tmp_path):
    # Optuna's GridSampler calls study.stop() after the last grid point, which raises outside
    # study.optimize: the tell of the last trial used to fail and end the search with an error.
    (tmp_path / "grid.yaml").write_text(GRID)
    search = spaces.load(tmp_path / "grid.yaml")
    s = OptunaSearcher(
        space=search.space, make_sampler=functools.partial(make_sampler, search), storage=tmp_path / "study.log",
        study_name="grid", metric="val_loss", mode="min", base_config=search.base_config, check=lambda cfg: None,
    )
    seen = []
    for i in range(6):
        seen.append(s.suggest(f"t{i}"))
        s.on_trial_complete(f"t{i}", {"training_iteration": 1, "val_loss": float(i), metrics.FINISHED: 1})
    assert sorted((p["x"], p["seed"]) for p in seen) == sorted(itertools.product([0.0, 0.3, 0.6], [0, 1]))
    assert seen != [dict(x=x, seed=k) for x, k in itertools.product([0.0, 0.3, 0.6], [0, 1])]  # a drawn order
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in s.study.trials)


NUMERIC = """\
name: every-sampler
trainable: synthetic
metric: val_loss
space:
  x: {uniform: [0.0, 1.0]}
  y: {loguniform: [1.0e-4, 1.0e-1]}
sampler: {name: tpe, seed: 0}
scheduler: {name: fifo}
budget: {trials: 14, max_concurrent: 1}
"""


@pytest.mark.parametrize("name", [n for n in SAMPLERS if n != "grid"])
def test_every_sampler_samples_past_its_startup_trials(tmp_path, name):
    # Model-based samplers import their extras (cmaes, scipy) only at their first relative sample:
    # a missing dependency showed up a dozen trials into a search. Told trials past every sampler's
    # start-up phase (GP: 10) must come back with new points inside the space.
    (tmp_path / "s.yaml").write_text(NUMERIC)
    search = spaces.load(tmp_path / "s.yaml", [f"sampler.name={name}"])
    s = OptunaSearcher(
        space=search.space, make_sampler=functools.partial(make_sampler, search), storage=tmp_path / "study.log",
        study_name=name, metric="val_loss", mode="min", base_config=search.base_config, check=lambda cfg: None,
    )
    seen = []
    for i in range(14):
        p = s.suggest(f"t{i}")
        seen.append((p["x"], p["y"]))
        s.on_trial_complete(f"t{i}", {"training_iteration": 1, "val_loss": (p["x"] - 0.3) ** 2, metrics.FINISHED: 1})
    assert all(0.0 <= x <= 1.0 and 1e-4 <= y <= 1e-1 for x, y in seen)
    assert len(set(seen)) == 14
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in s.study.trials)
