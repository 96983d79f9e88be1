"""The operator as a process (`modeldeploy run`) on the real API server: what it makes, heals, hands
over and leaves alone. Every fact is read back by the admin, from watch history, or from the API
server's audit log -- never from the operator's own account of itself."""

from __future__ import annotations

import collections
import copy
import json
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.cli import RUN_RECURSION_LIMIT
from operator_bed import CHILD_KINDS, MD, OperatorBed
from testbed.controlplane import ControlPlane, writes
from testbed.kubeapi import STRATEGIC, ApiError, KubeApi
from testbed.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
CRD_FILE = REPO / "crds" / "modeldeploy.io_modeldeployments.yaml"
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=modeldeploy"
RESYNC = 2.0  # seconds: small, so that many idle passes run in a window


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
            "labels": {"argocd.argoproj.io/instance": "ml-models", "team": "fraud"},
            "annotations": {
                "argocd.argoproj.io/tracking-id": "ml-models:modeldeploy.io/ModelDeployment:ml/x"
            },
        },
        "spec": spec,
    }


def example(file: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "examples" / file).read_text())
    return loaded


def kinds(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{c['kind']}/{c['metadata']['name']}": c for c in children}


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions", [])}


def stable(bed: OperatorBed, name: str = "scorer", ready: int = 1) -> dict[str, Any]:
    """Stable, with `ready` pods counted by the real Deployment controller (the kubelet stand-in
    reports them Ready)."""
    result: dict[str, Any] = bed.wait(
        lambda: (s := bed.status(name)).get("phase") == "Stable" and s.get("readyReplicas") == ready and s,
        what=f"{name} Stable with {ready} ready",
    )
    return result


def history(
    api: KubeApi,
    where: tuple[str, str, str],
    since: str,
    name: str,
    until: Callable[[dict[str, Any]], bool],
    timeout: float = 60,
) -> list[dict[str, Any]]:
    """Every stored version of object `name` of `where` (apiVersion, kind, namespace) after `since`,
    oldest first, up to the first one that satisfies `until`. The watch replays the server's
    history, so nothing is sampled."""
    seen: list[dict[str, Any]] = []
    version = since
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in api.watch(*where, version, timeout_seconds=10):
            obj = event["object"]
            if event["type"] == "ERROR":
                raise AssertionError(f"watch of {where} failed: {obj}")
            version = obj["metadata"]["resourceVersion"]
            if event["type"] == "BOOKMARK" or obj["metadata"]["name"] != name:
                continue
            seen.append(obj)
            if until(obj):
                return seen
    raise AssertionError(f"no version of {name} of {where} satisfied the condition in {timeout:.0f}s: {seen}")


def query_of(event: dict[str, Any]) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(event["requestURI"]).query))


def described(events: list[dict[str, Any]]) -> dict[str, int]:
    """How many of each request (verb, path, answer): what an assertion on writes prints."""
    return dict(
        collections.Counter(
            f"{e['verb']} {urllib.parse.urlsplit(e['requestURI']).path} -> "
            f"{e.get('responseStatus', {}).get('code')}"
            for e in events
        )
    )


