"""Gateway API: an HTTPRoute `<name>` for Triton's HTTP port and a GRPCRoute `<name>-grpc` for its
gRPC port, both attached to the parentRefs and hostnames in spec.traffic.gatewayAPI.

Each route has at most two rules:
- the cohort rule (A/B), only when the split has matches: one match per Match, all to the canary.
  Gateway API orders matches by specificity (header matches beat none), so it wins over the split
  rule wherever it sits;
- the split rule: weighted backendRefs, plus a RequestMirror filter to the canary for Shadow.

The canary backendRef is left out whenever its weight is 0, so the steady state never references
`<name>-canary`, which exists only during a rollout. The primary is always listed (weight 0 at a
full switch), so the rule keeps one shape. Group, kind and parentRef defaults are left to the API
server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import GatewayAPI, ModelDeploymentSpec, ParentRef, StringMatch
from modeldeploy.render.deployment import ADMIN_HEADER
from modeldeploy.render.names import Track, metadata, track_service_name
from modeldeploy.routing.base import (
    EMPTY_VALUE_REGEX,
    GRPC_PORT,
    HTTP_PORT,
    RouteHold,
    Split,
    as_int,
    check_supported,
    find,
    match_headers,
    prefix_regex,
)

API_VERSION = "gateway.networking.k8s.io/v1"
HTTP_ROUTE = "HTTPRoute"
GRPC_ROUTE = "GRPCRoute"


# Every rule removes Triton's admin header, so no request from outside the namespace can open the
# management protocols (render/deployment.py RESTRICTED_PROTOCOLS), whatever value it guesses.
def strip_admin_header() -> dict[str, Any]:
    return {"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": [ADMIN_HEADER]}}


def grpc_route_name(parent: ObjectRef) -> str:
    return f"{parent.name}-grpc"


def _parent_ref(ref: ParentRef) -> dict[str, Any]:
    out: dict[str, Any] = {"name": ref.name}
    if ref.namespace is not None:
        out["namespace"] = ref.namespace
    if ref.section_name is not None:
        out["sectionName"] = ref.section_name
    if ref.port is not None:
        out["port"] = ref.port
    return out


def header_match(name: str, value: StringMatch) -> dict[str, str]:
    """One Match header as a Gateway API header match: Exact, or RegularExpression for the rest."""
    if value.exact is not None:
        if value.exact == "":
            return {"name": name, "type": "RegularExpression", "value": EMPTY_VALUE_REGEX}
        return {"name": name, "type": "Exact", "value": value.exact}
    if value.prefix is not None:
        return {"name": name, "type": "RegularExpression", "value": prefix_regex(value.prefix)}
    return {"name": name, "type": "RegularExpression", "value": str(value.regex)}


def _backend(parent: ObjectRef, track: Track, port: int, weight: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": track_service_name(parent, track), "port": port}
    if weight is not None:
        out["weight"] = weight
    return out


def _rules(parent: ObjectRef, split: Split, port: int) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    if split.match:
        matches = [
            {"headers": [header_match(n, v) for n, v in match_headers(m, f"rollout.match[{i}]")]}
            for i, m in enumerate(split.match)
        ]
        rules.append(
            {
                "matches": matches,
                "filters": [strip_admin_header()],
                "backendRefs": [_backend(parent, Track.CANARY, port, 100)],
            }
        )
    backends = [_backend(parent, Track.PRIMARY, port, split.primary_weight)]
    if split.canary_weight > 0:
        backends.append(_backend(parent, Track.CANARY, port, split.canary_weight))
    filters: list[dict[str, Any]] = [strip_admin_header()]
    if split.mirror:
        mirror = {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": _backend(parent, Track.CANARY, port)},
        }
        filters.append(mirror)
    split_rule: dict[str, Any] = {"filters": filters, "backendRefs": backends}
    rules.append(split_rule)
    return rules


def _route(
    parent: ObjectRef, config: GatewayAPI, kind: str, name: str, split: Split, port: int
) -> dict[str, Any]:
    spec: dict[str, Any] = {"parentRefs": [_parent_ref(ref) for ref in config.parent_refs]}
    if config.hostnames:
        spec["hostnames"] = list(config.hostnames)
    spec["rules"] = _rules(parent, split, port)
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata(parent, name), "spec": spec}


# ---------------------------------------------------------------------- did the Gateway accept it

ROUTE_NOT_ACCEPTED = "RouteNotAccepted"
ROUTE_PENDING = "RoutePending"
_GATEWAY_GROUP = "gateway.networking.k8s.io"
_MAX_MESSAGE = 200


def _same_parent(reported: Any, ref: ParentRef, namespace: str) -> bool:
    """A status.parents[].parentRef that names our spec's parentRef (the API's defaults applied)."""
    if not isinstance(reported, Mapping):
        return False
    return (
        reported.get("group", _GATEWAY_GROUP) == _GATEWAY_GROUP
        and reported.get("kind", "Gateway") == "Gateway"
        and reported.get("name") == ref.name
        and reported.get("namespace", namespace) == (ref.namespace or namespace)
        and reported.get("sectionName") == ref.section_name
        and as_int(reported.get("port")) == ref.port
    )


def _current(condition: Mapping[str, Any], generation: int) -> bool:
    """Whether a condition speaks of the route as it is now (it may predate our last weights)."""
    observed = condition.get("observedGeneration")
    return observed is None or (as_int(observed) or 0) >= generation


def _one_line(text: Any) -> str:
    return " ".join(str(text or "").split())[:_MAX_MESSAGE]


def _parent_hold(route: Mapping[str, Any], kind: str, ref: ParentRef, namespace: str) -> RouteHold | None:
    meta = route.get("metadata") or {}
    generation = as_int(meta.get("generation")) or 0
    parents = ((route.get("status") or {}).get("parents")) or []
    entries = [
        e for e in parents if isinstance(e, Mapping) and _same_parent(e.get("parentRef"), ref, namespace)
    ]
    if not entries:
        # No Gateway controller has reported on this parent: nothing tells whether it routes the
        # canary, so the analysis decides, as without this check (docs/routing.md).
        return None
    gateway = f"Gateway {ref.namespace or namespace}/{ref.name}" + (
        f" ({ref.section_name})" if ref.section_name else ""
    )
    route_name = f"{kind} {meta.get('name')}"
    for entry in entries:
        for cond in _conditions(entry):
            refused = cond.get("type") in ("Accepted", "ResolvedRefs") and cond.get("status") == "False"
            if refused and _current(cond, generation):
                controller = _one_line(entry.get("controllerName")) or "its controller"
                return RouteHold(
                    ROUTE_NOT_ACCEPTED,
                    f"{gateway} does not route {route_name} ({controller}): {cond.get('type')}=False, "
                    f"{_one_line(cond.get('reason'))}: {_one_line(cond.get('message'))}",
                )
    for entry in entries:
        accepted = next((c for c in _conditions(entry) if c.get("type") == "Accepted"), None)
        if accepted is None or accepted.get("status") != "True" or not _current(accepted, generation):
            said = (
                f"Accepted={accepted.get('status')} for generation {accepted.get('observedGeneration', '?')}"
                if accepted is not None
                else "no Accepted condition"
            )
            return RouteHold(
                ROUTE_PENDING,
                f"{gateway} has not accepted generation {generation} of {route_name} yet ({said})",
            )
    return None


def _conditions(entry: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in entry.get("conditions") or [] if isinstance(c, Mapping)]


def route_hold(
    parent: ObjectRef, spec: ModelDeploymentSpec, objects: Iterable[Mapping[str, Any]]
) -> RouteHold | None:
    """Whether the live routes are accepted by every Gateway of our parentRefs, from the route's
    status.parents[] (any controllerName): Accepted=False or ResolvedRefs=False for the route as
    it is now holds with RouteNotAccepted, naming the Gateway's reason and message; a Gateway that
    has reported, but not yet on the route's current generation, holds with RoutePending. A route
    not applied yet, or one no controller has reported on, holds nothing."""
    config = spec.traffic.gateway_api
    if config is None:
        return None
    live = [dict(obj) for obj in objects]
    wanted = [(HTTP_ROUTE, parent.name, config.parent_refs)]
    if config.grpc is not None:
        wanted.append((GRPC_ROUTE, grpc_route_name(parent), config.grpc.parent_refs or config.parent_refs))
    for kind, name, refs in wanted:
        route = find(live, API_VERSION, kind, name)
        if route is None:
            continue
        for ref in refs:
            hold = _parent_hold(route, kind, ref, parent.namespace)
            if hold is not None:
                return hold
    return None


class GatewayAPIRouter:
    name = "gatewayAPI"
    kinds: tuple[tuple[str, str], ...] = ((API_VERSION, HTTP_ROUTE), (API_VERSION, GRPC_ROUTE))
    supports_mirror = True
    supports_match = True

    def routes(self, parent: ObjectRef, spec: ModelDeploymentSpec, split: Split) -> list[dict[str, Any]]:
        check_supported(self, split)
        config = spec.traffic.gateway_api
        if config is None:
            raise ValueError("traffic.gatewayAPI is not set: the Gateway API router has nothing to attach to")
        out = [_route(parent, config, HTTP_ROUTE, parent.name, split, HTTP_PORT)]
        if config.grpc is not None:
            grpc = config.model_copy(
                update={
                    "parent_refs": config.grpc.parent_refs or config.parent_refs,
                    "hostnames": config.grpc.hostnames,
                }
            )
            out.append(_route(parent, grpc, GRPC_ROUTE, grpc_route_name(parent), split, GRPC_PORT))
        return out
