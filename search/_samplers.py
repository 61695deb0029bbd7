"""The search file's ``sampler`` section -> an Optuna sampler."""

from __future__ import annotations

import optuna

from tunelab._private import GridSampler
from tunelab.spaces import Search


def make_sampler(search: Search, restart: int = 0) -> optuna.samplers.BaseSampler:
    """Build the named Optuna sampler.

    TPE gets ``multivariate`` and ``constant_liar`` as the file says (constant liar keeps concurrent
    trials from being proposed on top of each other), and ``group`` when the space is conditional so
    each subspace gets its own model.

    Args:
        restart: 0 for a new search; after ``tunelab resume``, the number of trials the study holds.
            A sampler keeps its random generator in memory only, so one rebuilt with the file's seed
            would propose the search's first configs again: it gets the seed ``seed + restart``
            instead, a stream not drawn from yet. QMC keeps its seed: its position in the sequence is
            in the study, and the sequence goes on from there.
    """
    s = search.spec.sampler
    seed = s.seed if s.seed is None or s.name == "qmc" else s.seed + restart
    if s.name == "tpe":
        kwargs = {} if s.n_startup_trials is None else {"n_startup_trials": s.n_startup_trials}
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=s.multivariate, constant_liar=s.constant_liar,
            group=s.multivariate and search.space.conditional, **kwargs,
        )
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if s.name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if s.name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if s.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if s.name == "grid":
        return GridSampler(search.space.categorical_space(), seed=seed)
    raise ValueError(f"unknown sampler {s.name!r}")  # the schema admits no other name
