"""Only what is ours, on the real API server with the operator as a process: objects of a child's
name that the ModelDeployment does not own are never written or deleted, and the object says who
holds them (Degraded, ChildConflict). Every fact is read back by the admin or from the audit log.

Also the adapter's preconditions, on the same server: an apply or a delete meant for our object
never lands on another that took its name since, and a create never lands on an existing one."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modeldeploy.adapters.kube import KINDS, KubeClient, KubeError, configuration
from modeldeploy.api.base import RESERVED_SUFFIX_MESSAGE
from modeldeploy.render.ownership import is_ours
from operator_bed import MD, OperatorBed
from test_real_api_defects import admin_kubeconfig
from testbed.controlplane import ControlPlane
from testbed.kubeapi import ApiError

pytestmark = pytest.mark.integration

NAME = "scorer"
TEAM = "team-tooling"  # the field manager of the objects a team made by hand
SERVICE = ("v1", "Service")
POLICY = ("networking.k8s.io/v1", "NetworkPolicy")
ROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute")
DEPLOYMENT = ("apps/v1", "Deployment")


def manifest(name: str = NAME) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "scorer", "version": "1", "storageUri": "s3://models/scorer/1"},
            "runtime": {"gpus": 1},
            "scaling": {"minReplicas": 1, "maxReplicas": 1},
            "traffic": {"gatewayAPI": {"parentRefs": [{"name": "inference", "namespace": "gateway"}]}},
        },
    }


def team_objects(namespace: str) -> list[dict[str, Any]]:
    """What a team made before the ModelDeployment existed, under the names its children take: a
    Service, a NetworkPolicy and an HTTPRoute with no owner, and a per-track Service labelled as
    ours but owned by nobody (left by `kubectl delete --cascade=orphan` of an earlier object), which
    the operator's cache does hold."""
    meta = {"namespace": namespace, "labels": {"team": "tooling"}}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {**meta, "name": NAME},
            "spec": {"selector": {"app": "team-scorer"}, "ports": [{"name": "http", "port": 9000}]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {**meta, "name": NAME},
            "spec": {"podSelector": {"matchLabels": {"app": "team-scorer"}}, "policyTypes": ["Ingress"]},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {**meta, "name": NAME},
            "spec": {
                "parentRefs": [{"name": "team-gateway"}],
                "rules": [{"backendRefs": [{"name": NAME, "port": 9000}]}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                **meta,
                "name": f"{NAME}-canary",
                "labels": {"app.kubernetes.io/managed-by": "modeldeploy", "modeldeploy.io/name": NAME},
            },
            "spec": {"selector": {"app": "left-over"}, "ports": [{"name": "http", "port": 8000}]},
        },
    ]


def degraded(bed: OperatorBed) -> dict[str, Any] | None:
    for condition in bed.status(NAME).get("conditions") or []:
        if condition["type"] == "Degraded" and condition["status"] == "True":
            return dict(condition)
    return None


