"""Parsing Kubernetes API paths and deriving the API verb, the way the API server's RBAC sees them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

# Subresources of a namespace object: /api/v1/namespaces/{name}/{status|finalize}.
# Anything else after /namespaces/{name}/ is a namespaced resource.
NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclasses.dataclass(frozen=True)
class ApiPath:
    """A parsed ``/api/...`` or ``/apis/...`` path; ``plural`` is None for discovery paths."""

    group: str
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_api_path(path: str) -> ApiPath | None:
    """
    Parse a Kubernetes API path; None for the root discovery paths and for non-API paths.

    Unlike kmock 0.8's parser, ``/api/v1/namespaces`` and ``/api/v1/namespaces/{name}``
    are the namespaces resource itself, not a namespace segment.
    """
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) == 2 and parts[0] == "apis":
        return ApiPath(group=parts[1])
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return ApiPath(group=group, version=version)

    namespace: str | None = None
    is_namespace_object = len(rest) <= 2 or (len(rest) == 3 and rest[2] in NAMESPACE_SUBRESOURCES)
    if rest[0] == "namespaces" and not is_namespace_object:
        namespace, rest = rest[1], rest[2:]
    return ApiPath(
        group=group,
        version=version,
        plural=rest[0],
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        subresource="/".join(rest[2:]) or None,
    )


def derive_verb(method: str, path: ApiPath | None, query: Mapping[str, str]) -> str | None:
    """The Kubernetes API verb of a resource request (as RBAC rules name it); None for discovery."""
    if path is None or path.plural is None:
        return None
    method = method.upper()
    if method == "GET":
        if (query.get("watch") or "").lower() in ("true", "1"):
            return "watch"
        return "list" if path.name is None else "get"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "deletecollection" if path.name is None else "delete"
    return None
