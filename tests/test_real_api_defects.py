"""Defects the real API server showed, each fixed and proven on it (issue 11, "Fix what the real
server shows"): lost status updates, quantities, optional CRD versions, transient API errors, and an
autoscaled Deployment that started below minReplicas."""

from __future__ import annotations

import copy
import http.server
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml

from conftest import REPO_ROOT, THIRD_PARTY_CRDS, require_assets
from modeldeploy.adapters.kube import FIELD_MANAGER, Backoff, KubeClient, configuration, retry_after
from modeldeploy.api.resource import parse_spec
from modeldeploy.handlers.reconciler import HANDOVER_MANAGER, Reconciler
from modeldeploy.render.kinds import unserved_message
from modeldeploy.render.options import RenderOptions
from modeldeploy.render.quantity import canonical
from modeldeploy.rollout.events import Event
from modeldeploy.rollout.plan import created
from operator_bed import OperatorBed
from test_render import CANONICAL_QUANTITIES
from testbed.controlplane import ADMIN_USER, ControlPlane, Credentials, writes
from testbed.kubeapi import KubeApi
from testbed.kubelet import Kubelet, PodReport, PodState, always_ready
from testbed.operator_process import OperatorProcess

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
    cases: list[tuple[Any, str]] = [
        (p.values[0], str(p.values[1])) for p in CANONICAL_QUANTITIES if not str(p.values[0]).startswith("-")
    ]
    containers = [
        {"name": f"c{i}", "image": "triton", "resources": {"limits": {"memory": written}}}
        for i, (written, _) in enumerate(cases)
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "quantities", "namespace": namespace},
        "spec": {"containers": containers},
    }
    stored = control_plane.admin.create(pod, strict=False, dry_run=True)
    got = {c["name"]: c["resources"]["limits"]["memory"] for c in stored["spec"]["containers"]}
    assert got == {f"c{i}": canonical(written) for i, (written, _) in enumerate(cases)}
    assert got == {f"c{i}": want for i, (_, want) in enumerate(cases)}


# ------------------------------------------------------------ an in-process pass on the real server


def admin_kubeconfig(cp: ControlPlane, path: Path, server: str | None = None) -> Path:
    written = cp.kubeconfig(Credentials(user=ADMIN_USER, token=cp.admin_token), path)
    if server is not None:
        config = yaml.safe_load(written.read_text())
        config["clusters"][0]["cluster"]["server"] = server
        written.write_text(yaml.safe_dump(config))
    return written


def reconciler_for(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch, client: type[KubeClient] = KubeClient, **options: Any
) -> Reconciler:
    """The operator's own Reconciler and KubeClient, logged in as users do: from $KUBECONFIG."""
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    kube = client(configuration(), **options)

    def post_event(body: Any, event: Event) -> None:
        kube.post_event(body, event.type, event.reason, event.message)

    return Reconciler(kube, RenderOptions(), post_event, "http://127.0.0.1:9")


def apply_md(api: KubeApi, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(manifest)
    body["metadata"]["namespace"] = namespace
    return api.apply(body)


def md(api: KubeApi, namespace: str, name: str) -> dict[str, Any]:
    obj = api.get(MD_API, "ModelDeployment", namespace, name)
    assert obj is not None, f"{name} is gone"
    return obj


def reconcile_until(
    reconciler: Reconciler, api: KubeApi, namespace: str, name: str, done: Callable[[dict[str, Any]], Any]
) -> dict[str, Any]:
    """Passes on freshly read bodies, as the operator's resync makes them, until `done(status)`."""

    def step() -> Any:
        reconciler.reconcile_result(md(api, namespace, name))
        status = md(api, namespace, name).get("status") or {}
        return status if done(status) else None

    result: dict[str, Any] = api.wait_for(step, timeout=90, what=f"{name}'s status", interval=0.3)
    return result


def history(api: KubeApi, namespace: str, since: str) -> list[dict[str, Any]]:
    """Every version of the test namespace's ModelDeployments written after resourceVersion `since`."""
    return [
        event["object"]
        for event in api.watch(MD_API, "ModelDeployment", namespace, since, timeout_seconds=2)
        if event.get("type") in ("ADDED", "MODIFIED")
    ]


def conflicts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("verb") == "patch" and e.get("responseStatus", {}).get("code") == 409]


