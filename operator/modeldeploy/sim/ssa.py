"""
Field ownership and server-side apply, simplified but faithful in the parts an operator relies on.

A field set is a set of paths. A path is a tuple of FieldsV1 elements: ``f:name`` for a map key and
``k:{"name":"x"}`` for an item of a keyed list (see ``patches.KEYED_LISTS``). A path names a leaf
(a scalar, an atomic list, an empty map) or, for ``k:`` elements, the list item itself.
Each manager's set is kept in ``metadata.managedFields`` in the FieldsV1 format.

What is modelled: per-manager ownership for Apply and Update operations, per subresource;
removal of fields that the applier stops applying (unless someone else still owns them);
conflicts with other managers when the applied value differs (409 unless ``force``);
shared ownership when values agree; ownership transfer to updaters (non-apply writes).
What is not: the real server's type-aware schema (list types, map types, unions, defaults).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from modeldeploy.sim.errors import conflict
from modeldeploy.sim.patches import list_key

Path = tuple[str, ...]
MISSING: Any = object()

# System-owned metadata: never tracked, never merged from a client's body.
UNTRACKED_METADATA = frozenset(
    {
        "name",
        "namespace",
        "generateName",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)


@dataclasses.dataclass
class ManagedEntry:
    """One item of ``metadata.managedFields``."""

    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    subresource: str = ""
    time: str = ""
    fields: set[Path] = dataclasses.field(default_factory=set)

    @property
    def identity(self) -> tuple[str, str, str]:
        return self.manager, self.operation, self.subresource

    def clone(self) -> ManagedEntry:
        return dataclasses.replace(self, fields=set(self.fields))


# --- Field sets ---------------------------------------------------------------------------------


def field_set(obj: Mapping[str, Any]) -> set[Path]:
    """All owned-able paths of an object (excluding apiVersion, kind and system metadata)."""
    return set(_paths(obj, (), None))


def _paths(value: Any, prefix: Path, field: str | None) -> Iterator[Path]:
    if value is None:
        return  # null in a config means "no opinion"
    if isinstance(value, Mapping):
        if not value:
            if prefix and prefix != ("f:metadata",):
                yield prefix
            return
        for key, sub in value.items():
            if not prefix and key in ("apiVersion", "kind"):
                continue
            if prefix == ("f:metadata",) and key in UNTRACKED_METADATA:
                continue
            yield from _paths(sub, (*prefix, f"f:{key}"), key)
    elif isinstance(value, list) and (key_field := list_key(field, value)) is not None:
        for item in value:
            item_path = (*prefix, key_element(key_field, item[key_field]))
            yield item_path
            yield from _paths(item, item_path, None)
    elif prefix:
        yield prefix


def key_element(key_field: str, key_value: Any) -> str:
    return "k:" + json.dumps({key_field: key_value}, separators=(",", ":"), sort_keys=True)


def is_item(path: Path) -> bool:
    return bool(path) and path[-1].startswith("k:")


def is_prefix(prefix: Path, path: Path) -> bool:
    """Whether ``prefix`` is a strict ancestor of ``path``."""
    return len(prefix) < len(path) and path[: len(prefix)] == prefix


def get_at(obj: Any, path: Path) -> Any:
    """The value at a path, or ``MISSING``."""
    current = obj
    for element in path:
        kind, body = element[:2], element[2:]
        if kind == "f:" and isinstance(current, Mapping) and body in current:
            current = current[body]
        elif kind == "k:" and isinstance(current, list):
            wanted = json.loads(body)
            for item in current:
                if isinstance(item, Mapping) and all(item.get(k) == v for k, v in wanted.items()):
                    current = item
                    break
            else:
                return MISSING
        else:
            return MISSING
    return current


def remove_at(obj: dict[str, Any], path: Path, *, prune_from: int = 2) -> None:
    """Remove the value at a path (in place), then drop the maps this leaves empty below ``prune_from``."""
    if not path:
        return
    parent = get_at(obj, path[:-1])
    element = path[-1]
    if element.startswith("f:") and isinstance(parent, dict):
        parent.pop(element[2:], None)
    elif element.startswith("k:") and isinstance(parent, list):
        target = get_at(obj, path)
        parent[:] = [item for item in parent if item is not target]
    if len(path) - 1 >= prune_from and isinstance(parent, dict) and not parent:
        remove_at(obj, path[:-1], prune_from=prune_from)


def format_path(path: Path) -> str:
    """A human-readable path, as in the API server's conflict messages: ``.spec.containers[name="x"]``."""
    text = ""
    for element in path:
        if element.startswith("f:"):
            text += "." + element[2:]
        else:
            keys = json.loads(element[2:])
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
    return text


# --- FieldsV1 encoding ----------------------------------------------------------------------------


