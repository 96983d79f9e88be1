"""Istio: one VirtualService `<name>` for the in-cluster host `<name>` and spec.traffic.istio.hosts.

Destinations are the track Services `<name>-primary` and `<name>-canary` by host name, so no
DestinationRule subsets are needed. HTTP and gRPC (HTTP/2) share the same http routes.

Routes come in lanes, because Istio picks a destination port by itself only inside the mesh:
- mesh: without a port, a destination gets the port the caller used, so 8000 stays HTTP and 8001
  stays gRPC. With no gateways this is the only lane.
- gateways (when spec.traffic.istio.gateways is set): a gateway listens on its own port, and a
  destination Service with several ports then needs one named (istioctl analyze IST0112), so
  requests with a gRPC content-type go to port 8001 and the rest to 8000. `mesh` is added to the
  VirtualService's gateways so in-cluster callers are routed too.
Each lane has a cohort route (A/B, only when the split has matches) before its split route, as
Istio takes the first route that matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import ModelDeploymentSpec, StringMatch
from modeldeploy.render.deployment import ADMIN_HEADER
from modeldeploy.render.names import Track, metadata, track_service_name
from modeldeploy.routing.base import (
    EMPTY_VALUE_REGEX,
    GRPC_PORT,
    HTTP_PORT,
    Split,
    check_supported,
    match_headers,
)

API_VERSION = "networking.istio.io/v1"
VIRTUAL_SERVICE = "VirtualService"
MESH = "mesh"
CONTENT_TYPE = "content-type"
# gRPC requests carry application/grpc, application/grpc+proto and the like.
GRPC_CONTENT_TYPE = {"prefix": "application/grpc"}


# Every route removes Triton's admin header, so no request routed by Istio can open the management
# protocols (render/deployment.py RESTRICTED_PROTOCOLS).
def strip_admin_header() -> dict[str, Any]:
    return {"request": {"remove": [ADMIN_HEADER]}}


@dataclass(frozen=True)
class Lane:
    name: str  # prefix of its route names
    gateways: tuple[str, ...]  # empty: the VirtualService's own gateways
    port: int | None  # destination port; None: the port the caller used
    grpc: bool = False  # only requests with a gRPC content-type


def lanes(gateways_given: list[str]) -> list[Lane]:
    gateways = tuple(dict.fromkeys(g for g in gateways_given if g != MESH))
    if not gateways:
        return [Lane("mesh", (), None)]
    return [
        Lane("mesh", (MESH,), None),
        Lane("gateway-grpc", gateways, GRPC_PORT, grpc=True),
        Lane("gateway-http", gateways, HTTP_PORT),
    ]


def header_match(value: StringMatch) -> dict[str, str]:
    """One Match header as an Istio StringMatch. Istio reads an empty exact value as "the header is
    present", so "present and empty" is written as a regex."""
    if value.exact == "":
        return {"regex": EMPTY_VALUE_REGEX}
    if value.exact is not None:
        return {"exact": value.exact}
    if value.prefix is not None:
        return {"prefix": value.prefix}
    return {"regex": str(value.regex)}


def _destination(parent: ObjectRef, track: Track, port: int | None, weight: int) -> dict[str, Any]:
    dest: dict[str, Any] = {"host": track_service_name(parent, track)}
    if port is not None:
        dest["port"] = {"number": port}
    return {"destination": dest, "weight": weight}


def _lane_match(lane: Lane, headers: dict[str, dict[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if lane.grpc:
        headers = {**headers, CONTENT_TYPE: dict(GRPC_CONTENT_TYPE)}
    if headers:
        out["headers"] = headers
    if lane.gateways:
        out["gateways"] = list(lane.gateways)
    return out


def _lane_routes(parent: ObjectRef, lane: Lane, split: Split) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = []
    if split.match:
        cohort: list[dict[str, Any]] = []
        for i, match in enumerate(split.match):
            headers = {n: header_match(v) for n, v in match_headers(match, f"rollout.match[{i}]")}
            if lane.grpc and CONTENT_TYPE in headers:
                raise ValueError(
                    f"rollout.match[{i}].headers: content-type is how Istio gateway routes tell gRPC "
                    "from HTTP, so it cannot pin a cohort"
                )
            cohort.append(_lane_match(lane, headers))
        routes.append(
            {
                "name": f"{lane.name}-cohort",
                "match": cohort,
                "headers": strip_admin_header(),
                "route": [_destination(parent, Track.CANARY, lane.port, 100)],
            }
        )
    weighted = [_destination(parent, Track.PRIMARY, lane.port, split.primary_weight)]
    if split.canary_weight > 0:
        weighted.append(_destination(parent, Track.CANARY, lane.port, split.canary_weight))
    route: dict[str, Any] = {"name": f"{lane.name}-split"}
    lane_match = _lane_match(lane, {})
    if lane_match:
        route["match"] = [lane_match]
    route["headers"] = strip_admin_header()
    route["route"] = weighted
    if split.mirror:
        mirror: dict[str, Any] = {"host": track_service_name(parent, Track.CANARY)}
        if lane.port is not None:
            mirror["port"] = {"number": lane.port}
        route["mirror"] = mirror
        route["mirrorPercentage"] = {"value": 100.0}
    routes.append(route)
    return routes


class IstioRouter:
    name = "istio"
    kinds: tuple[tuple[str, str], ...] = ((API_VERSION, VIRTUAL_SERVICE),)
    supports_mirror = True
    supports_match = True

    def routes(self, parent: ObjectRef, spec: ModelDeploymentSpec, split: Split) -> list[dict[str, Any]]:
        check_supported(self, split)
        config = spec.traffic.istio
        if config is None:
            raise ValueError("traffic.istio is not set: the Istio router has nothing to route")
        body: dict[str, Any] = {"hosts": list(dict.fromkeys([*config.hosts, parent.name]))}
        if config.gateways:
            body["gateways"] = list(dict.fromkeys([*config.gateways, MESH]))
        body["http"] = [
            route for lane in lanes(config.gateways) for route in _lane_routes(parent, lane, split)
        ]
        return [
            {
                "apiVersion": API_VERSION,
                "kind": VIRTUAL_SERVICE,
                "metadata": metadata(parent, parent.name),
                "spec": body,
            }
        ]
