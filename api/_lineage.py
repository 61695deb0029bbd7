"""A PBT search's lineage: whose weights a member's come from (torch-, Ray- and MLflow-free).

Each member's child run carries its exploits in the tag ``tunelab.lineage``: a JSON list of ``{step,
from, config}``, meaning "at ``step`` this member took the weights of member ``from`` (its state at
``step``) and went on with ``config``". The search names the winner's family tree in its parent run's
description (``search._parent``); ``tunelab report`` draws it (``analysis._plot``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Segment:
    """Steps ``start`` (exclusive; 0: from the start) to ``end`` (inclusive) of a lineage, trained by
    ``member`` with ``config`` (the mutated values it had from ``start``; empty: its initial ones)."""

    member: str
    start: int
    end: int
    config: Mapping[str, Any]


def parse(tag: str | None) -> list[dict[str, Any]]:
    """The exploits a ``tunelab.lineage`` tag holds, oldest first (none for a missing or bad tag)."""
    if not tag:
        return []
    try:
        value = json.loads(tag)
    except ValueError:
        return []
    return [e for e in value if isinstance(e, dict) and {"step", "from"} <= set(e)] if isinstance(value, list) else []


def family_tree(lineages: Mapping[str, Sequence[Mapping[str, Any]]], member: str, end: int) -> list[Segment]:
    """Where ``member``'s weights at step ``end`` come from, newest segment first.

    Args:
        lineages: each member's exploits (``parse``), by member name.
        member: the member to trace (the winner).
        end: its last step.

    A member's state at step s comes from its latest exploit at a step <= s, if any: before that
    step, from the member it copied. A member copied at step s was in the top quantile then, so it did
    not itself exploit at s: each step back is strictly earlier, and the walk ends.
    """
    tree: list[Segment] = []
    current, upto, inclusive = member, end, True
    while True:
        earlier = [e for e in lineages.get(current, ()) if (e["step"] <= upto if inclusive else e["step"] < upto)]
        if not earlier:
            tree.append(Segment(current, 0, upto, {}))
            return tree
        last = max(earlier, key=lambda e: e["step"])
        tree.append(Segment(current, int(last["step"]), upto, dict(last.get("config") or {})))
        current, upto, inclusive = str(last["from"]), int(last["step"]), False


def describe(tree: Sequence[Segment]) -> str:
    """'t003 (steps 5-8, lr=1.44 dropout=0.11) ← t002 (steps 1-4)': a family tree in a line."""
    parts = []
    for seg in tree:
        values = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in seg.config.items())
        parts.append(f"{seg.member} (steps {seg.start + 1}-{seg.end}{', ' + values if values else ''})")
    return " ← ".join(parts)
