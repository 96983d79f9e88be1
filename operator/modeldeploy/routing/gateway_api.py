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
server; observed_split accepts both our objects and their defaulted live form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import GatewayAPI, Match, ModelDeploymentSpec, ParentRef, StringMatch
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
    regex_to_string_match,
    share,
)

API_VERSION = "gateway.networking.k8s.io/v1"
HTTP_ROUTE = "HTTPRoute"
GRPC_ROUTE = "GRPCRoute"
_DEFAULT_PATH = {"type": "PathPrefix", "value": "/"}  # what the API server fills into a bare match


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


# ------------------------------------------------------------------------------- reading back


def _backend_track(parent: ObjectRef, ref: Any, port: int) -> Track | None:
    """Which track a live backendRef points at, or None when it is not one of ours."""
    if not isinstance(ref, dict):
        return None
    if ref.get("group", "") != "" or ref.get("kind", "Service") != "Service":
        return None
    if ref.get("namespace", parent.namespace) != parent.namespace or as_int(ref.get("port")) != port:
        return None
    for track in Track:
        if ref.get("name") == track_service_name(parent, track):
            return track
    return None


def _is_full_mirror(parent: ObjectRef, item: Any, port: int) -> bool:
    if not isinstance(item, dict) or item.get("type") != "RequestMirror":
        return False
    mirror = item.get("requestMirror")
    if not isinstance(mirror, dict) or _backend_track(parent, mirror.get("backendRef"), port) != Track.CANARY:
        return False
    fraction = mirror.get("fraction")
    partial_fraction = isinstance(fraction, dict) and fraction.get("numerator") != fraction.get(
        "denominator", 100
    )
    return mirror.get("percent", 100) == 100 and not partial_fraction


def _read_match(item: Any) -> Match | None:
    """A cohort match back into a Match; None for anything but header matches on every path."""
    if (
        not isinstance(item, dict)
        or set(item) - {"headers", "path"}
        or item.get("path", _DEFAULT_PATH) != (_DEFAULT_PATH)
    ):
        return None
    headers: dict[str, StringMatch] = {}
    for header in item.get("headers") or []:
        if not isinstance(header, dict) or not isinstance(header.get("value"), str):
            return None
        kind, value = header.get("type", "Exact"), header["value"]
        if kind == "Exact":
            headers[str(header.get("name"))] = StringMatch(exact=value)
        elif kind == "RegularExpression":
            headers[str(header.get("name"))] = regex_to_string_match(value)
        else:
            return None
    return Match(headers=headers) if headers else None


def _read_rule(parent: ObjectRef, rule: Any, port: int) -> Split | tuple[Match, ...] | None:
    """The cohort rule's matches, or the split rule's weighted split; None when not ours.

    Fields that do not move traffic (a rule name, timeouts, header filters) are ignored: they
    cannot make the split differ from what it says.
    """
    if not isinstance(rule, dict):
        return None
    refs = rule.get("backendRefs") or []
    tracks = [_backend_track(parent, ref, port) for ref in refs]
    weights = [as_int(ref.get("weight", 1)) if isinstance(ref, dict) else None for ref in refs]
    if None in tracks or None in weights or len(set(tracks)) != len(tracks):
        return None
    by_track = {t: w for t, w in zip(tracks, weights, strict=True) if t is not None and w is not None}
    mirrors = [
        f for f in rule.get("filters") or [] if isinstance(f, dict) and f.get("type") == "RequestMirror"
    ]
    matches = rule.get("matches") or [{"path": _DEFAULT_PATH}]  # Gateway API's default: every request
    if matches != [{"path": _DEFAULT_PATH}]:
        cohort = [_read_match(m) for m in matches]
        if mirrors or set(by_track) != {Track.CANARY} or by_track[Track.CANARY] == 0:
            return None
        return tuple(m for m in cohort if m is not None) if None not in cohort else None
    if Track.PRIMARY not in by_track or len(mirrors) > 1:
        return None
    mirror = bool(mirrors)
    if mirror and not _is_full_mirror(parent, mirrors[0], port):
        return None
    weight = share(by_track[Track.PRIMARY], by_track.get(Track.CANARY, 0))
    if weight is None or (mirror and weight != 0):
        return None
    return Split(weight, mirror=mirror)


def _read_route(parent: ObjectRef, obj: dict[str, Any] | None, port: int) -> Split | None:
    if obj is None or not isinstance(obj.get("spec"), dict):
        return None
    splits: list[Split] = []
    cohorts: list[tuple[Match, ...]] = []
    for rule in obj["spec"].get("rules") or []:
        read = _read_rule(parent, rule, port)
        if read is None:
            return None
        if isinstance(read, Split):
            splits.append(read)
        else:
            cohorts.append(read)
    if len(splits) != 1 or len(cohorts) > 1:
        return None  # we write exactly one split rule and at most one cohort rule
    (split,) = splits
    return Split(split.canary_weight, mirror=split.mirror, match=cohorts[0] if cohorts else ())


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

    def observed_split(self, parent: ObjectRef, objects: list[dict[str, Any]]) -> Split | None:
        """The HTTPRoute's split. A GRPCRoute, when there is one, must carry the same split, or
        the split is not in force everywhere and None is returned."""
        http = _read_route(parent, find(objects, API_VERSION, HTTP_ROUTE, parent.name), HTTP_PORT)
        grpc_obj = find(objects, API_VERSION, GRPC_ROUTE, grpc_route_name(parent))
        if grpc_obj is not None and _read_route(parent, grpc_obj, GRPC_PORT) != http:
            return None
        return http
