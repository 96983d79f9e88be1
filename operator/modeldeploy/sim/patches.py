"""
The PATCH flavours that the demo's emulator serves, as pure functions on JSON-like dicts.

* JSON merge patch (RFC 7386): maps merge recursively, ``null`` deletes, everything else replaces.
* JSON patch (RFC 6902) through the ``jsonpatch`` package, with errors mapped to API errors.
* ``list_key``: which lists server-side apply (``ssa``) merges by key. An approximation: the real
  server takes the merge keys from the Go types, here they are chosen by the field name.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import jsonpatch
import jsonpointer

from modeldeploy.sim.errors import bad_request, invalid

# Lists merged by key in server-side apply, by field name.
# Several candidates: the first key present in every item wins (container ports vs. service ports).
KEYED_LISTS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "ports": ("containerPort", "port"),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
}


def list_key(field: str | None, *lists: Sequence[Any]) -> str | None:
    """The merge key of a list field, or None if the list is atomic (replaced as a whole)."""
    candidates = KEYED_LISTS.get(field or "")
    if not candidates:
        return None
    items = [item for items in lists for item in items]
    for candidate in candidates:
        if all(isinstance(item, Mapping) and candidate in item for item in items):
            return candidate
    return None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; returns a new value and never mutates its arguments."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Mapping[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902 JSON patch; a failed ``test`` or a missing path is 422, as the API server answers."""
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    try:
        patched = jsonpatch.apply_patch(copy.deepcopy(dict(target)), operations, in_place=True)
    except jsonpatch.JsonPatchTestFailed as e:
        raise invalid(f"the server rejected our request due to an error in our request: {e}") from e
    except jsonpatch.InvalidJsonPatch as e:
        raise bad_request(f"invalid json patch: {e}") from e
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
        raise invalid(f"the server rejected our request due to an error in our request: {e}") from e
    if not isinstance(patched, dict):
        raise invalid("the patched object is not a JSON object")
    return patched
