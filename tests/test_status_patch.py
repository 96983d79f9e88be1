"""The status write: a JSON merge patch (RFC 7386) from the status read to the status decided."""

from __future__ import annotations

from typing import Any

import pytest

from modeldeploy.handlers.reconciler import merge_patch

CASES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "nothing changed: an empty patch": ({"phase": "Stable"}, {"phase": "Stable"}, {}),
    "a scalar changed": (
        {"phase": "Stable", "step": 1},
        {"phase": "Progressing", "step": 1},
        {"phase": "Progressing"},
    ),
    "a key added": ({}, {"step": 0}, {"step": 0}),
    "a top-level key dropped is nulled": (
        {"step": 1, "phase": "Stable"},
        {"phase": "Stable"},
        {"step": None},
    ),
    # The bug this guards: a new gate run has no finishedAt or verdict yet; merging the gate object
    # whole would keep the last run's finishedAt, and the run would look finished.
    "a nested key dropped is nulled inside its object": (
        {"gate": {"startedAt": "a", "finishedAt": "b", "verdict": "Inconclusive", "state": "Inconclusive"}},
        {"gate": {"startedAt": "c", "state": "Running"}},
        {"gate": {"startedAt": "c", "state": "Running", "finishedAt": None, "verdict": None}},
    ),
    "two levels deep": (
        {"stableSpec": {"model": {"config": {"maxBatchSize": 8}, "name": "m"}}},
        {"stableSpec": {"model": {"name": "m"}}},
        {"stableSpec": {"model": {"config": None}}},
    ),
    "lists are replaced whole": (
        {"history": [{"result": "Promoted"}]},
        {"history": [{"result": "RolledBack"}, {"result": "Promoted"}]},
        {"history": [{"result": "RolledBack"}, {"result": "Promoted"}]},
    ),
    "an object replacing a scalar goes whole": (
        {"gate": "x"},
        {"gate": {"state": "Running"}},
        {"gate": {"state": "Running"}},
    ),
    "a whole object dropped is nulled once": (
        {"gate": {"state": "Passed"}, "phase": "Stable"},
        {"phase": "Stable"},
        {"gate": None},
    ),
}


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386's own algorithm, to check the patch against."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_merge_patch(out.get(key), value)
    return out


@pytest.mark.parametrize(("before", "after", "expected"), list(CASES.values()), ids=list(CASES))
def test_merge_patch(before: dict[str, Any], after: dict[str, Any], expected: dict[str, Any]) -> None:
    patch = merge_patch(before, after)
    assert patch == expected
    assert apply_merge_patch(before, patch) == after
