"""The PodMonitor that gives Triton's metrics the pod and track identity they lack.

Triton labels its metrics by `model` and `version` only. The relabelings below add namespace,
pod, ModelDeployment, Deployment, track and revision from the pod's metadata, which is what the
rollout analysis queries filter on (docs/metrics.md shows the same for a plain scrape config).
"""

from __future__ import annotations

from typing import Any

from modeldeploy.api.resource import ObjectRef
from modeldeploy.render.names import metadata, selector_labels
from modeldeploy.render.options import RenderOptions


def _label(name: str) -> str:
    return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in name)


RELABELINGS: list[dict[str, Any]] = [
    {"sourceLabels": ["__meta_kubernetes_namespace"], "targetLabel": "namespace", "action": "replace"},
    {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod", "action": "replace"},
    {"sourceLabels": [_label("modeldeploy.io/name")], "targetLabel": "modeldeployment", "action": "replace"},
    {"sourceLabels": [_label("modeldeploy.io/track")], "targetLabel": "track", "action": "replace"},
    {"sourceLabels": [_label("modeldeploy.io/revision")], "targetLabel": "revision", "action": "replace"},
    {
        "sourceLabels": [_label("modeldeploy.io/name"), _label("modeldeploy.io/track")],
        "separator": "-",
        "targetLabel": "deployment",
        "action": "replace",
    },
]


def pod_monitor(parent: ObjectRef, options: RenderOptions) -> dict[str, Any] | None:
    if not options.pod_monitor:
        return None
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(parent, parent.name, dict(options.pod_monitor_labels)),
        "spec": {
            "selector": {"matchLabels": selector_labels(parent)},
            "podMetricsEndpoints": [
                {
                    "port": "metrics",
                    "path": "/metrics",
                    "interval": options.scrape_interval,
                    "relabelings": RELABELINGS,
                }
            ],
        },
    }
