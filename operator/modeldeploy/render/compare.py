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

from modeldeploy.render import quantity

HASH_ANNOTATION = "modeldeploy.io/applied-hash"

# Where the API server canonicalises quantities in what we render: resource maps (every value),
# and the value fields of HPA targets and emptyDir sizes (passed-through raw HPA metrics included).
_QUANTITY_MAPS = frozenset({"limits", "requests"})
_QUANTITY_FIELDS = {"target": frozenset({"value", "averageValue"}), "emptyDir": frozenset({"sizeLimit"})}


def _is_quantity(parent: str | None, key: str) -> bool:
    return parent in _QUANTITY_MAPS or key in _QUANTITY_FIELDS.get(parent or "", frozenset())


def contains(live: Any, desired: Any, quantity_value: bool = False) -> bool:
    """True when every field of `desired` is present in `live` with an equal value.

    Fields the API server or other controllers add (defaults, status, replicas set by the HPA)
    are ignored; lists must match element by element, as keyed lists keep their order.
    Quantities compare by value: we may render 1 or "1000m" where the server stores "1".
    """
    return _contains(live, desired, None, quantity_value)


def _contains(live: Any, desired: Any, key: str | None, quantity_value: bool) -> bool:
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            k in live and _contains(live[k], v, k, _is_quantity(key, k)) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(_contains(a, b, key, False) for a, b in zip(live, desired, strict=True))
        )
    if isinstance(desired, bool) or isinstance(live, bool):
        return live is desired
    if quantity_value:
        return quantity.equal(live, desired)
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
