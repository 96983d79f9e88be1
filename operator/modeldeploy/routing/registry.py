"""Which router a spec uses, and every kind any router owns."""

from __future__ import annotations

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.routing.base import Router
from modeldeploy.routing.gateway_api import GatewayAPIRouter
from modeldeploy.routing.istio import IstioRouter
from modeldeploy.routing.replica_ratio import ReplicaRatioRouter

ROUTERS: dict[str, Router] = {
    router.name: router for router in (GatewayAPIRouter(), IstioRouter(), ReplicaRatioRouter())
}


def router_for(spec: ModelDeploymentSpec) -> Router:
    return ROUTERS[spec.traffic.router]


def all_route_kinds() -> tuple[tuple[str, str], ...]:
    """Every (apiVersion, kind) any router owns. Pruning must list all of them, not only the current
    router's: after a switch from one router to another, the old router's objects must go too."""
    return tuple(dict.fromkeys(kind for router in ROUTERS.values() for kind in router.kinds))
