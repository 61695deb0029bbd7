"""tunelab: hyperparameter search for sequence models. Ray Tune runs, Optuna chooses, MLflow records.

What a user calls is here: ``tunelab.run`` runs a search (a search file, a catalogue name or a dict,
and optionally a plain training function), ``tunelab.report`` is the one reporting call inside a
trial. The rest is reachable under ``tunelab.search``, ``tunelab.spaces``, ``tunelab.trainables`` and
``tunelab.analysis``. Importing this package imports neither Ray nor torch.
"""

from tunelab.trainables._report import report

__version__ = "0.2.0"


def run(search, *, trainable=None, overrides=None, name=None, storage=None, address=None, verbose=False):
    """Run a search from Python and return its outcome.

    Args:
        search: a search file's path, a name of the catalogue (``"ptb_smoke"``), or a dict shaped
            like a search file.
        trainable: a plain function ``train(config: dict) -> None`` to search (the search's
            ``trainable:`` and ``data:`` may then be left out). It reports with ``tunelab.report``
            (or ``ray.tune.report``), any metric names; returning means it completed.
        overrides: ``key=value`` strings, as ``tunelab run --set`` takes them, or a dict.
        name: the search's name (default: the file's ``name``).
        storage: the results root (default: the file's ``storage``, else ``./runs``).
        address: a Ray cluster's address (default: local Ray).
        verbose: Ray's own output on the console instead of tunelab's live view.

    Returns:
        An ``Outcome`` with ``name``, ``best_config`` (dict), ``best_value`` (float), ``trials`` (one
        row per trial: ``name``, ``status``, ``params``, ``best``), ``experiment_dir`` and
        ``tracking_uri`` (the MLflow store, for ``tunelab.analysis.load``).

    Example::

        def train(config):
            for epoch in range(1, 11):
                tunelab.report({"epoch": epoch, "val_mae": (config["lr"] - 0.1) ** 2 + 1 / epoch})

        out = tunelab.run({"name": "mine", "metric": "val_mae", "mode": "min",
                           "space": {"lr": {"loguniform": [1e-3, 1.0]}}}, trainable=train)
        print(out.best_value, out.best_config)
    """
    from tunelab.search._api import run_search

    return run_search(search, trainable=trainable, overrides=overrides, name=name, storage=storage,
                      address=address, verbose=verbose)


__all__ = ["__version__", "report", "run"]
