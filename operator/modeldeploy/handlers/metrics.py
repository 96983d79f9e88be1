"""The operator's own Prometheus metrics, served on /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "modeldeploy_reconcile_total", "Reconcile passes, by result.", ["result"], registry=REGISTRY
)
RECONCILE_ERRORS = Counter(
    "modeldeploy_reconcile_errors_total", "Reconcile passes that raised an error.", registry=REGISTRY
)
RECONCILE_SECONDS = Histogram(
    "modeldeploy_reconcile_duration_seconds",
    "Time spent in one reconcile pass.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
WRITES = Counter(
    "modeldeploy_api_writes_total",
    "Write requests sent to the Kubernetes API, by verb.",
    ["verb"],
    registry=REGISTRY,
)


def serve(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104  # scraped from outside the pod
    start_http_server(port, addr=addr, registry=REGISTRY)
