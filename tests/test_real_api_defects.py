"""Defects the real API server showed, each fixed and proven on it (issue 11, "Fix what the real
server shows"): lost status updates, quantities, optional CRD versions, transient API errors, and an
autoscaled Deployment that started below minReplicas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modeldeploy.render.quantity import canonical
from modeldeploy.sim.controlplane import ControlPlane, writes
from operator_bed import OperatorBed
from test_render import CANONICAL_QUANTITIES

pytestmark = pytest.mark.integration

MD_API = "modeldeploy.io/v1alpha1"


def model(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"name": name, "version": "1", "storageUri": f"s3://models/{name}/1"},
        **spec,
    }
    return {"apiVersion": MD_API, "kind": "ModelDeployment", "metadata": {"name": name}, "spec": body}


def passes(bed: OperatorBed) -> float:
    """Reconcile passes the operator has finished, from its own metrics endpoint."""
    total = 0.0
    for line in bed.process.metrics().splitlines():
        if line.startswith("modeldeploy_reconcile_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def idle_writes(bed: OperatorBed, min_passes: int = 6) -> tuple[list[dict[str, Any]], float]:
    """The operator's write requests (audit log) while it makes at least `min_passes` passes."""
    since = bed.control_plane.audit_position()
    first = passes(bed)
    bed.wait(lambda: passes(bed) - first >= min_passes, timeout=120, what=f"{min_passes} idle passes")
    return writes(bed.audit(since)), passes(bed) - first


def describe(events: list[dict[str, Any]]) -> list[str]:
    return [f"{e['verb']} {e.get('requestURI', '')}" for e in events]


# ------------------------------------------------------------------------------ 2. quantities

GPU_SPEC: dict[str, Any] = {
    "runtime": {
        "gpus": 1,
        "resources": {"requests": {"cpu": "2", "memory": "8192Mi"}, "limits": {"memory": "16Gi"}},
    },
    "scaling": {
        "minReplicas": 2,
        "maxReplicas": 4,
        "metrics": [{"queueTimeMicroseconds": {"averageValue": 5000}}],
    },
}


def test_an_idle_gpu_object_gets_no_writes(
    control_plane: ControlPlane, operator: Callable[..., OperatorBed]
) -> None:
    bed = operator(resync_seconds=1)
    bed.apply(model("gpu", **GPU_SPEC))
    bed.wait_phase("gpu", "Stable", timeout=120)
    deployment = bed.child("apps/v1", "Deployment", "gpu-primary")
    assert deployment is not None
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"  # as the server stores it
    found, count = idle_writes(bed)
    assert found == [], f"{len(found)} writes in {count:.0f} idle passes: {describe(found)}"


def test_the_server_stores_quantities_as_we_render_them(control_plane: ControlPlane, namespace: str) -> None:
    """The canonical forms of test_render's table, as the real server writes them (dry run)."""
    cases = [(p.values[0], p.values[1]) for p in CANONICAL_QUANTITIES if not str(p.values[0]).startswith("-")]
    containers = [
        {"name": f"c{i}", "image": "triton", "resources": {"limits": {"memory": written}}}
        for i, (written, _) in enumerate(cases)
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "quantities"},
        "spec": {"containers": containers},
    }
    stored = control_plane.admin.request(
        "POST", f"/api/v1/namespaces/{namespace}/pods", pod, query={"dryRun": "All"}
    )
    got = {c["name"]: c["resources"]["limits"]["memory"] for c in stored["spec"]["containers"]}
    assert got == {f"c{i}": canonical(written) for i, (written, _) in enumerate(cases)}
    assert got == {f"c{i}": want for i, (_, want) in enumerate(cases)}