def reconciles(bed: OperatorBed) -> float:
    """modeldeploy_reconcile_total, summed over results."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in bed.process.metrics().splitlines()
        if line.startswith("modeldeploy_reconcile_total{")
    )


@pytest.fixture(scope="module", autouse=True)
def storage_ready(control_plane: ControlPlane) -> None:
    """Right after a CRD is Established its storage may still be initializing (429, "storage is
    (re)initializing"): wait until every kind this file reads can be listed."""
    api = control_plane.admin

    def listable() -> bool:
        try:
            for api_version, kind in (MD, *CHILD_KINDS):
                api.list(api_version, kind)
        except ApiError as error:
            if error.status == 429:
                return False
            raise
        return True

    api.wait_for(listable, timeout=60, what="the storage of every kind to be ready")


# ------------------------------------------------------------------------------------------ create


def test_create_makes_owned_children_and_a_stable_status(operator: Callable[..., OperatorBed]) -> None:
    bed = operator(resync_seconds=RESYNC)
    api = bed.api
    mds = (*MD, bed.namespace)
    since = api.resource_version(*mds)
    md = bed.apply(manifest())
    uid = md["metadata"]["uid"]

    def every_child() -> list[dict[str, Any]] | None:
        found = bed.children("scorer")
        return found if len(found) >= 6 else None

    children = bed.wait(every_child, what="the children")
    found = kinds(children)
    assert {
        "Deployment/scorer-primary",
        "Service/scorer",
        "HorizontalPodAutoscaler/scorer",
        "PodMonitor/scorer",
        "PrometheusRule/scorer",
    } <= set(found), sorted(found)
    # The model config rides in the pod template's annotation: no ConfigMap child (docs/security.md).
    assert not any(k.startswith("ConfigMap/") for k in found), sorted(found)
    template = found["Deployment/scorer-primary"]["spec"]["template"]["metadata"]
    assert "max_batch_size: 8" in template["annotations"]["modeldeploy.io/config.pbtxt"]
    for key, child in found.items():
        refs = child["metadata"]["ownerReferences"]
        assert len(refs) == 1, (key, refs)
        ref = refs[0]
        assert (ref["apiVersion"], ref["kind"], ref["name"], ref["uid"]) == (*MD, "scorer", uid), key
        assert ref["controller"] is True, key
        # GitOps tracking metadata of the parent must never reach a child, or Argo CD prunes it.
        assert "argocd.argoproj.io/instance" not in child["metadata"].get("labels", {}), key
        assert "argocd.argoproj.io/tracking-id" not in child["metadata"].get("annotations", {}), key

    final = stable(bed)
    # Every status the server stored, in order: the first is written once, from the children as the
    # pass left them -- the Deployment it had just created is counted (its echo wakes no second
    # pass to fix a "0/0").
    versions = history(api, mds, since, "scorer", lambda o: (o.get("status") or {}).get("phase") == "Stable")
    phases = [(v.get("status") or {}).get("phase") for v in versions]
    first = next(v["status"] for v in versions if (v.get("status") or {}).get("phase"))
    assert first["phase"] == "Progressing", phases
    assert first["message"].startswith("0/1 replicas ready"), first["message"]

    assert final["url"] == f"http://scorer.{bed.namespace}.svc:8000"
    assert final["observedGeneration"] == md["metadata"]["generation"]
    by_type = conditions(final)
    assert by_type["Ready"]["status"] == "True"
    assert by_type["Progressing"]["status"] == "False"
    assert by_type["Degraded"]["status"] == "False"
    deployment = bed.child("apps/v1", "Deployment", "scorer-primary")
    assert deployment is not None
    assert deployment["status"]["readyReplicas"] == 1  # the real Deployment controller's count
    # The operator never writes the spec, labels or annotations of what the user owns.
    after = bed.get("scorer")
    assert after is not None
    assert after["spec"] == md["spec"]  # the server's defaults, as the apply stored them
    assert after["metadata"]["labels"] == md["metadata"]["labels"]
    assert after["metadata"]["annotations"] == md["metadata"]["annotations"]
    assert not after["metadata"].get("finalizers")


# ------------------------------------------------------------------------------------------ change


def test_a_spec_change_updates_the_children(operator: Callable[..., OperatorBed]) -> None:
    bed = operator(resync_seconds=RESYNC)
    bed.apply(manifest())
    stable(bed)
    bed.apply(
        manifest(
            scaling={"minReplicas": 2, "maxReplicas": 9, "metrics": [{"cpu": {"averageUtilization": 50}}]}
        )
    )
    hpa = bed.wait(
        lambda: (
            (h := bed.child("autoscaling/v2", "HorizontalPodAutoscaler", "scorer"))
            and h["spec"]["maxReplicas"] == 9
            and h
        ),
        what="the HPA to follow the spec",
    )
    assert hpa["spec"]["minReplicas"] == 2
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 50

    # Back to a fixed size: the HPA is no longer wanted, so it is pruned.
    bed.apply(manifest(scaling={"minReplicas": 2, "maxReplicas": 2}))
    bed.wait(
        lambda: bed.child("autoscaling/v2", "HorizontalPodAutoscaler", "scorer") is None,
        what="the HPA to be pruned",
    )
    deployment = bed.wait(
        lambda: (
            (d := bed.child("apps/v1", "Deployment", "scorer-primary")) and d["spec"]["replicas"] == 2 and d
        ),
        what="the Deployment at 2 replicas",
    )
    assert deployment["spec"]["replicas"] == 2
    stable(bed, ready=2)


# ----------------------------------------------------------------------------------------- healing


def test_a_child_deleted_or_edited_by_hand_is_restored(operator: Callable[..., OperatorBed]) -> None:
    bed = operator(resync_seconds=RESYNC)
    api = bed.api
    bed.apply(manifest())
    stable(bed)
    service = bed.child("v1", "Service", "scorer")
    assert service is not None
    assert api.delete("v1", "Service", bed.namespace, "scorer")
    restored = bed.wait(
        lambda: (
            (s := bed.child("v1", "Service", "scorer"))
            and s["metadata"]["uid"] != service["metadata"]["uid"]
            and s
        ),
        what="the Service to come back",
    )
    assert [p["port"] for p in restored["spec"]["ports"]] == [8000, 8001, 8002]

    deployment = bed.child("apps/v1", "Deployment", "scorer-primary")
    assert deployment is not None
    original = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]["name"]
    # `kubectl edit`: a strategic merge patch by another field manager.
    tampered = api.patch(
        "apps/v1",
        "Deployment",
        bed.namespace,
        "scorer-primary",
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": container, "image": "example.invalid/x:1"}]}}
            }
        },
        manager="kubectl-edit",
        content_type=STRATEGIC,
    )
    # What the server stored (the operator may put it back before a GET could see it).
    assert tampered["spec"]["template"]["spec"]["containers"][0]["image"] == "example.invalid/x:1"
    bed.wait(
        lambda: (
            (d := bed.child("apps/v1", "Deployment", "scorer-primary"))
            and d["spec"]["template"]["spec"]["containers"][0]["image"] == original
        ),
        what="the Deployment edit to be reverted",
    )


