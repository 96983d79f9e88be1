"""Everything a ModelDeployment owns, rendered in one pure call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.render.autoscaler import autoscaler
from modeldeploy.render.deployment import deployment
from modeldeploy.render.names import Track, deployment_name, service_name, track_service_name
from modeldeploy.render.networkpolicy import network_policy
from modeldeploy.render.options import RenderOptions
from modeldeploy.render.podmonitor import pod_monitor
from modeldeploy.render.prometheusrule import prometheus_rule
from modeldeploy.render.revision import revision
from modeldeploy.render.service import service


@dataclass(frozen=True)
class TrackPlan:
    """What one track runs: the spec it was rendered from (the stable one, for the primary during
    a rollout), its revision, and its replica count (None: left to the HPA)."""

    track: Track
    spec: ModelDeploymentSpec
    revision: str
    replicas: int | None


def stable_plan(spec: ModelDeploymentSpec) -> list[TrackPlan]:
    """The steady state: the primary runs the current spec, sized by the HPA or a fixed count."""
    replicas = None if spec.scaling.autoscaled else spec.scaling.min_replicas
    return [TrackPlan(Track.PRIMARY, spec, revision(spec), replicas)]


def workload_children(
    parent: ObjectRef,
    spec: ModelDeploymentSpec,
    options: RenderOptions,
    tracks: list[TrackPlan],
    service_track: Track | None = Track.PRIMARY,
    routed: bool = False,
) -> list[dict[str, Any]]:
    """Every child but the routes: Deployments and Services for the given tracks, the HPA,
    the NetworkPolicy, the PodMonitor and the PrometheusRule.

    Route objects come from the router (modeldeploy.routing); with a router, each track also gets
    its own Service as a route backend.
    """
    out: list[dict[str, Any]] = []
    for plan in tracks:
        out.append(deployment(parent, plan.spec, plan.revision, plan.track, options, plan.replicas))
    out.append(service(parent, service_name(parent), service_track))
    if routed:
        for track in Track:
            out.append(service(parent, track_service_name(parent, track), track))
    hpa = autoscaler(parent, parent.name, deployment_name(parent, Track.PRIMARY), spec.scaling)
    if hpa is not None:
        out.append(hpa)
    policy = network_policy(parent, spec, options.operator_namespace)
    if policy is not None:
        out.append(policy)
    monitor = pod_monitor(parent, options)
    if monitor is not None:
        out.append(monitor)
    rule = prometheus_rule(parent, spec, options)
    if rule is not None:
        out.append(rule)
    return out
