"""
The PATCH flavours of the Kubernetes API, as pure functions on JSON-like dicts.

* JSON merge patch (RFC 7386): maps merge recursively, ``null`` deletes, everything else replaces.
* Strategic merge patch: a merge patch that merges the well-known lists of built-in kinds by key
  (see ``KEYED_LISTS``) and understands the common ``$patch`` / ``$deleteFromPrimitiveList`` /
  ``$setElementOrder`` / ``$retainKeys`` directives. An approximation: the real server takes
  the merge keys from the Go types, here they are chosen by the field name.
* JSON patch (RFC 6902) through the ``jsonpatch`` package, with errors mapped to API errors.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import jsonpatch
import jsonpointer

from modeldeploy.sim.errors import bad_request, invalid

# Lists merged by key in strategic merge patch and in server-side apply, by field name.
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

# Lists of scalars that strategic merge patch unions instead of replacing (patchStrategy=merge).
MERGED_SCALAR_LISTS = frozenset({"finalizers"})


def list_key(field: str | None, *lists: Sequence[Any]) -> str | None:
    """The merge key of a list field, or None if the list is atomic (replaced as a whole)."""
    candidates = KEYED_LISTS.get(field or "")
    if not candidates:
        return None
    items = [item for items in lists for item in items if not _is_directive(item)]
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


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """An approximate strategic merge patch; returns a new value and never mutates its arguments."""
    result = _smp_map(target, patch)
    return {} if result is None else result


def _smp_map(target: Any, patch: Any) -> Any:
    # Returns None when the patch deletes the map itself ($patch: delete).
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {key: copy.deepcopy(value) for key, value in patch.items() if key != "$patch"}
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [item for item in result.get(field) or [] if item not in value]
        elif key.startswith("$"):
            continue  # $setElementOrder/*, $retainKeys (handled below), $patch: ordering hints
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _smp_list(key, result.get(key), value)
        elif isinstance(value, Mapping):
            merged = _smp_map(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    retained = patch.get("$retainKeys")
    if isinstance(retained, list):
        result = {key: value for key, value in result.items() if key in retained}
    return result


def _smp_list(field: str, target: Any, patch: list[Any]) -> list[Any]:
    if any(_is_directive(item, "replace") for item in patch):
        return [copy.deepcopy(item) for item in patch if not _is_directive(item)]
    current: list[Any] = list(target) if isinstance(target, list) else []
    if field in MERGED_SCALAR_LISTS:
        return current + [item for item in patch if item not in current]
    key = list_key(field, current, patch)
    if key is None:
        return [copy.deepcopy(item) for item in patch if not _is_directive(item)]
    for item in patch:
        positions = [index for index, existing in enumerate(current) if existing.get(key) == item.get(key)]
        if _is_directive(item, "delete"):
            current = [existing for index, existing in enumerate(current) if index not in positions]
        elif positions:
            current[positions[0]] = _smp_map(current[positions[0]], item)
        else:
            current.append(_smp_map({}, item))
    return current


def _is_directive(item: Any, value: str | None = None) -> bool:
    if not isinstance(item, Mapping) or "$patch" not in item:
        return False
    return value is None or item["$patch"] == value


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
