"""A stand-in for one Triton pod's metrics endpoint (:8002/metrics), with controllable traffic.

It serves the Triton metric families the analysis templates read, labelled `model` and `version`
(and, for failures, `reason`, as Triton 24.x+ does), in the Prometheus text format that
prometheus_client writes (`generate_latest` of a registry of our own). A background
thread advances the counters as if the pod served `rate` requests per second, a `failure_ratio` of
them failing, each successful one taking `latency_ms` end to end (of which `queue_ms` queued).
Like Triton, the duration counters grow with successful requests only.

One instance per simulated pod; tests/prometheus_fixture.py gives each the pod labels a PodMonitor
would. Use it as a context manager, or call start() and close(): both threads and the socket are
released on close (the suite runs with filterwarnings=error).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric, UnknownMetricFamily
from prometheus_client.registry import Collector

FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")
HELP = {
    "nv_inference_request_success": "Number of successful inference requests, all batch sizes",
    "nv_inference_request_failure": "Number of failed inference requests, all batch sizes",
    "nv_inference_count": "Number of inferences performed (does not include cached requests)",
    "nv_inference_exec_count": "Number of model executions performed (does not include cached requests)",
    "nv_inference_request_duration_us": "Cumulative inference request duration in microseconds "
    "(includes cached requests)",
    "nv_inference_queue_duration_us": "Cumulative inference queuing duration in microseconds "
    "(includes cached requests)",
    "nv_inference_compute_infer_duration_us": "Cumulative compute inference duration in microseconds "
    "(does not include cached requests)",
}


@dataclass(frozen=True)
class Traffic:
    rate: float = 50.0  # requests per second
    failure_ratio: float = 0.0
    latency_ms: float = 20.0  # end to end, per successful request
    queue_ms: float = 1.0  # part of latency_ms spent queued
    batch_size: int = 1  # inferences per request (nv_inference_count / nv_inference_exec_count)

    def __post_init__(self) -> None:
        if self.rate < 0 or not 0 <= self.failure_ratio <= 1 or not 0 <= self.queue_ms <= self.latency_ms:
            raise ValueError(f"impossible traffic: {self}")


@dataclass
class Counters:
    success: int = 0
    failure: int = 0
    request_duration_us: int = 0
    queue_duration_us: int = 0
    compute_infer_duration_us: int = 0
    inference_count: int = 0
    exec_count: int = 0


class TritonExporter:
    TICK_SECONDS = 0.05

    def __init__(
        self, model: str = "fraud_scorer", version: str = "1", traffic: Traffic | None = None
    ) -> None:
        self.model = model
        self.version = version
        self._traffic = traffic or Traffic()
        self._lock = threading.Lock()
        self._counters = Counters()
        # Fractional requests carried between ticks, per outcome, so each counter stays monotonic.
        self._carry_success = 0.0
        self._carry_failure = 0.0
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = False  # server_close() joins the request threads
        self._threads: list[threading.Thread] = []
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Families(self))
        self.scrapes = 0

    # ---------------------------------------------------------------------------------- control

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def traffic(self) -> Traffic:
        with self._lock:
            return self._traffic

    def set_traffic(self, **changes: Any) -> None:
        """Change rate, failure_ratio, latency_ms... from now on; counters keep their values."""
        with self._lock:
            self._traffic = replace(self._traffic, **changes)

    def counters(self) -> Counters:
        with self._lock:
            return replace(self._counters)

    def start(self) -> TritonExporter:
        # Counters start at zero and only move once serving, like a freshly started Triton.
        serve = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        tick = threading.Thread(target=self._run)
        self._threads = [serve, tick]
        for t in self._threads:
            t.daemon = True  # never keep a failed test run alive
            t.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._threads:
            self._server.shutdown()
        self._server.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []

    def __enter__(self) -> TritonExporter:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- engine

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.TICK_SECONDS):
            now = time.monotonic()
            self.advance(now - last)
            last = now

    def advance(self, seconds: float) -> None:
        """Account for `seconds` of traffic (the ticker calls this; tests may too, when not started)."""
        with self._lock:
            t = self._traffic
            requests = t.rate * seconds
            self._carry_success += requests * (1 - t.failure_ratio)
            self._carry_failure += requests * t.failure_ratio
            ok = math.floor(self._carry_success)
            failed = math.floor(self._carry_failure)
            self._carry_success -= ok
            self._carry_failure -= failed
            c = self._counters
            c.success += ok
            c.failure += failed
            c.request_duration_us += round(ok * t.latency_ms * 1000)
            c.queue_duration_us += round(ok * t.queue_ms * 1000)
            c.compute_infer_duration_us += round(ok * (t.latency_ms - t.queue_ms) * 1000)
            c.inference_count += ok * t.batch_size
            c.exec_count += ok

    def render(self) -> str:
        """The exposition text of the counters now."""
        return generate_latest(self._registry).decode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.0: one request per connection, so no idle keep-alive socket outlives close().
            protocol_version = "HTTP/1.0"
            timeout = 5

            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.render().encode()
                exporter.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: Prometheus scrapes every second

        return Handler


class _Families(Collector):
    """Triton's metric families, read from the exporter's counters at each scrape.

    Untyped rather than counters: prometheus_client's text format names a counter family
    `<name>_total`, and Triton's are not; PromQL's rate() reads them the same either way."""

    def __init__(self, exporter: TritonExporter) -> None:
        self.exporter = exporter

    def collect(self) -> Iterator[Metric]:
        c = self.exporter.counters()
        model, version = self.exporter.model, self.exporter.version
        plain = {
            "nv_inference_request_success": c.success,
            "nv_inference_count": c.inference_count,
            "nv_inference_exec_count": c.exec_count,
            "nv_inference_request_duration_us": c.request_duration_us,
            "nv_inference_queue_duration_us": c.queue_duration_us,
            "nv_inference_compute_infer_duration_us": c.compute_infer_duration_us,
        }
        for name, value in plain.items():
            family = UnknownMetricFamily(name, HELP[name], labels=("model", "version"))
            family.add_metric((model, version), value)
            yield family
        failures = UnknownMetricFamily(
            "nv_inference_request_failure",
            HELP["nv_inference_request_failure"],
            labels=("model", "reason", "version"),
        )
        for reason in FAILURE_REASONS:
            failures.add_metric((model, reason, version), c.failure if reason == "BACKEND" else 0)
        yield failures
