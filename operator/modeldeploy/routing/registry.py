"""Which router a spec uses."""

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