# --------------------------------------------------------------------- 1. lost status updates

CANARY = {"strategy": "Canary", "steps": [{"weight": 50, "pause": "10m"}], "interval": "10m"}
CANARY_PODS = "modeldeploy.io/track"


def canary_pending(pod: Any) -> PodReport:
    canary = (pod.get("metadata", {}).get("labels") or {}).get(CANARY_PODS) == "canary"
    return PodReport(PodState.PENDING if canary else PodState.READY)


def abort(api: KubeApi, namespace: str, name: str, token: str = "t1") -> None:
    body = {"metadata": {"annotations": {"modeldeploy.io/abort": token}}}
    api.patch(MD_API, "ModelDeployment", namespace, name, body)


def rollout_waiting_for_its_canary(
    reconciler: Reconciler, api: KubeApi, namespace: str, policies: Any, name: str
) -> dict[str, Any]:
    """v1 Stable, then v2 Progressing with its canary Deployment created but its pods not ready."""
    manifest = model(name, rollout=CANARY)
    apply_md(api, namespace, manifest)
    reconcile_until(reconciler, api, namespace, name, lambda s: s.get("phase") == "Stable")
    policies.set(namespace, canary_pending)
    manifest["spec"]["model"]["version"] = "2"
    apply_md(api, namespace, manifest)
    return reconcile_until(
        reconciler,
        api,
        namespace,
        name,
        lambda s: (
            s.get("phase") == "Progressing" and api.get("apps/v1", "Deployment", namespace, f"{name}-canary")
        ),
    )


def canary_ready(api: KubeApi, namespace: str, name: str) -> None:
    """Once the kubelet stand-in's policy says ready: it looks at a Pod again when the Pod changes."""
    for pod in api.list("v1", "Pod", namespace, f"{CANARY_PODS}=canary"):
        touch = {"metadata": {"annotations": {"test/touched": "1"}}}
        api.patch("v1", "Pod", namespace, pod["metadata"]["name"], touch)

    def ready() -> bool:
        obj = api.get("apps/v1", "Deployment", namespace, f"{name}-canary") or {}
        want = obj.get("spec", {}).get("replicas") or 0
        return want > 0 and (obj.get("status") or {}).get("readyReplicas") == want

    api.wait_for(ready, timeout=60, what="the canary's pods to be ready")


def child_writes(events: list[dict[str, Any]], namespace: str) -> list[str]:
    """The operator's own child writes in `namespace` (its field managers), whoever the user:
    other tests' namespaces are being deleted meanwhile, by the controller manager."""
    children = {"deployments", "services", "horizontalpodautoscalers"}
    return [
        f"{e['verb']} {e['requestURI']}"
        for e in writes(events)
        if e.get("objectRef", {}).get("namespace") == namespace
        and (
            "fieldManager=modeldeploy" in e.get("requestURI", "")
            or (e["verb"] == "delete" and e.get("objectRef", {}).get("resource") in children)
        )
    ]


