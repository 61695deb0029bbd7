"""``tunelab._lineage``: a PBT member's family tree from its exploits (made-up lineages)."""

from __future__ import annotations

import json

from tunelab import _lineage
from tunelab._lineage import Segment

# t2 copied t0 at step 2; t1 copied t2 at step 4; t2 copied t1 at step 6 (after t1's copy of it).
LINEAGES = {
    "t0": [],
    "t1": [{"step": 4, "from": "t2", "config": {"lr": 0.5}}],
    "t2": [{"step": 2, "from": "t0", "config": {"lr": 1.2}}, {"step": 6, "from": "t1", "config": {"lr": 0.6}}],
}


def test_a_family_tree_walks_back_through_each_copy_to_the_start():
    tree = _lineage.family_tree(LINEAGES, "t2", 8)
    assert tree == [Segment("t2", 6, 8, {"lr": 0.6}), Segment("t1", 4, 6, {"lr": 0.5}),
                    Segment("t2", 2, 4, {"lr": 1.2}), Segment("t0", 0, 2, {})]
    assert _lineage.describe(tree) == ("t2 (steps 7-8, lr=0.6) ← t1 (steps 5-6, lr=0.5) ← t2 (steps 3-4, lr=1.2) "
                                       "← t0 (steps 1-2)")


def test_a_member_that_never_copied_is_its_own_tree_and_a_copy_after_the_end_does_not_count():
    assert _lineage.family_tree(LINEAGES, "t0", 8) == [Segment("t0", 0, 8, {})]
    assert _lineage.family_tree(LINEAGES, "t1", 3) == [Segment("t1", 0, 3, {})]


def test_a_bad_or_missing_tag_is_no_lineage():
    assert _lineage.parse(None) == [] and _lineage.parse("not json") == [] and _lineage.parse('{"a": 1}') == []
    assert _lineage.parse(json.dumps(LINEAGES["t2"])) == LINEAGES["t2"]