# ------------------------------------------------------------------------------------- idle passes


IDLE_EXAMPLES = {
    # name -> (file, pods the example asks for)
    "fraud-scorer": ("fraud-scorer.yaml", 2),  # runtime.gpus: 1, cpu/memory quantities, an HPA
    "sentiment-cpu": ("cpu-onnx-https.yaml", 2),  # gpus: 0, cpu/memory requests and limits
    "recommender": ("gateway-canary.yaml", 3),  # traffic.gatewayAPI: an HTTPRoute and a GRPCRoute
}
IDLE_WINDOW = 60.0  # seconds, at RESYNC-second passes


@dataclass
class IdleWindow:
    events: list[dict[str, Any]]  # the operator's requests during the window
    reconciles: float  # passes counted by the operator in the window
    seconds: float

    def about(self, name: str) -> list[dict[str, Any]]:
        """Requests on `name` or one of its children, Events included (all are named after it)."""
        return [e for e in self.events if (e.get("objectRef") or {}).get("name", "").startswith(name)]


@pytest.fixture(scope="module")
def idle(
    control_plane: ControlPlane,
    kubelet_policies: Any,  # requested for its side effect: the kubelet stand-in runs
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[IdleWindow]:
    """Three examples in one namespace under one operator, settled; then one window of idle passes.

    Module-scoped (so built here, not with the per-test `operator` fixture): one window serves
    the three examples' tests."""
    api = control_plane.admin
    namespace = f"t-idle-{uuid.uuid4().hex[:6]}"
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    api.wait_for(
        lambda: api.get("v1", "ServiceAccount", namespace, "default"), what="the default ServiceAccount"
    )
    user = f"operator-{namespace}"
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
    }
    api.apply(binding)
    folder = tmp_path_factory.mktemp("idle")
    process = OperatorProcess(
        kubeconfig=control_plane.kubeconfig(control_plane.client_certificate(user), folder / "kubeconfig"),
        log=folder / "operator.log",
        args=[f"--namespace={namespace}"],
        resync_seconds=RESYNC,
    )
    process.start()
    bed = OperatorBed(control_plane, namespace, process, user)
    try:
        for file, _ in IDLE_EXAMPLES.values():
            bed.apply(example(file))
        for name, (_, pods) in IDLE_EXAMPLES.items():
            stable(bed, name, ready=pods)
        # Settled: a few passes in a row wrote nothing (the HPA controller's first status writes,
        # the last readyReplicas). Bounded: a pass that writes every time is what the window shows.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            mark = control_plane.audit_position()
            time.sleep(3 * RESYNC)
            if not writes(bed.audit(mark)):
                break
        mark, before, started = control_plane.audit_position(), reconciles(bed), time.monotonic()
        time.sleep(IDLE_WINDOW)
        after, seconds = reconciles(bed), time.monotonic() - started
        yield IdleWindow(bed.audit(mark), after - before, seconds)
    finally:
        process.stop()
        api.delete("v1", "Namespace", None, namespace)
        api.delete("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", None, user)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("fraud-scorer", id="gpu"),
        pytest.param("sentiment-cpu", id="cpu"),
        pytest.param("recommender", id="routed"),
    ],
)
def test_an_idle_pass_writes_nothing(idle: IdleWindow, name: str) -> None:
    assert idle.seconds >= IDLE_WINDOW
    # Not a write, and not a read either: a pass reads the object and its children from the cache.
    assert described(idle.about(name)) == {}


