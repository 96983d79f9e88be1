"""The real operator (kopf + every modeldeploy handler) against the emulated API, over HTTP."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modeldeploy.handlers.config import OperatorConfig
from modeldeploy.sim.cluster import LocalCluster

pytestmark = pytest.mark.integration

NS = "ml"


def manifest(name: str = "scorer", **spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {
            "name": "scorer",
            "version": "1",
            "storageUri": "s3://models/scorer",
            "storageSecretRef": {"name": "store-creds"},
            "config": {"maxBatchSize": 8, "dynamicBatching": {}},
        },
        "runtime": {"gpus": 1, "resources": {"requests": {"cpu": "2"}}},
        "scaling": {"minReplicas": 1, "maxReplicas": 3},
    }
    spec.update(spec_overrides)
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"argocd.argoproj.io/instance": "ml-models", "team": "fraud"},
            "annotations": {
                "argocd.argoproj.io/tracking-id": "ml-models:modeldeploy.io/ModelDeployment:ml/x"
            },
        },
        "spec": spec,
    }


@pytest.fixture
async def cluster() -> AsyncIterator[LocalCluster]:
    async with LocalCluster(config=OperatorConfig(resync_seconds=0.3)) as running:
        yield running


def kinds(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{c['kind']}/{c['metadata']['name']}": c for c in children}


async def stable(cluster: LocalCluster, name: str = "scorer") -> dict[str, Any]:
    await cluster.wait_for(lambda: cluster.make_ready(NS, name), what="the Deployment to exist")
    result: dict[str, Any] = await cluster.wait_for(
        lambda: cluster.status(NS, name).get("phase") == "Stable" and cluster.status(NS, name),
        what="phase Stable",
    )
    return result


async def test_create_makes_owned_children_and_a_stable_status(cluster: LocalCluster) -> None:
    md = cluster.apply(manifest())
    uid = md["metadata"]["uid"]
    children = await cluster.wait_for(
        lambda: len(cluster.children(NS, "scorer")) >= 5 and cluster.children(NS, "scorer")
    )
    found = kinds(children)
    assert {
        "Deployment/scorer-primary",
        "Service/scorer",
        "HorizontalPodAutoscaler/scorer",
        "PodMonitor/scorer",
    } <= set(found)
    assert any(k.startswith("ConfigMap/scorer-config-") for k in found)
    for child in children:
        refs = child["metadata"]["ownerReferences"]
        assert refs == [
            {
                "apiVersion": "modeldeploy.io/v1alpha1",
                "kind": "ModelDeployment",
                "name": "scorer",
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        # GitOps tracking metadata of the parent must never reach a child, or Argo CD prunes it.
        assert "argocd.argoproj.io/instance" not in child["metadata"].get("labels", {})
        assert "argocd.argoproj.io/tracking-id" not in child["metadata"].get("annotations", {})

    status = await cluster.wait_for(lambda: cluster.status(NS, "scorer").get("phase"), what="a phase")
    assert status == "Progressing"
    # Written once, from the children as the pass left them: the Deployment it just created is
    # counted (the echo of that write wakes no second pass to fix a "0/0").
    assert cluster.status(NS, "scorer")["message"].startswith("0/1 replicas ready")
    final = await stable(cluster)
    assert final["url"] == "http://scorer.ml.svc:8000"
    assert final["observedGeneration"] == md["metadata"]["generation"]
    conditions = {c["type"]: c for c in final["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Progressing"]["status"] == "False"
    assert conditions["Degraded"]["status"] == "False"
    assert final["readyReplicas"] == 1
    # The operator never writes the spec, labels or annotations of what the user owns.
    after = cluster.model_deployment(NS, "scorer")
    assert after is not None
    assert after["spec"] == md["spec"]
    assert after["metadata"]["labels"] == md["metadata"]["labels"]
    assert after["metadata"]["annotations"] == md["metadata"]["annotations"]
    assert not after["metadata"].get("finalizers")


async def test_a_spec_change_updates_the_children(cluster: LocalCluster) -> None:
    cluster.apply(manifest())
    await stable(cluster)
    changed = manifest(
        scaling={"minReplicas": 2, "maxReplicas": 9, "metrics": [{"cpu": {"averageUtilization": 50}}]}
    )
    cluster.apply(changed)

    def hpa() -> dict[str, Any] | None:
        found = cluster.emulator.get_object("autoscaling", "v2", "horizontalpodautoscalers", NS, "scorer")
        return found if found and found["spec"]["maxReplicas"] == 9 else None

    updated = await cluster.wait_for(hpa, what="the HPA to follow the spec")
    assert updated["spec"]["minReplicas"] == 2
    assert updated["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 50

    # Back to a fixed size: the HPA is no longer wanted, so it is pruned.
    cluster.apply(manifest(scaling={"minReplicas": 2, "maxReplicas": 2}))
    await cluster.wait_for(
        lambda: (
            cluster.emulator.get_object("autoscaling", "v2", "horizontalpodautoscalers", NS, "scorer") is None
        ),
        what="the HPA to be pruned",
    )
    deployment = cluster.emulator.get_object("apps", "v1", "deployments", NS, "scorer-primary")
    assert deployment is not None and deployment["spec"]["replicas"] == 2


async def test_a_child_deleted_or_edited_by_hand_is_restored(cluster: LocalCluster) -> None:
    cluster.apply(manifest())
    await stable(cluster)
    cluster.emulator.delete_object("", "v1", "services", NS, "scorer")
    restored = await cluster.wait_for(
        lambda: cluster.emulator.get_object("", "v1", "services", NS, "scorer"),
        what="the Service to come back",
    )
    assert [p["port"] for p in restored["spec"]["ports"]] == [8000, 8001, 8002]

    edited = cluster.emulator.get_object("apps", "v1", "deployments", NS, "scorer-primary")
    assert edited is not None
    original_image = edited["spec"]["template"]["spec"]["containers"][0]["image"]
    tampered = copy.deepcopy(edited)
    tampered["spec"]["template"]["spec"]["containers"][0]["image"] = "example.invalid/tampered:1"
    cluster.emulator.put_object(tampered)

    def healed() -> bool:
        now = cluster.emulator.get_object("apps", "v1", "deployments", NS, "scorer-primary")
        return bool(now) and now["spec"]["template"]["spec"]["containers"][0]["image"] == original_image  # type: ignore[index]

    await cluster.wait_for(healed, what="the Deployment edit to be reverted")


async def test_a_no_op_pass_writes_nothing(cluster: LocalCluster) -> None:
    cluster.apply(manifest())
    await stable(cluster)
    await cluster.wait_for(
        lambda: not cluster.emulator.write_requests(cluster.emulator.log_position() - 50)[-1:] or True
    )
    # Let the dust settle, then watch several resync passes (0.3 s apart) go by.
    import asyncio

    await asyncio.sleep(1.0)
    mark = cluster.emulator.log_position()
    reads_before = len(cluster.emulator.request_log)
    await asyncio.sleep(1.5)
    writes = cluster.emulator.write_requests(since=mark)
    assert writes == [], [f"{w.method} {w.path}" for w in writes]
    # ...and the passes did run: they read the world.
    assert len(cluster.emulator.request_log) > reads_before


async def test_deleting_the_model_deployment_removes_its_children(cluster: LocalCluster) -> None:
    cluster.apply(manifest())
    await stable(cluster)
    assert cluster.children(NS, "scorer")
    cluster.emulator.delete_object("modeldeploy.io", "v1alpha1", "modeldeployments", NS, "scorer")
    await cluster.wait_for(lambda: not cluster.children(NS, "scorer"), what="garbage collection")
    assert cluster.model_deployment(NS, "scorer") is None


async def test_a_malformed_object_goes_degraded_with_the_field_named(cluster: LocalCluster) -> None:
    # Stored before validation existed: the API server never checked it.
    bad = manifest(scaling={"minReplicas": 5, "maxReplicas": 2})
    bad["spec"]["runtime"] = {"gpus": "two"}
    cluster.apply(bad)
    status = await cluster.wait_for(
        lambda: cluster.status(NS, "scorer").get("phase") == "Failed" and cluster.status(NS, "scorer"),
        what="phase Failed",
    )
    degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
    assert degraded["status"] == "True"
    assert degraded["reason"] == "InvalidSpec"
    assert "spec.runtime.gpus" in degraded["message"]
    assert "spec.scaling" in degraded["message"]
    assert not cluster.children(NS, "scorer")

    def warning_event() -> list[dict[str, Any]]:
        return [
            e
            for e in cluster.emulator.list_objects("", "v1", "events", NS)
            if e.get("reason") == "InvalidSpec" and e.get("type") == "Warning"
        ]

    events = await cluster.wait_for(warning_event, what="an InvalidSpec event")
    assert "spec.runtime.gpus" in events[0]["message"]

    # Fixing the spec recovers without a restart.
    cluster.apply(manifest())
    await stable(cluster)


async def test_handing_replicas_to_the_hpa_keeps_the_current_size(cluster: LocalCluster) -> None:
    # Server-side apply drops a field its only manager stops applying: without a handover, the
    # Deployment would fall back to 1 replica until the HPA caught up.
    cluster.apply(manifest(scaling={"minReplicas": 3, "maxReplicas": 3}))
    await stable(cluster)
    cluster.apply(manifest(scaling={"minReplicas": 2, "maxReplicas": 9}))
    await cluster.wait_for(
        lambda: cluster.emulator.get_object("autoscaling", "v2", "horizontalpodautoscalers", NS, "scorer"),
        what="the HPA",
    )
    deployment = cluster.emulator.get_object("apps", "v1", "deployments", NS, "scorer-primary")
    assert deployment is not None
    assert deployment["spec"].get("replicas") == 3
    managers = {m["manager"] for m in deployment["metadata"]["managedFields"] if "f:replicas" in str(m)}
    assert "modeldeploy" not in managers


async def test_children_are_watched_through_a_server_side_label_selector(cluster: LocalCluster) -> None:
    # Watching every Deployment, Service and ConfigMap of a cluster to keep a few would not scale.
    cluster.apply(manifest())
    await stable(cluster)
    watched = {
        r.rbac_resource: r.query.get("labelSelector")
        for r in cluster.emulator.request_log
        if r.verb == "watch"
    }
    for resource in ("deployments", "services", "configmaps", "horizontalpodautoscalers"):
        assert watched[resource] == "app.kubernetes.io/managed-by=modeldeploy", watched
