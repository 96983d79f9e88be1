"""The client's own rate limit (--kube-qps, --kube-burst) as a table, and paginated lists on the
real API server (issue 9)."""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import Configuration
from prometheus_client import generate_latest

from loopback_http import serving
from modeldeploy.adapters.kube import KINDS, KubeClient, TokenBucket, configuration
from modeldeploy.handlers import metrics
from test_real_api_defects import admin_kubeconfig
from testbed.controlplane import ControlPlane


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("qps", "burst", "requests", "elapsed", "waits"),
    [
        pytest.param(10, 3, 3, 0.0, [0, 0, 0], id="a-burst-goes-at-once"),
        pytest.param(10, 3, 5, 0.0, [0, 0, 0, 0.1, 0.2], id="beyond-the-burst-in-order"),
        pytest.param(10, 1, 3, 0.05, [0, 0.05, 0.15], id="half-a-token-refilled-meanwhile"),
        pytest.param(0, 1, 4, 0.0, [0, 0, 0, 0], id="qps-0-no-limit"),
    ],
)
def test_token_bucket(qps: float, burst: int, requests: int, elapsed: float, waits: list[float]) -> None:
    clock = Clock()
    bucket = TokenBucket(qps, burst, clock=clock)
    got = []
    for i in range(requests):
        if i == 1:
            clock.now += elapsed
        got.append(round(bucket.reserve(), 6))
    assert got == pytest.approx(waits)


def test_the_bucket_refills_to_its_burst_only() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 2, clock=clock)
    clock.now = 100.0  # a long idle time refills two tokens, not a thousand
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0, 0, 0.1])


def test_a_list_is_read_in_pages(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = control_plane.admin
    for i in range(7):
        api.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"page-{i}", "namespace": namespace},
            }
        )
    monkeypatch.setenv("KUBECONFIG", str(admin_kubeconfig(control_plane, tmp_path / "kubeconfig")))
    client = KubeClient(configuration())
    since = control_plane.audit_position()
    found = client.list(KINDS[("v1", "ConfigMap")], namespace, page=3)
    names = sorted(o["metadata"]["name"] for o in found if o["metadata"]["name"].startswith("page-"))
    assert names == [f"page-{i}" for i in range(7)]
    lists = [e for e in control_plane.audit_events(since) if e["verb"] == "list"]
    assert len(lists) >= 3 and all("limit=3" in e["requestURI"] for e in lists)
    assert any("continue=" in e["requestURI"] for e in lists)


# -------------------------------------------------- modeldeploy_api_throttled_seconds_total


@contextmanager
def answering(statuses: list[tuple[int, str | None]]) -> Iterator[str]:
    """A loopback HTTP server answering each request with the next (status, Retry-After), then 200."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, after = statuses.pop(0) if statuses else (200, None)
            payload = b'{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"x"}}'
            if status != 200:
                payload = b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":%d}' % status
            self.send_response(status)
            if after is not None:
                self.send_header("Retry-After", after)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: Any) -> None:
            pass

    with serving(Handler) as url:
        yield url


@pytest.mark.parametrize(
    ("answers", "qps", "burst", "at_least", "at_most"),
    [
        pytest.param([(429, "1")], 0, 1, 1.0, 1.5, id="server-429-retry-after-counts"),
        pytest.param([(503, None), (500, None)], 0, 1, 0.0, 0.0, id="5xx-retries-are-not-throttling"),
        pytest.param([], 20, 1, 0.04, 0.1, id="own-rate-limit-counts"),
        pytest.param([], 0, 1, 0.0, 0.0, id="nothing-throttled-nothing-counted"),
    ],
)
def test_throttled_seconds_are_counted_and_exposed(
    answers: list[tuple[int, str | None]], qps: float, burst: int, at_least: float, at_most: float
) -> None:
    limiter = TokenBucket(qps, burst)
    with answering(list(answers)) as url:
        client = KubeClient(Configuration(host=url), limiter=limiter)  # a fake server, no credentials
        try:
            for _ in range(2):
                assert client.get(KINDS[("v1", "ConfigMap")], "ns", "x") is not None
        finally:
            client.close()
    waited = client.throttled_seconds + limiter.throttled_seconds
    assert at_least <= waited <= at_most
    metrics.count_throttling(lambda: client.throttled_seconds + limiter.throttled_seconds)
    exposed = generate_latest(metrics.REGISTRY).decode()
    (line,) = [x for x in exposed.splitlines() if x.startswith("modeldeploy_api_throttled_seconds_total ")]
    assert float(line.split()[1]) == pytest.approx(waited)
