"""One real Ray Tune run per family that proves exact resume: trial ``straight`` runs through; trial
``crash`` raises right after its ``crash_after``-th report on its first attempt, and Ray restores it from
that report's checkpoint. Other variants carry their own config updates (the RNN's ``diverge``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def straight_and_crashed(module: str, config: dict[str, Any], data: Any, tmp: Path, *, crash_after: int,
                         updates: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The trials' Ray results by variant (``straight``, ``crash`` and those of ``updates``).

    Args:
        module: the trainable's module (its ``train`` and module-level ``report``).
        config: the trials' config.
        data: what ``tune.with_parameters`` hands the trainable (None: nothing).
        tmp: a fresh folder for Ray's results and the marker that the crash happened.
        crash_after: which report the crash follows (1-based).
        updates: variant -> config updates, beside the two variants above.
    """
    from ray import tune

    extra = dict(updates or {})

    def flaky_train(config, data=None):
        # Pops its own keys and makes the trainable's report raise once (a closure: Ray pickles it by value).
        import importlib
        from pathlib import Path

        trainable = importlib.import_module(module)
        config = dict(config)
        variant, marker = config.pop("_variant"), Path(config.pop("_marker"))
        config.update(extra.get(variant, {}))
        real_report, calls = trainable.report, []

        def report_then_fail(metrics_, state=None):
            real_report(metrics_, state=state)
            calls.append(1)
            if variant == "crash" and len(calls) == crash_after and not marker.exists():
                marker.write_text("failed once")
                raise RuntimeError(f"injected failure after report {crash_after}")

        trainable.report = report_then_fail
        try:
            trainable.train(config, data)
        finally:
            trainable.report = real_report

    marker = tmp / "failed_once"
    fn = flaky_train if data is None else tune.with_parameters(flaky_train, data=data)
    tuner = tune.Tuner(
        tune.with_resources(fn, {"cpu": 1}),
        param_space={**config, "_variant": tune.grid_search(["straight", "crash", *extra]), "_marker": str(marker)},
        run_config=tune.RunConfig(name=module.rsplit(".", 2)[-2] + "_resume", storage_path=str(tmp / "ray"),
                                  failure_config=tune.FailureConfig(max_failures=1), verbose=0),
    )
    results = {r.config["_variant"]: r for r in tuner.fit()}
    assert marker.exists(), "the injected failure never happened"
    assert results["straight"].error is None and results["crash"].error is None
    return results
