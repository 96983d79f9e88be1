"""Operator-level settings the renderer needs, which are not part of any ModelDeployment."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PULLER_IMAGE = "ghcr.io/modeldeploy/model-puller:0.1.0"


@dataclass(frozen=True)
class RenderOptions:
    puller_image: str = DEFAULT_PULLER_IMAGE
    # The PodMonitor is rendered only where the Prometheus Operator's CRD is installed.
    pod_monitor: bool = True
    # Likewise the PrometheusRule (spec.alerts), where its CRD is installed.
    prometheus_rule: bool = True
    scrape_interval: str = "15s"
    # Labels a Prometheus podMonitorSelector matches on (kube-prometheus-stack: release=<name>).
    pod_monitor_labels: tuple[tuple[str, str], ...] = ()
    # The operator's namespace: with spec.rollout.gates, the NetworkPolicy admits it on Triton's
    # HTTP port, so the gate worker can ask the canary and the primary. None: not known (outside a pod).
    operator_namespace: str | None = None