def test_objects_the_operator_does_not_own_are_never_written_nor_deleted(
    operator: Callable[..., OperatorBed], control_plane: ControlPlane
) -> None:
    bed = operator(resync_seconds=1)
    api = bed.api
    made = []
    for obj in team_objects(bed.namespace):
        # Through a field manager of their own, as kubectl sends one: the status message names it.
        made.append(api.create(obj, namespace=bed.namespace, manager=TEAM))
    before = {
        (o["kind"], o["metadata"]["name"]): api.get(
            o["apiVersion"], o["kind"], bed.namespace, o["metadata"]["name"]
        )
        for o in made
    }
    since = control_plane.audit_position()
    md = bed.apply(manifest())

    def conflict_reported() -> dict[str, Any] | None:
        condition = degraded(bed)
        message = (condition or {}).get("message", "")
        wanted = ("Service/scorer:", "NetworkPolicy/scorer:", "HTTPRoute/scorer:", "Service/scorer-canary:")
        return condition if all(w in message for w in wanted) else None

    condition = bed.wait(
        conflict_reported, timeout=90, what="Degraded/ChildConflict naming every foreign object"
    )
    assert condition["reason"] == "ChildConflict"
    message = condition["message"]
    # Who holds each: here nobody, so the field managers that made them.
    assert message.count(f"no owner, managed by {TEAM}") == 4, message
    assert "left as it is" in message
    # Everything else reconciled: the Deployment and the primary track's Service are ours.
    for api_version, kind, name in [(*DEPLOYMENT, f"{NAME}-primary"), (*SERVICE, f"{NAME}-primary")]:
        child = bed.wait(lambda a=api_version, k=kind, n=name: bed.child(a, k, n), what=f"{kind} {name}")
        (ref,) = child["metadata"]["ownerReferences"]
        assert ref["uid"] == md["metadata"]["uid"] and ref["controller"] is True

    # Several passes later (resync every second, and the per-object retry), still untouched.
    first = control_plane.audit_position()
    bed.wait(
        lambda: sum(e["verb"] == "create" for e in bed.audit(first) if _about(e, "services", NAME)) >= 3,
        timeout=90,
        what="three more passes that tried the Service",
    )
    for (kind, name), obj in before.items():
        now = api.get(obj["apiVersion"], kind, bed.namespace, name)
        assert now == obj, f"{kind}/{name} changed"
    # The audit log: for these names, the operator only ever asked to create (answered 409) and to list.
    for event in bed.audit(since):
        ref = event.get("objectRef") or {}
        if (ref.get("resource"), ref.get("name")) in {
            ("services", NAME),
            ("networkpolicies", NAME),
            ("httproutes", NAME),
            ("services", f"{NAME}-canary"),
        }:
            assert event["verb"] in ("create", "list"), event
            if event["verb"] == "create":
                assert event["responseStatus"]["code"] == 409, event

    # Recovery: the left-over Service removed by hand, the next pass (a resync: nothing of the
    # foreign object is watched) makes our own, and the condition names only what still conflicts.
    orphan = before.pop(("Service", f"{NAME}-canary"))
    api.delete("v1", "Service", bed.namespace, f"{NAME}-canary")
    removed = time.monotonic()
    bed.wait(
        lambda: is_ours(bed.child(*SERVICE, f"{NAME}-canary") or {}, md["metadata"]["uid"]),
        timeout=90,
        what="our own per-track Service in place of the removed one",
    )
    print(f"\nforeign Service removed -> ours created in {time.monotonic() - removed:.1f} s (resync 1 s)")
    bed.wait(
        lambda: "Service/scorer-canary" not in ((degraded(bed) or {}).get("message") or "x"),
        timeout=60,
        what="the condition to drop the resolved conflict",
    )
    ours = bed.child(*SERVICE, f"{NAME}-canary")
    assert ours is not None and ours["metadata"]["uid"] != orphan["metadata"]["uid"]

    # Deleting the ModelDeployment: the garbage collector (kube-controller-manager) takes what it
    # owned, and nothing else.
    assert api.delete(*MD, bed.namespace, NAME)
    bed.wait(
        lambda: (
            bed.child(*DEPLOYMENT, f"{NAME}-primary") is None
            and bed.child(*SERVICE, f"{NAME}-primary") is None
        ),
        timeout=120,
        what="garbage collection of the owned children",
    )
    for (kind, name), obj in before.items():
        assert api.get(obj["apiVersion"], kind, bed.namespace, name) == obj, f"{kind}/{name} changed or went"


def _about(event: dict[str, Any], resource: str, name: str) -> bool:
    ref = event.get("objectRef") or {}
    return bool(ref.get("resource") == resource and ref.get("name") == name)


@pytest.mark.parametrize(
    "name", [pytest.param("scorer-primary", id="primary"), pytest.param("x-canary", id="canary")]
)
def test_the_api_server_refuses_a_name_that_would_share_children(
    name: str, control_plane: ControlPlane, namespace: str
) -> None:
    """`scorer` and `scorer-primary` would both render the Service scorer-primary: the second is
    refused at `kubectl apply` time, with the reason and a valid example."""
    api = control_plane.admin
    api.apply({**manifest(NAME), "metadata": {"name": NAME, "namespace": namespace}})
    with pytest.raises(ApiError) as caught:
        api.apply({**manifest(name), "metadata": {"name": name, "namespace": namespace}})
    assert caught.value.status == 422
    assert f'metadata.name: Invalid value: "string": {RESERVED_SUFFIX_MESSAGE}' in caught.value.message or (
        RESERVED_SUFFIX_MESSAGE in caught.value.message and "metadata.name" in caught.value.message
    ), caught.value.message
    assert api.get(*MD, namespace, name) is None


