"""One vocabulary: the MLflow tag names tunelab writes and reads are spelt out in one module,
``tunelab.trainables.tags``; every other module (and benchmark) names them through it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAGS = ROOT / "trainables" / "tags.py"
# "tunelab.<word>" in quotes: a tag (or a tag's prefix, f"tunelab.n_{status}").
LITERAL = re.compile(r"""["']tunelab\.[a-z][a-z_]*(["']|\{)""")  # not a private module: "tunelab._mlflow"
# Names of that shape that are not MLflow tags: the search folder's record, the plugins' entry-point
# group (and its logger), a key of a Parquet file's schema metadata.
NOT_TAGS = {'"tunelab.json"', '"tunelab.trainables"', '"tunelab.bank"'}


def test_tag_names_are_spelt_out_only_in_the_tags_module():
    found = []
    for folder in ("api", "search", "spaces", "trainables", "analysis", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == TAGS:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                for match in LITERAL.finditer(line):
                    if match.group(0) not in NOT_TAGS:
                        found.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)}")
    assert not found, "tag names spelt out outside trainables/tags.py:\n" + "\n".join(found)


def test_the_tags_module_holds_the_names_the_records_use():
    from tunelab.trainables import tags

    assert (tags.TRIAL_ID, tags.STATUS, tags.STATE, tags.LOG_PARAMS) == (
        "tunelab.trial_id", "tunelab.status", "tunelab.state", "tunelab.log_params")
    assert tags.count("completed") == "tunelab.n_completed"
    assert LITERAL.search('x = "tunelab.status"') and LITERAL.search('f"tunelab.n_{k}"')


def test_every_metric_a_trainable_reports_has_its_direction_in_the_vocabulary():
    from tunelab.trainables import REGISTRY, metrics

    reported = set(metrics.ALL).union(*(e.metrics or () for e in REGISTRY.values()))
    for key in sorted(reported):
        name = key.removesuffix("_o2").removesuffix("_o3")  # a loss or accuracy of one operation order
        expected = "min" if name.endswith(("loss", "ppl")) else "max" if name.endswith("acc") else None
        assert metrics.direction(key) == expected, key
    assert metrics.direction("train_loss_t_f") is None  # a step, whatever its name says
    assert metrics.direction("val_mae") is None  # outside the vocabulary


def test_analysis_takes_a_metric_outside_the_vocabulary_the_way_its_search_went():
    from tunelab.analysis import metric_mode

    assert metric_mode("val_acc") == "max" and metric_mode("val_mae") is None
    assert metric_mode("val_mae", "val_mae", "min") == "min"  # the search's own objective
    assert metric_mode("val_rmse", "val_mae", "min") is None
