"""The informer cache (handlers/cache.py): what it keeps of each object. That a steady object and
a resync over unchanged objects send no request at all is proven on the real API server by
test_operator_integration.py (the idle window)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modeldeploy.adapters.kube import FIELD_MANAGER, KINDS, KubeError
from modeldeploy.handlers.cache import Cache, CrdVersions, encode_child, encode_crd, encode_parent
from modeldeploy.handlers.reconciler import hands_replicas_over
from modeldeploy.render.kinds import OPTIONAL_CRDS, served_optional_kinds

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


class FakeIndex(dict[tuple[str, str], list[bytes]]):
    """kopf's index, read side: a dict of key -> the values of every object yielding it."""


def crd(*versions: tuple[str, bool]) -> dict[str, Any]:
    return {"spec": {"versions": [{"name": name, "served": served} for name, served in versions]}}


class CrdReader:
    """The client's side of CrdVersions: GETs of CRDs, counted; `failing` answers with an error."""

    def __init__(self, crds: dict[str, dict[str, Any]]) -> None:
        self.crds, self.gets, self.failing = crds, 0, False

    def get(self, kind: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.gets += 1
        if self.failing:
            raise KubeError(503, "ServiceUnavailable", "etcd leader changed")
        return self.crds.get(name)


ROUTES = "httproutes.gateway.networking.k8s.io"


def test_served_versions_come_from_the_crd_watch_once_the_cache_is_filled() -> None:
    reader = CrdReader({})
    cache = Cache()
    crds = FakeIndex({("", ROUTES): [encode_crd(crd(("v1beta1", True), ("v1", True), ("v1alpha2", False)))]})
    cache.attach(FakeIndex(), {}, crds)
    cache.mark_ready()
    served = CrdVersions(reader, cache)()  # type: ignore[arg-type]
    assert served[ROUTES] == ("v1beta1", "v1")
    assert set(served) == set(OPTIONAL_CRDS)
    assert served["virtualservices.networking.istio.io"] is None  # not installed
    assert reader.gets == 0, "a filled cache answers without a request"


def test_served_versions_before_the_cache_is_filled_are_read_at_most_once_a_ttl() -> None:
    now = [0.0]
    reader = CrdReader({ROUTES: crd(("v1", True))})
    versions = CrdVersions(reader, Cache(), ttl=60.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert versions()[ROUTES] == ("v1",)
    assert versions()[ROUTES] == ("v1",)
    assert reader.gets == len(OPTIONAL_CRDS), "one GET per optional CRD, then none within the ttl"
    reader.crds = {}  # uninstalled
    reader.failing = True
    now[0] = 61.0
    assert versions()[ROUTES] == ("v1",), "a CRD that cannot be read keeps its last answer"
    reader.failing = False
    now[0] = 122.0
    assert versions()[ROUTES] is None
    assert served_optional_kinds(versions()) == []


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        pytest.param({}, [], id="none-installed"),
        pytest.param({ROUTES: ("v1beta1",)}, [], id="only-an-older-version-served"),
        pytest.param({ROUTES: ("v1beta1", "v1")}, ["HTTPRoute"], id="the-version-rendered-served"),
        pytest.param(
            {"podmonitors.monitoring.coreos.com": ("v1",), "virtualservices.networking.istio.io": ("v1",)},
            ["PodMonitor", "VirtualService"],
            id="two-projects",
        ),
    ],
)
def test_which_optional_kinds_a_pass_lists_applies_and_prunes(
    installed: dict[str, tuple[str, ...]], expected: list[str]
) -> None:
    assert [kind.kind for kind in served_optional_kinds(installed)] == expected
