"""From a Decision to the complete set of desired child objects (pure)."""

from __future__ import annotations

from typing import Any

from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.render.children import stable_plan, workload_children
from modeldeploy.render.options import RenderOptions
from modeldeploy.rollout.machine import Decision
from modeldeploy.routing.base import STEADY
from modeldeploy.routing.registry import router_for


def decided_children(
    parent: ObjectRef, spec: ModelDeploymentSpec, options: RenderOptions, decision: Decision
) -> list[dict[str, Any]]:
    """Every child a pass's decision wants: the workload for its tracks, then its routes."""
    workload = workload_children(
        parent, spec, options, decision.tracks, decision.service_track, routed=_routed(spec)
    )
    return workload + router_for(spec).routes(parent, spec, decision.split)


def created(obj: dict[str, Any], spec: ModelDeploymentSpec) -> dict[str, Any]:
    """`obj` as it is first created. A Deployment the HPA sizes is rendered without `replicas`,
    which the server would default to 1 until the HPA's first sync (15 s, and more Events and
    status writes on the way): created, it starts at minReplicas instead."""
    if obj.get("kind") != "Deployment" or "replicas" in obj.get("spec", {}) or not spec.scaling.autoscaled:
        return obj
    return {**obj, "spec": {**obj["spec"], "replicas": spec.scaling.min_replicas}}


def steady_children(
    parent: ObjectRef, spec: ModelDeploymentSpec, options: RenderOptions
) -> list[dict[str, Any]]:
    """What a ModelDeployment looks like at rest, for `modeldeploy render`: no canary."""
    workload = workload_children(parent, spec, options, stable_plan(spec), routed=_routed(spec))
    return workload + router_for(spec).routes(parent, spec, STEADY)


def _routed(spec: ModelDeploymentSpec) -> bool:
    """Whether a router owns route objects (each track then gets a Service as a route backend)."""
    return bool(router_for(spec).kinds)
