"""The informer cache (handlers/cache.py): what it keeps of each object. That a steady object and
a resync over unchanged objects send no request at all is proven on the real API server by
test_operator_integration.py (the idle window)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modeldeploy.adapters.kube import FIELD_MANAGER, KINDS
from modeldeploy.handlers.cache import encode_child, encode_parent
from modeldeploy.handlers.reconciler import hands_replicas_over

DEPLOYMENT = KINDS[("apps/v1", "Deployment")]
SERVICE = KINDS[("v1", "Service")]


def managed(manager: str, spec_fields: dict[str, Any]) -> dict[str, Any]:
    return {"manager": manager, "operation": "Apply", "fieldsV1": {"f:spec": spec_fields}}


def body(kind: str, *, entries: list[dict[str, Any]], status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {
            "name": "m-primary",
            "namespace": "ml",
            "resourceVersion": "7",
            "managedFields": entries,
        },
        "spec": {"replicas": 2} if kind == "Deployment" else {"ports": [{"port": 8000}]},
    }
    if status is not None:
        obj["status"] = status
    return obj


@pytest.mark.parametrize(
    ("kind", "obj", "kept_status", "ours_replicas"),
    [
        pytest.param(
            DEPLOYMENT,
            body(
                "Deployment",
                entries=[managed(FIELD_MANAGER, {"f:replicas": {}}), managed("kube-controller-manager", {})],
                status={"readyReplicas": 2},
            ),
            {"readyReplicas": 2},
            True,
            id="deployment-keeps-status-and-our-replicas-ownership",
        ),
        pytest.param(
            DEPLOYMENT,
            body("Deployment", entries=[managed("hpa-handover", {"f:replicas": {}})], status={}),
            {},
            False,
            id="deployment-replicas-owned-by-another-manager",
        ),
        pytest.param(
            SERVICE,
            body("Service", entries=[managed(FIELD_MANAGER, {"f:ports": {}})], status={"loadBalancer": {}}),
            None,
            False,
            id="service-drops-status",
        ),
    ],
)
def test_what_the_cache_keeps(kind: Any, obj: dict[str, Any], kept_status: Any, ours_replicas: bool) -> None:
    cached = json.loads(encode_child(obj, kind))
    assert (cached["apiVersion"], cached["kind"]) == (kind.api_version, kind.kind)
    assert cached.get("status") == kept_status
    assert cached["spec"] == obj["spec"]  # the containment check compares the whole spec
    assert cached["metadata"]["resourceVersion"] == "7"
    assert all(e["manager"] == FIELD_MANAGER for e in cached["metadata"]["managedFields"])
    desired = {"kind": kind.kind, "spec": {}}  # replicas left to the HPA
    assert hands_replicas_over(desired, cached) is ours_replicas
    assert hands_replicas_over(desired, cached) is hands_replicas_over(desired, obj)


def test_the_parent_keeps_its_status_but_not_its_managed_fields() -> None:
    parent = {
        "metadata": {"name": "m", "managedFields": [{"manager": "kubectl"}]},
        "status": {"phase": "Stable"},
    }
    cached = json.loads(encode_parent(parent))
    assert "managedFields" not in cached["metadata"]
    assert cached["status"] == {"phase": "Stable"}
    assert cached["kind"] == "ModelDeployment"