def test_a_stale_body_replayed_after_a_newer_status_changes_nothing(
    control_plane: ControlPlane,
    namespace: str,
    kubelet_policies: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A body read before an abort, replayed after the abort's RolledBack was written (as a resync
    listing or a queued event delivers it): the pass finds its body stale before its first write,
    decides again from the object as it is, and RolledBack stands, the canary at zero."""
    api = control_plane.admin
    reconciler = reconciler_for(admin_kubeconfig(control_plane, tmp_path / "kubeconfig"), monkeypatch)
    rollout_waiting_for_its_canary(reconciler, api, namespace, kubelet_policies, "race")
    kubelet_policies.set(namespace, always_ready)
    canary_ready(api, namespace, "race")
    stale = md(api, namespace, "race")  # Progressing, and its canary ready: the weight is due

    abort(api, namespace, "race")
    rolled_back = reconcile_until(
        reconciler, api, namespace, "race", lambda s: s.get("phase") == "RolledBack"
    )
    assert rolled_back["handled"]["abort"] == "t1"
    since_rv = md(api, namespace, "race")["metadata"]["resourceVersion"]
    since_audit = control_plane.audit_position()

    reconciler.reconcile_result(stale)

    assert history(api, namespace, since_rv) == []  # no version written since: RolledBack stands
    assert child_writes(control_plane.audit_events(since_audit), namespace) == []  # the canary left at zero
    canary = api.get("apps/v1", "Deployment", namespace, "race-canary")
    assert canary is not None and canary["spec"]["replicas"] == 0


class Interleaving(KubeClient):
    """The operator's client, with something made to happen just before its next status write."""

    before_status: Callable[[], None] | None = None

    def patch_status(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        hook, self.before_status = self.before_status, None
        if hook is not None:
            hook()
        return super().patch_status(*args, **kwargs)


def test_a_status_decided_from_a_body_that_changed_meanwhile_is_refused(
    control_plane: ControlPlane,
    namespace: str,
    kubelet_policies: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pass A decides from a current body (the canary is ready: set its weight); before its
    status write lands, a person aborts and pass B (another operator replica) writes RolledBack.
    A's write, decided without the abort, is refused (409), A decides again from the object as it
    is, and RolledBack stands. Written anyway, it would have put Progressing back, with the abort
    recorded as handled: the rollout would have gone on."""
    api = control_plane.admin
    kubeconfig = admin_kubeconfig(control_plane, tmp_path / "kubeconfig")
    second = reconciler_for(kubeconfig, monkeypatch)
    first = reconciler_for(kubeconfig, monkeypatch, client=Interleaving)
    rollout_waiting_for_its_canary(second, api, namespace, kubelet_policies, "duel")
    kubelet_policies.set(namespace, always_ready)
    canary_ready(api, namespace, "duel")
    body = md(api, namespace, "duel")
    since_rv = body["metadata"]["resourceVersion"]
    since_audit = control_plane.audit_position()

    def meanwhile() -> None:
        abort(api, namespace, "duel")
        second.reconcile_result(md(api, namespace, "duel"))
        assert md(api, namespace, "duel")["status"]["phase"] == "RolledBack"

    kube = first._kube  # the test's own client subclass, reached as the reconciler holds it
    assert isinstance(kube, Interleaving)
    kube.before_status = meanwhile
    first.reconcile_result(body)

    assert kube.before_status is None, "pass A never came to write its status"
    refused = conflicts(control_plane.audit_events(since_audit, user=ADMIN_USER))
    assert [e["objectRef"].get("subresource") for e in refused] == ["status"]
    statuses = [obj.get("status") or {} for obj in history(api, namespace, since_rv)]
    phases = [s.get("phase") for s in statuses]
    assert "RolledBack" in phases, phases
    assert set(phases[phases.index("RolledBack") :]) == {"RolledBack"}, phases
    assert not any(s.get("canaryWeight") for s in statuses), statuses  # A's weight never landed
    final = md(api, namespace, "duel")["status"]
    assert (final["phase"], final["handled"]["abort"]) == ("RolledBack", "t1")


# --------------------------------------------------------------- 5. autoscaled, created at min


def test_an_autoscaled_deployment_is_created_at_min_replicas(
    control_plane: ControlPlane, operator: Callable[..., OperatorBed]
) -> None:
    bed = operator(resync_seconds=1)
    api, ns = bed.api, bed.namespace
    since_rv = api.resource_version("apps/v1", "Deployment", ns)
    bed.apply(
        model(
            "scaled",
            runtime={"gpus": 0, "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
            scaling={"minReplicas": 3, "maxReplicas": 6},
        )
    )
    bed.wait_phase("scaled", "Stable", timeout=120)

    def handed_over() -> bool:
        obj = bed.child("apps/v1", "Deployment", "scaled-primary") or {}
        owners = {
            entry["manager"]
            for entry in obj.get("metadata", {}).get("managedFields") or []
            if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
        }
        return HANDOVER_MANAGER in owners and FIELD_MANAGER not in owners

    bed.wait(handed_over, what="replicas handed over to the HPA")
    seen = [
        event["object"]["spec"].get("replicas")
        for event in api.watch("apps/v1", "Deployment", ns, since_rv, timeout_seconds=2)
        if event.get("type") in ("ADDED", "MODIFIED")
        and event["object"]["metadata"]["name"] == "scaled-primary"
    ]
    assert seen and seen[0] == 3, seen  # the very first stored version
    assert min(seen) == 3, seen
    found, count = idle_writes(bed)
    assert found == [], f"{len(found)} writes in {count:.0f} idle passes: {describe(found)}"


@pytest.mark.parametrize(
    ("kind", "scaling", "replicas"),
    [
        pytest.param("Deployment", {"minReplicas": 3, "maxReplicas": 6}, 3, id="autoscaled-gets-min"),
        pytest.param("Deployment", {"minReplicas": 2, "maxReplicas": 2}, None, id="fixed-keeps-its-own"),
        pytest.param("Service", {"minReplicas": 3, "maxReplicas": 6}, None, id="not-a-deployment"),
    ],
)
def test_created_at_min_replicas(kind: str, scaling: dict[str, Any], replicas: int | None) -> None:
    spec = parse_spec(
        {
            "model": {"name": "m", "version": "1", "storageUri": "s3://models/m/1"},
            "runtime": {"resources": {"requests": {"cpu": "1"}}},
            "scaling": scaling,
        }
    )
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "m"}, "spec": {}}
    assert created(obj, spec)["spec"].get("replicas") == replicas
    assert obj["spec"] == {}  # the rendered object itself is left as it is


# ------------------------------------------------------------------ 4. transient API errors


@pytest.mark.parametrize(
    ("retry", "hint", "jitter", "wait"),
    [
        pytest.param(1, None, 0.0, 0.1, id="first-retry-low-jitter"),
        pytest.param(1, None, 0.5, 0.15, id="first-retry-mid-jitter"),
        pytest.param(2, None, 0.0, 0.2, id="doubles"),
        pytest.param(3, None, 0.5, 0.6, id="third"),
        pytest.param(9, None, 0.0, 2.5, id="capped"),
        pytest.param(9, None, 1.0, 5.0, id="capped-full-jitter"),
        pytest.param(1, 2.0, 0.0, 2.0, id="retry-after-wins"),
        pytest.param(5, 0.5, 0.0, 1.6, id="backoff-wins-over-a-short-retry-after"),
        pytest.param(1, 120.0, 0.0, 30.0, id="retry-after-capped"),
    ],
)
def test_backoff_schedule(retry: int, hint: float | None, jitter: float, wait: float) -> None:
    assert Backoff().delay(retry, hint, jitter) == pytest.approx(wait)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param("1", 1.0, id="seconds"),
        pytest.param(" 3 ", 3.0, id="padded"),
        pytest.param("Wed, 21 Oct 2015 07:28:05 GMT", 5.0, id="http-date"),
        pytest.param("Wed, 21 Oct 2015 07:27:00 GMT", 0.0, id="http-date-past"),
        pytest.param("soon", None, id="unreadable"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert retry_after(header, now=now) == seconds


@dataclass
class Fault:
    status: int = 0  # answer this instead of forwarding
    retry_after: str | None = None
    stall: float = 0.0  # or: say nothing this long, then forward (the client has timed out)


@dataclass
class FaultyProxy:
    """A loopback TLS proxy in front of the real API server that spoils the first PATCHes.

    It serves the API server's own certificate (valid for 127.0.0.1), so the kubeconfig's CA still
    fits, and forwards the bearer token as it comes."""

    cp: ControlPlane
    faults: list[Fault]
    patches: list[tuple[float, str]] = field(default_factory=list)  # (arrival, what was answered)
    url: str = ""

    def __post_init__(self) -> None:
        self._upstream = urllib3.PoolManager(ca_certs=str(self.cp.ca_file), retries=False)
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = None
                if self.command == "PATCH":
                    with proxy._lock:
                        fault = proxy.faults.pop(0) if proxy.faults else None
                        answer = str(fault.status or f"stall {fault.stall}s") if fault else "forwarded"
                        proxy.patches.append((time.monotonic(), answer))
                if fault is not None and fault.status:
                    payload = (
                        b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"TooManyRequests"}'
                    )
                    self.send_response(fault.status)
                    if fault.retry_after:
                        self.send_header("Retry-After", fault.retry_after)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if fault is not None:
                    time.sleep(fault.stall)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                response = proxy._upstream.request(
                    self.command, proxy.cp.url + self.path, body=body, headers=headers, preload_content=True
                )
                try:
                    self.send_response(response.status)
                    for name in ("Content-Type", "Retry-After"):
                        if name in response.headers:
                            self.send_header(name, response.headers[name])
                    self.send_header("Content-Length", str(len(response.data)))
                    self.end_headers()
                    self.wfile.write(response.data)
                except OSError:
                    pass  # the client gave up waiting (the stall case)

            do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        certs = self.cp.dir / "certs"
        context.load_cert_chain(certs / "apiserver.crt", certs / "apiserver.key")
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param([Fault(429, retry_after="1"), Fault(429, retry_after="1")], id="429-retry-after"),
        pytest.param([Fault(503), Fault(503), Fault(500)], id="5xx"),
        pytest.param([Fault(stall=3.0)], id="timeout"),
    ],
)
def test_transient_errors_are_retried_not_reported(
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    faults: list[Fault],
) -> None:
    api = control_plane.admin
    proxy = FaultyProxy(control_plane, list(faults))
    try:
        kubeconfig = admin_kubeconfig(control_plane, tmp_path / "kubeconfig", server=proxy.url)
        reconciler = reconciler_for(kubeconfig, monkeypatch, timeout=(5.0, 1.5))
        since_rv = api.resource_version(MD_API, "ModelDeployment", namespace)
        apply_md(api, namespace, model("flaky"))
        reconciler.reconcile_result(md(api, namespace, "flaky"))  # one pass: its first writes are refused
    finally:
        proxy.close()
    answered = [answer for _, answer in proxy.patches]
    assert answered[: len(faults)] == [str(f.status or f"stall {f.stall}s") for f in faults]
    assert "forwarded" in answered[len(faults) :]
    for (at, answer), (later, _) in zip(proxy.patches, proxy.patches[1:], strict=False):
        if answer == "429":
            assert later - at >= 1.0, "Retry-After: 1 was not waited out"
    assert api.get("apps/v1", "Deployment", namespace, "flaky-primary") is not None
    statuses = [obj.get("status") or {} for obj in history(api, namespace, since_rv)]
    assert statuses and statuses[-1].get("phase"), statuses
    reasons = [c.get("reason") for status in statuses for c in status.get("conditions") or []]
    assert "ApplyFailed" not in reasons, statuses


# ------------------------------------------------------------ 3. optional CRDs at older versions


def only_version(path: Path, version: str) -> dict[str, Any]:
    """An upstream CRD cut down to serve (and store) one older version, as an old install has it."""
    crd: dict[str, Any] = yaml.safe_load(path.read_text())
    versions = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert versions, f"{path.name} has no {version}"
    versions[0].update(served=True, storage=True)
    crd["spec"]["versions"] = versions
    return crd


def install(api: KubeApi, crds: list[dict[str, Any]]) -> None:
    for crd in crds:
        api.apply(crd)

    def established() -> bool:
        for crd in crds:
            live = api.get(
                "apiextensions.k8s.io/v1", "CustomResourceDefinition", None, crd["metadata"]["name"]
            )
            conditions = ((live or {}).get("status") or {}).get("conditions") or []
            if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return False
        return True

    api.wait_for(established, what="the CRDs to be established")


@dataclass
class OldCluster:
    cp: ControlPlane
    namespace: str
    operator: OperatorProcess


@pytest.fixture(scope="module")
def old_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OldCluster]:
    """A second control plane (not the session's, whose CRDs are current) serving Istio and Gateway
    API routes at v1beta1 only, with the operator running against it."""
    assets = require_assets()
    workdir = tmp_path_factory.mktemp("old-cluster")
    (workdir / "cp").mkdir()
    with ControlPlane(assets=assets, workdir=workdir / "cp") as cp:
        ours = [
            doc
            for path in sorted((REPO_ROOT / "crds").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text())
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
        ]
        install(
            cp.admin,
            [
                *ours,
                only_version(THIRD_PARTY_CRDS / "istio.virtualservices.yaml", "v1beta1"),
                only_version(THIRD_PARTY_CRDS / "gateway-api.httproutes.yaml", "v1beta1"),
            ],
        )
        namespace = "old"
        cp.admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        cp.admin.wait_for(
            lambda: cp.admin.get("v1", "ServiceAccount", namespace, "default"), what="a ServiceAccount"
        )
        with (
            Kubelet(cp.admin),
            OperatorProcess(
                kubeconfig=admin_kubeconfig(cp, workdir / "kubeconfig"),
                log=workdir / "operator.log",
                args=[f"--namespace={namespace}"],
                resync_seconds=1,
            ) as operator,
        ):
            yield OldCluster(cp, namespace, operator)


ROUTED: dict[str, dict[str, Any]] = {
    "istio": {"traffic": {"istio": {"hosts": ["ranker.example.com"]}}},
    "gateway": {"traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw", "namespace": "gateway"}]}}},
}


def degraded(status: dict[str, Any]) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Degraded" and condition.get("status") == "True":
            return str(condition.get("message"))
    return None


@pytest.mark.real_api  # on a control plane of its own, not the session's `control_plane`
@pytest.mark.parametrize(
    ("router", "kind", "needed"),
    [
        pytest.param("istio", "VirtualService", "networking.istio.io/v1", id="istio-v1beta1-only"),
        pytest.param("gateway", "HTTPRoute", "gateway.networking.k8s.io/v1", id="gateway-api-v1beta1-only"),
    ],
)
def test_an_older_router_version_degrades_only_the_objects_that_need_it(
    old_cluster: OldCluster, router: str, kind: str, needed: str
) -> None:
    api, ns = old_cluster.cp.admin, old_cluster.namespace
    plain, routed = f"plain-{router}", f"routed-{router}"
    apply_md(api, ns, model(plain))
    apply_md(api, ns, model(routed, **ROUTED[router]))

    def status(name: str) -> dict[str, Any]:
        return md(api, ns, name).get("status") or {}

    try:
        api.wait_for(lambda: status(plain).get("phase") == "Stable", timeout=90, what=f"{plain} Stable")
        message = api.wait_for(lambda: degraded(status(routed)), timeout=90, what=f"{routed} Degraded")
    except TimeoutError as error:
        raise AssertionError(f"{error}; operator log:\n{old_cluster.operator.tail()}") from None
    assert f"needs {kind} {needed}" in message, message
    assert "serves" in message and "v1beta1 only" in message, message
    assert degraded(status(plain)) is None
    # The routed object's Deployment and Service are in place all the same; only the route is missing.
    assert api.get("apps/v1", "Deployment", ns, f"{routed}-primary") is not None
    assert "Traceback" not in old_cluster.operator.tail(20000)


@pytest.mark.parametrize(
    ("installed", "message"),
    [
        pytest.param({}, "the VirtualService CRD (networking.istio.io/v1) is not installed", id="absent"),
        pytest.param(
            {"virtualservices.networking.istio.io": ("v1alpha3", "v1beta1")},
            "needs VirtualService networking.istio.io/v1, but the cluster serves networking.istio.io"
            " v1alpha3, v1beta1 only: upgrade the virtualservices.networking.istio.io CRD to one"
            " that serves v1",
            id="older-only",
        ),
    ],
)
def test_the_unserved_message_names_the_version_needed(
    installed: dict[str, tuple[str, ...]], message: str
) -> None:
    assert unserved_message("networking.istio.io/v1", "VirtualService", installed) == message