def fields_to_v1(paths: Iterable[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    owned_nodes: list[tuple[dict[str, Any], Path]] = []
    for path in sorted(paths):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
        owned_nodes.append((node, path))
    for node, _ in owned_nodes:
        if node and "." not in node:
            node["."] = {}  # the node itself is owned, not only its children
    return tree


def fields_from_v1(tree: Mapping[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    if not tree:
        return {prefix} if prefix else set()
    for element, sub in tree.items():
        if element == ".":
            paths.add(prefix)
        else:
            paths |= fields_from_v1(sub or {}, (*prefix, element))
    return paths


def parse_managed_fields(obj: Mapping[str, Any]) -> list[ManagedEntry]:
    entries: list[ManagedEntry] = []
    for raw in (obj.get("metadata") or {}).get("managedFields") or []:
        if not isinstance(raw, Mapping) or not raw.get("manager"):
            continue
        entries.append(
            ManagedEntry(
                manager=str(raw["manager"]),
                operation=str(raw.get("operation", "Update")),
                api_version=str(raw.get("apiVersion", "")),
                subresource=str(raw.get("subresource", "")),
                time=str(raw.get("time", "")),
                fields=fields_from_v1(raw.get("fieldsV1") or {}),
            )
        )
    return entries


def render_managed_fields(entries: Iterable[ManagedEntry]) -> list[dict[str, Any]]:
    rendered: list[dict[str, Any]] = []
    for entry in entries:
        item: dict[str, Any] = {
            "manager": entry.manager,
            "operation": entry.operation,
            "apiVersion": entry.api_version,
            "time": entry.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_to_v1(entry.fields),
        }
        if entry.subresource:
            item["subresource"] = entry.subresource
        rendered.append(item)
    return rendered


def stamp_times(old: list[ManagedEntry], new: list[ManagedEntry], now: str) -> list[ManagedEntry]:
    """Keep the old timestamp of every entry whose field set did not change; stamp the rest."""
    previous = {entry.identity: entry for entry in old}
    for entry in new:
        before = previous.get(entry.identity)
        entry.time = before.time if before is not None and before.fields == entry.fields else now
    return new


def prune(entries: list[ManagedEntry], obj: Mapping[str, Any]) -> list[ManagedEntry]:
    """Forget the ownership of fields that no longer exist, and the managers who own nothing."""
    result = []
    for entry in entries:
        entry.fields = {path for path in entry.fields if get_at(obj, path) is not MISSING}
        if entry.fields:
            result.append(entry)
    return result


# --- Non-apply writes -----------------------------------------------------------------------------


def track_update(
    entries: list[ManagedEntry],
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    manager: str,
    api_version: str,
    subresource: str = "",
) -> list[ManagedEntry]:
    """Ownership after a create/update/patch: the writer takes every field it changed."""
    changed = {
        path
        for path in field_set(new)
        if (get_at(old, path) is MISSING if is_item(path) else get_at(old, path) != get_at(new, path))
    }
    result = [entry.clone() for entry in entries]
    if changed:
        for entry in result:
            entry.fields = {
                p for p in entry.fields if p not in changed and not any(is_prefix(c, p) for c in changed)
            }
        mine = next((e for e in result if e.identity == (manager, "Update", subresource)), None)
        if mine is None:
            mine = ManagedEntry(manager, "Update", api_version, subresource)
            result.append(mine)
        mine.fields |= changed
        mine.api_version = api_version
    return prune(result, new)


# --- Server-side apply ----------------------------------------------------------------------------


def server_side_apply(
    live: Mapping[str, Any],
    config: Mapping[str, Any],
    entries: list[ManagedEntry],
    *,
    manager: str,
    api_version: str,
    subresource: str = "",
    force: bool = False,
) -> tuple[dict[str, Any], list[ManagedEntry]]:
    """
    Apply a configuration for a manager: the merged object and the new ownership.

    ``config`` must already be narrowed to what this endpoint may change (e.g. no status on the
    main resource when there is a status subresource; only status on ``/status``).
    """
    applied = field_set(config)
    result = [entry.clone() for entry in entries]
    others = [entry for entry in result if entry.manager != manager]

    conflicts: list[tuple[Path, ManagedEntry]] = []
    for path in sorted(applied):
        if is_item(path) or get_at(config, path) == get_at(live, path):
            continue  # same value: ownership becomes shared, no conflict
        for entry in others:
            if any(
                q == path or is_prefix(q, path) or is_prefix(path, q) for q in entry.fields if not is_item(q)
            ):
                conflicts.append((path, entry))
    if conflicts and not force:
        causes = [
            {
                "reason": "FieldManagerConflict",
                "message": f'conflict with "{entry.manager}" using {entry.api_version}',
                "field": format_path(path),
            }
            for path, entry in conflicts
        ]
        summary = "\n".join(f"- {c['message']}: {c['field']}" for c in causes)
        raise conflict(
            f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}: {summary}",
            {"causes": causes},
        )
    for path, entry in conflicts:  # forced: the applier takes the fields over
        entry.fields = {
            q for q in entry.fields if not (q == path or is_prefix(q, path) or is_prefix(path, q))
        }

    merged: dict[str, Any] = copy.deepcopy(dict(live))
    mine = next((e for e in result if e.identity == (manager, "Apply", subresource)), None)
    previously = mine.fields if mine is not None else set()
    still_owned = {path for entry in result if entry is not mine for path in entry.fields}
    for path in sorted(previously - applied, key=len, reverse=True):
        if any(q == path or is_prefix(path, q) for q in still_owned):
            continue  # someone else owns it (or something inside it): keep
        remove_at(merged, path)
    merged = _merge_applied(merged, config, None)

    if mine is None:
        mine = ManagedEntry(manager, "Apply", api_version, subresource)
        result.append(mine)
    mine.fields = applied
    mine.api_version = api_version
    return merged, prune(result, merged)


def _merge_applied(live: Any, config: Any, field: str | None) -> Any:
    if isinstance(config, Mapping):
        result: dict[str, Any] = dict(live) if isinstance(live, Mapping) else {}
        for key, value in config.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = _merge_applied(result.get(key), value, key)
        return result
    if isinstance(config, list) and isinstance(live, list):
        key_field = list_key(field, live, config)
        if key_field is not None:
            merged = list(live)
            for item in config:
                index = next(
                    (i for i, old in enumerate(merged) if old.get(key_field) == item[key_field]), None
                )
                if index is None:
                    merged.append(copy.deepcopy(item))
                else:
                    merged[index] = _merge_applied(merged[index], item, None)
            return merged
    return copy.deepcopy(config)