# ------------------------------------------------------------------ the adapter's preconditions


@pytest.fixture
def client(control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KubeClient:
    monkeypatch.setenv("KUBECONFIG", str(admin_kubeconfig(control_plane, tmp_path / "kubeconfig")))
    return KubeClient(configuration())


def config_map(namespace: str, name: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"v": value}},
        "data": {"k": value},
    }


def test_create_never_lands_on_an_existing_object(
    client: KubeClient, control_plane: ControlPlane, namespace: str
) -> None:
    api = control_plane.admin
    theirs = api.create(config_map(namespace, "taken", "theirs"))
    assert client.create(config_map(namespace, "taken", "ours")) is None
    assert api.get("v1", "ConfigMap", namespace, "taken") == theirs


def test_a_created_object_is_owned_as_if_applied(
    client: KubeClient, control_plane: ControlPlane, namespace: str
) -> None:
    """A create records an Update entry; turned into our Apply entry, a field our next apply drops
    goes, as it does for an object the apply made."""
    made = client.create(config_map(namespace, "ours", "1"))
    assert made is not None
    entries = [(e["manager"], e["operation"]) for e in made["metadata"]["managedFields"]]
    assert entries == [("modeldeploy", "Apply")], entries
    smaller = config_map(namespace, "ours", "1")
    del smaller["metadata"]["labels"]
    applied = client.apply(smaller, uid=made["metadata"]["uid"])
    assert "labels" not in applied["metadata"] or "v" not in applied["metadata"]["labels"], applied[
        "metadata"
    ]


@pytest.mark.parametrize("write", [pytest.param("apply", id="apply"), pytest.param("delete", id="delete")])
def test_a_write_meant_for_our_object_never_lands_on_its_successor(
    write: str, client: KubeClient, control_plane: ControlPlane, namespace: str
) -> None:
    """Ours was deleted and another took the name after the cache saw ours: the uid precondition
    makes the server refuse, and the other object stays exactly as it was."""
    api = control_plane.admin
    ours = client.create(config_map(namespace, "name", "ours"))
    assert ours is not None
    api.delete("v1", "ConfigMap", namespace, "name")
    api.wait_for(lambda: api.get("v1", "ConfigMap", namespace, "name") is None, what="ours to go")
    theirs = api.create(config_map(namespace, "name", "theirs"))
    kind = KINDS[("v1", "ConfigMap")]
    uid = ours["metadata"]["uid"]

    def send() -> None:
        if write == "apply":
            client.apply(config_map(namespace, "name", "ours-again"), uid=uid)
        else:
            client.delete(kind, namespace, "name", uid=uid)

    with pytest.raises(KubeError) as caught:
        send()
    assert caught.value.status == 409, caught.value
    assert api.get("v1", "ConfigMap", namespace, "name") == theirs


def test_an_apply_for_an_object_deleted_meanwhile_does_not_make_it_again(
    client: KubeClient, control_plane: ControlPlane, namespace: str
) -> None:
    ours = client.create(config_map(namespace, "gone", "ours"))
    assert ours is not None
    control_plane.admin.delete("v1", "ConfigMap", namespace, "gone")
    control_plane.admin.wait_for(
        lambda: control_plane.admin.get("v1", "ConfigMap", namespace, "gone") is None, what="it to go"
    )
    with pytest.raises(KubeError) as caught:
        client.apply(config_map(namespace, "gone", "ours"), uid=ours["metadata"]["uid"])
    assert caught.value.status == 409
    assert control_plane.admin.get("v1", "ConfigMap", namespace, "gone") is None


def test_find_reads_one_object_by_name_with_list(
    client: KubeClient, control_plane: ControlPlane, namespace: str
) -> None:
    kind = KINDS[("v1", "ConfigMap")]
    assert client.find(kind, namespace, "absent") is None
    made = client.create(config_map(namespace, "present", "1"))
    assert made is not None
    found = client.find(kind, namespace, "present")
    assert found is not None and found["metadata"]["uid"] == made["metadata"]["uid"]
    assert (found["apiVersion"], found["kind"]) == ("v1", "ConfigMap")
