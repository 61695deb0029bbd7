"""The compiled define-by-run space, with a real Optuna study and no model."""

from __future__ import annotations

import optuna

from tunelab import spaces
from tunelab.spaces._schema import Param

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _space(**params) -> spaces.CompiledSpace:
    return spaces.CompiledSpace({k: Param(**v) for k, v in params.items()}, fixed={"cell": "lstm"})


def test_conditional_parameter_exists_exactly_when_its_condition_holds():
    space = _space(
        optimizer={"choice": ["sgd", "momentum", "adam"]},
        momentum={"uniform": [0.0, 0.9], "when": {"optimizer": "momentum"}},
        beta2={"uniform": [0.9, 0.999], "when": {"optimizer": ["adam"], "cell": "lstm"}},
        gru_only={"int": [1, 3], "when": {"cell": "gru"}},
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        params = space(trial)
        seen.add(params["optimizer"])
        assert ("momentum" in params) == (params["optimizer"] == "momentum")
        assert ("beta2" in params) == (params["optimizer"] == "adam")
        assert "gru_only" not in params  # fixed cell is lstm
        assert set(trial.params) == set(params)  # TPE sees exactly the tree that was sampled
        study.tell(trial, 1.0)
    assert seen == {"sgd", "momentum", "adam"}


def test_distributions_respect_bounds_and_kinds():
    space = _space(
        a={"uniform": [0.0, 1.0], "step": 0.25}, b={"loguniform": [1e-4, 1e-1]},
        c={"int": [2, 8], "step": 2}, d={"logint": [1, 1024]},
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(40):
        t = study.ask()
        p = space(t)
        assert p["a"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert 1e-4 <= p["b"] <= 1e-1
        assert p["c"] in (2, 4, 6, 8)
        assert isinstance(p["d"], int) and 1 <= p["d"] <= 1024
        assert t.distributions["b"].log and t.distributions["d"].log
        study.tell(t, 0.0)


def test_grid_enumerates_every_combination():
    space = _space(cell2={"grid": ["lstm", "gru"]}, layers={"grid": [1, 2, 4]}, lr={"uniform": [0.1, 1.0]})
    points = space.grid_points()
    assert points == [{"cell2": c, "layers": n} for c in ("lstm", "gru") for n in (1, 2, 4)]
