"""The operator's own Prometheus metrics, served on /metrics (docs/metrics.md)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# No *_created series: one more per counter and histogram, which no alert or dashboard here uses.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "modeldeploy_reconcile_total", "Reconcile passes, by result.", ["result"], registry=REGISTRY
)
RECONCILE_ERRORS = Counter(
    "modeldeploy_reconcile_errors_total", "Reconcile passes that raised an error.", registry=REGISTRY
)
RECONCILE_SECONDS = Histogram(
    "modeldeploy_reconcile_duration_seconds",
    "Time spent in one reconcile pass, by result.",
    ["result"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
WRITES = Counter(
    "modeldeploy_api_writes_total",
    "Write requests sent to the Kubernetes API, by verb.",
    ["verb"],
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "modeldeploy_api_requests_total",
    "Requests the reconciler sent to the Kubernetes API, by verb and HTTP status (0: no answer).",
    ["verb", "code"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "modeldeploy_workqueue_depth",
    "Objects with a pass running or waiting to run again.",
    registry=REGISTRY,
)
QUEUE_SCHEDULED = Gauge(
    "modeldeploy_workqueue_scheduled",
    "Objects waiting for a timed pass (an analysis interval, a pause, a retry after an error).",
    registry=REGISTRY,
)
FAILING = Gauge(
    "modeldeploy_workqueue_failing",
    "Objects whose last pass failed, each retried with its own backoff; an object deleted leaves it.",
    registry=REGISTRY,
)
RETRIES = Counter(
    "modeldeploy_workqueue_retries_total",
    "Passes scheduled again with a per-object backoff after a failed pass.",
    registry=REGISTRY,
)
LEADER = Gauge(
    "modeldeploy_leader",
    "1 while this replica holds the leader Lease and reconciles; 0 on a standby.",
    registry=REGISTRY,
)

GATE_RUNS = Counter(
    "modeldeploy_gate_runs_total",
    "Model-quality gate runs finished, by verdict (Pass, Fail, Inconclusive).",
    ["verdict"],
    registry=REGISTRY,
)
GATE_SECONDS = Histogram(
    "modeldeploy_gate_run_duration_seconds",
    "Time one model-quality gate run took, contract and golden set, both models.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
GATE_REQUESTS = Counter(
    "modeldeploy_gate_inference_requests_total",
    "Inference requests the gate runs sent to canaries and primaries.",
    registry=REGISTRY,
)
GATES_RUNNING = Gauge(
    "modeldeploy_gates_running",
    "Model-quality gate runs in progress (queued for a slot included).",
    registry=REGISTRY,
)


class PhaseCollector(Collector):
    """ModelDeployments by status.phase, counted at scrape time from the cache: the phases as the
    API holds them, with nothing to keep in step."""

    def __init__(self, phases: Callable[[], Iterable[str]]) -> None:
        self._phases = phases

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "modeldeploy_model_deployments", "ModelDeployments by status.phase.", labels=["phase"]
        )
        for phase, count in sorted(Tally(self._phases()).items()):
            family.add_metric([phase], count)
        yield family


class ThrottledCollector(Collector):
    """Seconds the Kubernetes client waited because of throttling: its own rate limit (--kube-qps,
    --kube-burst) and the API server's 429 answers. Read at scrape time from the client's running
    totals, so the client (adapters/) needs no metrics library."""

    def __init__(self) -> None:
        self.source: Callable[[], float] = lambda: 0.0

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "modeldeploy_api_throttled_seconds",
            "Seconds Kubernetes API requests waited because of throttling: the client's own rate limit "
            "(--kube-qps, --kube-burst) and the API server's 429 answers (Retry-After).",
            value=self.source(),
        )


THROTTLED = ThrottledCollector()
REGISTRY.register(THROTTLED)


def count_throttling(source: Callable[[], float]) -> None:
    """Where the throttled seconds come from (the operator's one client); replaces any before."""
    THROTTLED.source = source


def count_phases(phases: Callable[[], Iterable[str]]) -> None:
    REGISTRY.register(PhaseCollector(phases))


def serve(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104  # scraped from outside the pod
    start_http_server(port, addr=addr, registry=REGISTRY)
