"""Decide whether a child needs a write: zero writes when the world already matches.

Two checks, because each misses what the other sees:
- the applied-hash annotation changes when *we* change what we want, including a removed field,
  which a containment check cannot see;
- containment sees a field someone edited or deleted by hand, which the hash cannot see.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

HASH_ANNOTATION = "modeldeploy.io/applied-hash"


def contains(live: Any, desired: Any) -> bool:
    """True when every field of `desired` is present in `live` with an equal value.

    Fields the API server or other controllers add (defaults, status, replicas set by the HPA)
    are ignored; lists must match element by element, as keyed lists keep their order.
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and contains(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    if isinstance(desired, bool) or isinstance(live, bool):
        return live is desired
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return float(live) == float(desired)
    return bool(live == desired)


def content_hash(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def stamped(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` with the hash of its own content in an annotation."""
    meta = dict(obj["metadata"])
    meta["annotations"] = {**meta.get("annotations", {}), HASH_ANNOTATION: content_hash(obj)}
    return {**obj, "metadata": meta}


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """`desired` must be stamped()."""
    return live is None or not contains(live, desired)
