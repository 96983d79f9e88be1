"""The client's own rate limit (--kube-qps, --kube-burst) as a table, and paginated lists on the
real API server (issue 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modeldeploy.adapters.kube import KINDS, KubeClient, TokenBucket, configuration
from modeldeploy.sim.controlplane import ControlPlane
from test_real_api_defects import admin_kubeconfig


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