def test_idle_passes_ran_and_sent_no_request(idle: IdleWindow) -> None:
    # Every object was reconciled at each resync (the operator's own counter), and the audit log
    # shows no request at all in the window, but the watch streams kopf keeps open (issue 9).
    assert idle.reconciles >= 3 * 10, idle.reconciles
    requests = [e for e in idle.events if e["verb"] != "watch"]
    assert described(requests) == {}


# ---------------------------------------------------------------------------------------- deletion


def test_deleting_the_model_deployment_removes_its_children(operator: Callable[..., OperatorBed]) -> None:
    bed = operator(resync_seconds=RESYNC)
    bed.apply(manifest())
    stable(bed)
    assert len(bed.children("scorer")) >= 5
    assert bed.api.delete(*MD, bed.namespace, "scorer")  # kubectl delete: background propagation
    assert bed.wait(lambda: bed.get("scorer") is None, what="the ModelDeployment to go") is True
    # The real garbage collector follows the ownerReferences.
    bed.wait(lambda: not bed.children("scorer"), timeout=120, what="garbage collection of the children")
    assert bed.wait(lambda: not bed.api.list("v1", "Pod", bed.namespace), timeout=120, what="the pods to go")


# ------------------------------------------------------------------------------------------ alerts

RULE = ("monitoring.coreos.com/v1", "PrometheusRule", "scorer")


