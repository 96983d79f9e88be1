"""Operator-wide settings, from CLI flags (and the environment, for the Helm chart)."""

from __future__ import annotations

from dataclasses import dataclass

from modeldeploy.render.options import DEFAULT_PULLER_IMAGE


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    kubeconfig: str | None = None  # else $KUBECONFIG, ~/.kube/config (when not in a pod)
    context: str | None = None  # else the kubeconfig's current-context
    log_format: str = "text"
    health_port: int | None = 8080
    metrics_port: int | None = 9090
    resync_seconds: float = 60.0
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    # Base URLs a spec's prometheusUrl may name, besides prometheus_url ("*": any). docs/security.md
    prometheus_allow: tuple[str, ...] = ()
    puller_image: str = DEFAULT_PULLER_IMAGE
    pod_monitor_labels: tuple[tuple[str, str], ...] = ()
    # Where the operator runs: the Triton pods' NetworkPolicy lets it ask the models (gates).
    operator_namespace: str | None = None
    workers: int = 16
    # The client's own rate limit, as client-go's --kube-api-qps/--kube-api-burst; kopf's watch
    # streams are long-lived and not counted. Sized for a thousand objects converging in a minute.
    kube_qps: float = 100.0
    kube_burst: int = 200
    # Leader election (the chart's two replicas): only the holder of the Lease reconciles.
    leader_elect: bool = False
    leader_election_namespace: str | None = None  # else the pod's own namespace
    leader_election_id: str = "modeldeploy"  # the Lease's name
    lease_duration: float = 10.0
    renew_deadline: float = 7.0
    retry_period: float = 2.0
