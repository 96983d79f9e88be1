"""The autoscaling/v2 HorizontalPodAutoscaler for the primary Deployment."""

from __future__ import annotations

from typing import Any

from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import Scaling, ScalingMetric, UtilizationTarget
from modeldeploy.render.names import metadata
from modeldeploy.render.quantity import canonical

# Served per pod by prometheus-adapter from Triton's counters; docs/autoscaling.md has the rule.
QUEUE_TIME_METRIC = "triton_queue_time_microseconds"
DEFAULT_METRICS = (ScalingMetric(cpu=UtilizationTarget(average_utilization=80)),)


def metric_spec(metric: ScalingMetric) -> dict[str, Any]:
    if metric.cpu is not None:
        target = {"type": "Utilization", "averageUtilization": metric.cpu.average_utilization}
        return {"type": "Resource", "resource": {"name": "cpu", "target": target}}
    if metric.memory is not None:
        value = metric.memory.average_value
        if value is None:
            target = {"type": "Utilization", "averageUtilization": metric.memory.average_utilization}
        else:
            target = {"type": "AverageValue", "averageValue": canonical(value)}
        return {"type": "Resource", "resource": {"name": "memory", "target": target}}
    if metric.queue_time_microseconds is not None:
        return {
            "type": "Pods",
            "pods": {
                "metric": {"name": QUEUE_TIME_METRIC},
                "target": {
                    "type": "AverageValue",
                    "averageValue": canonical(metric.queue_time_microseconds.average_value),
                },
            },
        }
    assert metric.raw is not None  # the model guarantees exactly one is set
    return dict(metric.raw)


def autoscaler(parent: ObjectRef, name: str, target: str, scaling: Scaling) -> dict[str, Any] | None:
    """None when minReplicas == maxReplicas: a fixed count needs no autoscaler."""
    if not scaling.autoscaled:
        return None
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        "metrics": [metric_spec(m) for m in (scaling.metrics or DEFAULT_METRICS)],
    }
    if scaling.behavior:
        spec["behavior"] = dict(scaling.behavior)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(parent, name),
        "spec": spec,
    }