def rules_of(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (group,) = rule["spec"]["groups"]
    return {r["alert"]: r for r in group["rules"]}


def test_the_prometheus_rule_follows_spec_alerts_and_goes_with_its_owner(
    operator: Callable[..., OperatorBed],
) -> None:
    """Rendered against the upstream PrometheusRule CRD the control plane serves; updated, restored,
    pruned when the alerts are turned off, and garbage collected with the ModelDeployment."""
    bed = operator(resync_seconds=RESYNC)
    alerts = {"labels": {"team": "fraud"}, "latencyP95": {"max": "50ms"}}
    md = bed.apply(manifest(alerts=alerts))
    rule = bed.wait(lambda: bed.child(*RULE), what="the PrometheusRule")
    (ref,) = rule["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("ModelDeployment", md["metadata"]["uid"], True)
    by_alert = rules_of(rule)
    assert sorted(by_alert) == sorted(
        [
            "ModelDeploymentErrorRateHigh",
            "ModelDeploymentLatencyP95High",
            "ModelDeploymentLatencyUnmeasured",
            "ModelDeploymentQueueTimeGrowing",
            "ModelDeploymentGPUUtilizationHigh",
        ]
    )
    errors = by_alert["ModelDeploymentErrorRateHigh"]
    assert errors["labels"] == {
        "severity": "critical",
        "team": "fraud",
        "namespace": bed.namespace,
        "modeldeployment": "scorer",
    }
    assert errors["expr"].endswith("> 0.01") and errors["for"] == "5m"
    stable(bed)

    # A threshold edit reaches the rule (and, not being part of the revision, starts no canary).
    bed.apply(manifest(alerts={**alerts, "errorRate": {"max": 0.05, "for": "2m"}}))
    bed.wait(
        lambda: (r := bed.child(*RULE)) and rules_of(r)["ModelDeploymentErrorRateHigh"]["for"] == "2m",
        what="the rule to follow the spec",
    )
    assert rules_of(bed.child(*RULE) or {})["ModelDeploymentErrorRateHigh"]["expr"].endswith("> 0.05")
    assert bed.child("apps/v1", "Deployment", "scorer-canary") is None
    assert bed.status("scorer").get("phase") == "Stable"

    # Deleted by hand: the resync puts it back.
    assert bed.api.delete(*RULE[:2], bed.namespace, "scorer")
    bed.wait(lambda: bed.child(*RULE), what="the PrometheusRule to be restored")

    # Alerts off: pruned, and nothing else is.
    before = {k for k in kinds(bed.children("scorer")) if not k.startswith("PrometheusRule/")}
    bed.apply(manifest(alerts={"enabled": False}))
    bed.wait(lambda: bed.child(*RULE) is None, what="the PrometheusRule to be pruned")
    assert set(kinds(bed.children("scorer"))) == before

    # On again, then the owner goes: the real garbage collector takes the rule with the rest.
    bed.apply(manifest())
    bed.wait(lambda: bed.child(*RULE), what="the PrometheusRule again")
    assert bed.api.delete(*MD, bed.namespace, "scorer")
    bed.wait(lambda: bed.child(*RULE) is None, timeout=120, what="garbage collection of the PrometheusRule")


# --------------------------------------------------------------------------------------- malformed


def loose_crd() -> dict[str, Any]:
    """Our CRD as an early release might have shipped it: spec not validated at all."""
    crd: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        schema["properties"]["spec"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return crd


def accepted(api: KubeApi, body: dict[str, Any]) -> bool:
    try:
        api.create(body, dry_run=True)
    except ApiError as error:
        if error.status == 422:
            return False
        raise
    return True


def test_an_object_nested_as_deep_as_the_api_server_allows_stops_nothing(
    control_plane: ControlPlane, namespace: str, operator: Callable[..., OperatorBed]
) -> None:
    """The API server stores a free-form field (affinity) nested up to 10,000 levels deep. Such an
    object once stopped the operator: kopf's watcher raised RecursionError decoding it, and every
    ModelDeployment stopped reconciling. Now it is read, goes Degraded naming the field, and the
    others reconcile."""
    api = control_plane.admin
    depth = 9_000
    deep = manifest("deep")
    deep["metadata"]["namespace"] = namespace
    deep["spec"]["runtime"]["affinity"] = "DEEP"
    # Written by hand: json.dumps itself stops at the default recursion limit.
    body = json.dumps(deep).replace('"DEEP"', '{"a":' * depth + "1" + "}" * depth)
    api.create_raw(*MD, namespace, body.encode())

    bed = operator(resync_seconds=RESYNC)
    bed.apply(manifest("scorer"))
    stable(bed)
    # This test reads the object back too, with the operator's limit (cli.RUN_RECURSION_LIMIT).
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(RUN_RECURSION_LIMIT)
    try:
        status = bed.wait_phase("deep", "Failed")
    finally:
        sys.setrecursionlimit(limit)
    degraded = conditions(status)["Degraded"]
    assert degraded["reason"] == "InvalidSpec"
    assert "spec.runtime.affinity: nested deeper than 32 levels" in degraded["message"], degraded["message"]
    assert not bed.children("deep")
    assert bed.process.process.poll() is None, bed.process.tail()
    assert "Traceback" not in bed.process.tail(100_000)


def test_a_malformed_stored_object_goes_degraded_with_the_field_named(
    control_plane: ControlPlane, namespace: str, operator: Callable[..., OperatorBed]
) -> None:
    # How a malformed object gets stored for real: it was created while an older, looser CRD was
    # installed, and the upgrade that tightened the schema does not re-check stored objects.
    api = control_plane.admin
    bad = manifest(scaling={"minReplicas": 5, "maxReplicas": 2})
    bad["spec"]["runtime"] = {"gpus": "two"}
    bad["metadata"]["namespace"] = namespace
    probe = copy.deepcopy(bad)
    probe["metadata"]["name"] = "probe"
    strict = yaml.safe_load(CRD_FILE.read_text())
    try:
        api.apply(loose_crd())
        api.wait_for(lambda: accepted(api, probe), what="the looser CRD to be served")
        api.apply(bad)
    finally:
        api.apply(strict)  # the session's CRD, as installed
        api.wait_for(lambda: not accepted(api, probe), what="the strict CRD to be served again")
    with pytest.raises(ApiError) as rejected:
        api.apply({**bad, "metadata": {**bad["metadata"], "name": "new"}})
    assert "spec.runtime.gpus" in rejected.value.message  # today's CRD would refuse it

    bed = operator(resync_seconds=RESYNC)
    status = bed.wait_phase("scorer", "Failed")
    degraded = conditions(status)["Degraded"]
    assert degraded["status"] == "True"
    assert degraded["reason"] == "InvalidSpec"
    assert "spec.runtime.gpus" in degraded["message"], degraded["message"]
    assert "spec.scaling" in degraded["message"], degraded["message"]
    assert not bed.children("scorer")

    def warnings() -> list[dict[str, Any]]:
        return [
            e
            for e in api.list("v1", "Event", namespace)
            if e.get("reason") == "InvalidSpec"
            and e.get("type") == "Warning"
            and e["involvedObject"].get("name") == "scorer"
        ]

    events = bed.wait(warnings, what="an InvalidSpec Warning Event")
    assert "spec.runtime.gpus" in events[0]["message"], events[0]["message"]

    # Fixing the spec recovers without a restart. Not with a server-side apply: the server cannot
    # track fields of an object its schema no longer types ("failed to create manager for existing
    # fields ... .spec.runtime.gpus: expected numeric"), so the user edits it (`kubectl edit`).
    with pytest.raises(ApiError) as refused:
        bed.apply(manifest())
    assert "spec.runtime.gpus" in refused.value.message
    good = manifest()["spec"]
    api.patch(*MD, namespace, "scorer", {"spec": {"runtime": good["runtime"], "scaling": good["scaling"]}})
    stable(bed)


# ---------------------------------------------------------------------------------------- handover


def test_handing_replicas_to_the_hpa_keeps_the_current_size(operator: Callable[..., OperatorBed]) -> None:
    # Server-side apply drops a field its only manager stops applying: without a handover, the
    # Deployment would fall back to 1 replica until the HPA caught up.
    bed = operator(resync_seconds=RESYNC)
    api = bed.api
    bed.apply(manifest(scaling={"minReplicas": 3, "maxReplicas": 3}))
    stable(bed, ready=3)
    deployments = ("apps/v1", "Deployment", bed.namespace)
    since = api.resource_version(*deployments)
    bed.apply(manifest(scaling={"minReplicas": 2, "maxReplicas": 9}))
    bed.wait(lambda: bed.child("autoscaling/v2", "HorizontalPodAutoscaler", "scorer"), what="the HPA")
    # The HPA controller has looked at it (it keeps 3: no metrics, and 3 is within 2..9), and a
    # few more passes ran.
    bed.wait(
        lambda: (
            (bed.child("autoscaling/v2", "HorizontalPodAutoscaler", "scorer") or {}).get("status") or {}
        ).get("currentReplicas"),
        what="the HPA controller's first look",
    )
    passes = reconciles(bed)
    bed.wait(lambda: reconciles(bed) >= passes + 2, what="two more passes")
    now = bed.child("apps/v1", "Deployment", "scorer-primary")
    assert now is not None
    versions = history(
        api, deployments, since, "scorer-primary",
        lambda o: o["metadata"]["resourceVersion"] == now["metadata"]["resourceVersion"],
    )  # fmt: skip
    sizes = [v["spec"].get("replicas") for v in versions]
    assert min(sizes) == 3, sizes  # every stored version, not a sample
    assert now["spec"]["replicas"] == 3
    managers = {
        m["manager"] for m in now["metadata"]["managedFields"] if "f:replicas" in str(m.get("fieldsV1"))
    }
    assert "modeldeploy" not in managers, managers


# --------------------------------------------------------------------------------------- selectors


def test_children_are_watched_through_a_server_side_label_selector(
    control_plane: ControlPlane, operator: Callable[..., OperatorBed]
) -> None:
    # Watching every Deployment, Service and HPA of a cluster to keep a few would not scale.
    since = control_plane.audit_position()
    bed = operator(resync_seconds=RESYNC)
    bed.apply(manifest())
    stable(bed)
    # A watch is audited when it ends: stop the operator to close its streams.
    bed.process.stop()
    resources = ("deployments", "services", "horizontalpodautoscalers")

    def watches() -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {r: [] for r in resources}
        for event in bed.audit(since):
            resource = (event.get("objectRef") or {}).get("resource")
            if resource in found and event["verb"] in ("watch", "list"):
                found[resource].append(event)
        return found

    def every_kind_watched() -> dict[str, list[dict[str, Any]]] | None:
        found = watches()
        return found if all(any(e["verb"] == "watch" for e in es) for es in found.values()) else None

    seen = bed.wait(every_kind_watched, what="the operator's watches in the audit log")
    for resource, events in seen.items():
        for event in events:
            selector = query_of(event).get("labelSelector", "")
            if event["verb"] == "watch":
                assert selector == MANAGED_SELECTOR, (resource, event["requestURI"])
            else:  # kopf's initial lists, or a pass's reads of one object's children, or of one
                # child by name (a create answered 409 before the cache had our child: who holds it)
                by_name = query_of(event).get("fieldSelector", "").startswith("metadata.name=")
                assert by_name or selector in (MANAGED_SELECTOR, "modeldeploy.io/name=scorer"), (
                    resource,
                    event["requestURI"],
                )
