"""RBAC is proven on the real authorizer (issue 11): the chart's own RBAC, the operator as a process.

For each mode (cluster-wide, and namespaced with `watchNamespaces`), the chart is rendered by the real
`helm template` and installed with `kubectl apply`, exactly as a user installs it without helm. The
operator then runs as `modeldeploy run`, with the chart's arguments, logged in by a kubeconfig holding a
token of the chart's ServiceAccount (TokenRequest), and is driven through every code path that talks to
the API: a first deployment, spec changes that update and prune children, a child deleted by hand, an
invalid spec, Gateway API and Istio canaries promoted, a canary rolled back at its progress deadline,
a canary judged by a real Prometheus (PodMonitor), Events, status writes and the resync loop. Several
ModelDeployments play their parts side by side.

The kube-apiserver's audit log then says what the ServiceAccount did, as RBAC saw it. Asserted:
- no response was 403 Forbidden (neither RBAC's nor an admission plugin's), in either mode;
- everything the operator did is granted by the chart in the scope it did it, and everything the chart
  grants was used, compared both ways on (apiGroup, resource[/subresource], verb, namespace).

Two authorization checks are not requests, so the audit log shows them only through their effect:
- a server-side apply that creates its object is authorized as `patch`, then as `create` (k8s.io/
  apiserver endpoints/handlers/patch.go); its audit event is a `patch` answered 201 Created;
- OwnerReferencesPermissionEnforcement lets a request set `blockOwnerDeletion` on an ownerReference only
  if its user may `update` the owner's `finalizers` subresource (kubebuilder's
  `modeldeployments/finalizers` marker). Every child create makes that check; a test below takes the
  grant away on the server and shows the creates answered 403.
"""

from __future__ import annotations

import concurrent.futures
import copy
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Policies
from helm_tools import (
    REPO_ROOT,
    TOOLS_BIN,
    Manifest,
    Rule,
    find,
    install_notes,
    notes_rbac_by_scope,
    operator_service_account,
    rbac_rules,
    rbac_rules_by_scope,
    render_chart,
    require_helm,
    rules_in_namespace,
    template,
)
from modeldeploy.render.kinds import CHILD_KINDS as KINDS  # the one table of what a ModelDeployment owns
from prometheus_fixture import PrometheusServer, pod_target, require_prometheus
from testbed.controlplane import ADMIN_USER, ControlPlane, Credentials
from testbed.kubeapi import KubeApi
from testbed.kubelet import PodReport, PodState
from testbed.operator_process import OperatorProcess
from testbed.triton_exporter import Traffic, TritonExporter

pytestmark = pytest.mark.integration

MD = ("modeldeploy.io/v1alpha1", "ModelDeployment")
STORAGE_SECRET = "model-store-creds"
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=modeldeploy"
CLUSTER_WIDE, NAMESPACED = "cluster-wide", "namespaced"
STEP_TIMEOUT = 120.0  # seconds for any one stage of the scenario; generous, never a measurement
RESYNC_SECONDS = 2.0

# The verbs an operator that writes only with server-side apply needs. `update` (PUT) is not among them.
REQUEST_VERBS = frozenset({"get", "list", "watch", "create", "patch", "delete"})
# update only on the leader-election Lease (a replace with the resourceVersion read: the fencing).
LEASE_UPDATE = ("coordination.k8s.io", "leases", "update")
STATUS_PATCH: Rule = ("modeldeploy.io", "modeldeployments/status", "patch")
FINALIZERS_UPDATE: Rule = ("modeldeploy.io", "modeldeployments/finalizers", "update")

# Kinds the operator creates with an ownerReference to their ModelDeployment, blockOwnerDeletion set.
OWNED = {(child.kind.group, child.kind.plural) for child in KINDS}
CHILD_KINDS = tuple((child.kind.api_version, child.kind.kind) for child in KINDS)


# ---------------------------------------------------------------------------------------------------
# What the API server authorized, from the audit log


@dataclass(frozen=True)
class Check:
    """One authorization check the API server made for the operator: a rule, in a scope."""

    rule: Rule
    namespace: str | None  # None: a cluster-scoped resource, or a request across all namespaces
    event: Mapping[str, Any] = field(compare=False, hash=False, repr=False)
    how: str = "request"  # "request", "apply-create" (inside a patch), "admission" (ownerReferences)

    def describe(self) -> str:
        scope = f"namespace {self.namespace!r}" if self.namespace else "cluster-wide"
        code = self.event.get("responseStatus", {}).get("code")
        return f"{self.rule} {scope} ({self.how}), e.g. {self.event.get('requestURI')} (-> {code})"


def code(event: Mapping[str, Any]) -> int:
    return int(event.get("responseStatus", {}).get("code", 0))


def checks(event: Mapping[str, Any]) -> list[Check]:
    """What RBAC checked for one audited request; nothing for discovery and other non-resource paths
    (every authenticated client may read them through the built-in system:discovery role)."""
    ref = event.get("objectRef")
    if not ref or not ref.get("resource"):
        return []
    group, resource = ref.get("apiGroup", ""), ref["resource"]
    full = f"{resource}/{ref['subresource']}" if ref.get("subresource") else resource
    namespace = ref.get("namespace") or None
    verb = str(event["verb"])
    found = [Check((group, full, verb), namespace, event)]
    created = code(event) == 201
    if verb == "patch" and created:
        found.append(Check((group, full, "create"), namespace, event, "apply-create"))
    if created and (group, full) in OWNED:
        found.append(Check(FINALIZERS_UPDATE, namespace, event, "admission"))
    return found


@dataclass(frozen=True)
class ScenarioRun:
    """Every request the operator's ServiceAccount sent in one run of the scenario."""

    mode: str
    namespace: str  # where the ModelDeployments live
    user: str
    events: tuple[Mapping[str, Any], ...]
    seconds: float
    checks: tuple[Check, ...] = ()
    children: tuple[Mapping[str, Any], ...] = ()  # every child on the server at the end

    @classmethod
    def of(
        cls,
        mode: str,
        namespace: str,
        user: str,
        events: Iterable[Mapping[str, Any]],
        seconds: float,
        children: Iterable[Mapping[str, Any]] = (),
    ) -> ScenarioRun:
        recorded = tuple(events)
        found = tuple(c for event in recorded for c in checks(event))
        return cls(mode, namespace, user, recorded, seconds, found, tuple(children))

    @property
    def rules(self) -> set[Rule]:
        return {c.rule for c in self.checks}

    def forbidden(self) -> list[str]:
        return [
            f"{e['verb']} {e.get('requestURI')}: {e.get('responseStatus', {}).get('message', '')}"
            for e in self.events
            if code(e) == 403
        ]


def not_allowed(run: ScenarioRun, manifests: list[Manifest]) -> list[str]:
    """The run's checks that the rendered chart does not grant in the scope where they were made."""
    granted: dict[str | None, set[Rule]] = {}
    missing: dict[tuple[Rule, str | None], Check] = {}
    for check in run.checks:
        scope = check.namespace
        if scope not in granted:
            granted[scope] = rules_in_namespace(manifests, scope)
        if check.rule not in granted[scope]:
            missing.setdefault((check.rule, scope), check)
    return sorted(c.describe() for c in missing.values())


def unused_grants(manifests: list[Manifest], runs: Iterable[ScenarioRun]) -> list[Rule]:
    used: set[Rule] = set().union(*(run.rules for run in runs))
    return sorted(rbac_rules(manifests) - used)


def verb_table(runs: Iterable[ScenarioRun]) -> str:
    """(group, resource): verbs, per mode -- printed with -s, and quoted in failure messages."""
    by_rule: dict[tuple[str, str], dict[str, set[str]]] = {}
    for run in runs:
        for group, resource, verb in run.rules:
            by_rule.setdefault((group or "core", resource), {}).setdefault(run.mode, set()).add(verb)
    return "\n".join(
        f"{group:<28} {resource:<28} "
        + "; ".join(f"{mode}: {','.join(sorted(verbs))}" for mode, verbs in sorted(modes.items()))
        for (group, resource), modes in sorted(by_rule.items())
    )


def audit_event(verb: str, status: int, **ref: str) -> dict[str, Any]:
    """An audit event as kube-apiserver writes it at level Metadata (only the fields read here)."""
    event: dict[str, Any] = {"verb": verb, "requestURI": "/x", "responseStatus": {"code": status}}
    if ref:
        event["objectRef"] = {"apiVersion": "v1", **ref}
    return event


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(audit_event("get", 200), [], id="discovery"),
        pytest.param(
            audit_event("list", 200, resource="modeldeployments", apiGroup="modeldeploy.io"),
            [(("modeldeploy.io", "modeldeployments", "list"), None, "request")],
            id="list-all-namespaces",
        ),
        pytest.param(
            audit_event("watch", 200, resource="namespaces"),
            [(("", "namespaces", "watch"), None, "request")],
            id="watch-namespaces",
        ),
        pytest.param(
            audit_event(
                "patch",
                200,
                resource="modeldeployments",
                subresource="status",
                namespace="ml",
                apiGroup="modeldeploy.io",
                name="m",
            ),
            [(STATUS_PATCH, "ml", "request")],
            id="status-patch",
        ),
        pytest.param(
            audit_event("patch", 200, resource="deployments", apiGroup="apps", namespace="ml", name="m"),
            [(("apps", "deployments", "patch"), "ml", "request")],
            id="apply-existing",
        ),
        pytest.param(
            audit_event("patch", 201, resource="deployments", apiGroup="apps", namespace="ml", name="m"),
            [
                (("apps", "deployments", "patch"), "ml", "request"),
                (("apps", "deployments", "create"), "ml", "apply-create"),
                (FINALIZERS_UPDATE, "ml", "admission"),
            ],
            id="apply-creates-a-child",
        ),
        pytest.param(
            audit_event("create", 201, resource="events", namespace="ml"),
            [(("", "events", "create"), "ml", "request")],
            id="event-owns-nothing",
        ),
        pytest.param(
            audit_event("patch", 403, resource="services", namespace="ml", name="m"),
            [(("", "services", "patch"), "ml", "request")],
            id="forbidden-creates-nothing",
        ),
    ],
)
def test_checks_of_an_audit_event(
    event: dict[str, Any], expected: list[tuple[Rule, str | None, str]]
) -> None:
    assert [(c.rule, c.namespace, c.how) for c in checks(event)] == expected


# ---------------------------------------------------------------------------------------------------
# The chart, installed as `helm template | kubectl apply`


@dataclass(frozen=True)
class Mode:
    """One way of installing the chart; its own release, so the two modes' ClusterRoles never meet."""

    name: str
    release: str  # contains "modeldeploy", so it is the chart's fullname: ClusterRole and SA names
    workload_namespace: str

    @property
    def release_namespace(self) -> str:
        return f"{self.release}-system"

    @property
    def values(self) -> dict[str, Any]:
        if self.name == NAMESPACED:
            return {"watchNamespaces": [self.workload_namespace]}
        return {}

    def template(self) -> str:
        """`helm template` of the chart in this mode: the text a user pipes into kubectl."""
        return template(self.values, release=self.release, namespace=self.release_namespace).stdout

    def render(self) -> list[Manifest]:
        return render_chart(self.values, release=self.release, namespace=self.release_namespace)


def new_mode(name: str) -> Mode:
    suffix = uuid.uuid4().hex[:6]
    return Mode(name, f"modeldeploy-{suffix}", f"rbac-{suffix}")


def kubectl_apply(cp: ControlPlane, manifests_yaml: str, kubeconfig: Path) -> str:
    """`kubectl apply -f -` with the real kubectl, as an admin: what a user without helm runs."""
    kubectl = TOOLS_BIN / "kubectl"
    if not kubectl.exists():
        pytest.fail(f"{kubectl} is missing: run `make tools`")
    proc = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
        input=manifests_yaml,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"kubectl apply of the chart failed:\n{proc.stderr}"
    return proc.stdout


def create_namespace(api: KubeApi, name: str) -> None:
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def install_chart(cp: ControlPlane, mode: Mode, rendered: str, workdir: Path) -> str:
    """The release namespace, then `rendered` (helm's output) with kubectl; returns kubectl's output."""
    create_namespace(cp.admin, mode.release_namespace)
    admin = cp.kubeconfig(Credentials(user=ADMIN_USER, token=cp.admin_token), workdir / "admin.kubeconfig")
    return kubectl_apply(cp, rendered, admin)


def uninstall(cp: ControlPlane, mode: Mode, manifests: list[Manifest]) -> None:
    """The release's cluster-scoped objects, then its namespaces (the rest goes with them)."""
    for manifest in find(manifests, "ClusterRoleBinding") + find(manifests, "ClusterRole"):
        cp.admin.delete(manifest["apiVersion"], manifest["kind"], None, manifest["metadata"]["name"])
    for namespace in (mode.workload_namespace, mode.release_namespace):
        cp.admin.delete("v1", "Namespace", None, namespace)


def operator_args(manifests: list[Manifest]) -> list[str]:
    """The chart's container arguments, but for those OperatorProcess sets itself (ports, log format,
    resync period, Prometheus URL: the test bed's own)."""
    (deployment,) = find(manifests, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args: list[str] = container["args"]
    assert args[0] == "run", args
    own = ("--health-port=", "--metrics-port=", "--log-format=", "--resync-seconds=", "--prometheus-url=")
    return [a for a in args[1:] if not a.startswith(own)]


# ---------------------------------------------------------------------------------------------------
# The scenario


def model_deployment(
    namespace: str,
    name: str,
    version: str = "1",
    *,
    scaling: dict[str, Any] | None = None,
    traffic: dict[str, Any] | None = None,
    rollout: dict[str, Any] | None = None,
    network_policy: dict[str, Any] | None = None,
    alerts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {
            "name": name.replace("-", "_"),
            "version": version,
            "storageUri": f"s3://models/{name}/{version}",
            # A Secret is referenced, and exists: the operator must still never read it.
            "storageSecretRef": {"name": STORAGE_SECRET},
            # A config.pbtxt, carried in each revision's pod template (no ConfigMap child).
            "config": {"maxBatchSize": 8},
        },
        "runtime": {"gpus": 1, "resources": {"requests": {"cpu": "1"}}},  # the HPA measures against it
        "scaling": scaling or {"minReplicas": 1, "maxReplicas": 1},
    }
    if traffic is not None:
        spec["traffic"] = traffic
    if rollout is not None:
        spec["rollout"] = rollout
    if network_policy is not None:
        spec["networkPolicy"] = network_policy
    if alerts is not None:
        spec["alerts"] = alerts
    return {
        "apiVersion": MD[0],
        "kind": MD[1],
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


# Rollouts gated by canary readiness and a 1 s interval only: no metrics, so no Prometheus needed.
QUICK_ROLLOUT = {
    "steps": [{"weight": 50}],
    "interval": "1s",
    "progressDeadline": "60s",
    "analysis": {"metrics": []},
}
GATEWAY = {
    "gatewayAPI": {
        "parentRefs": [{"name": "inference", "namespace": "gateway"}],
        "hostnames": ["gw.example.com"],
        "grpc": {"hostnames": ["grpc.gw.example.com"]},
    }
}
ISTIO = {"istio": {"hosts": ["mesh.example.com"], "gateways": ["istio-system/inference"]}}
STUCK = "stuck"  # its canary's pods never become ready
ANALYSED = "analysed"


def operator_only_invalid_spec() -> dict[str, Any]:
    """A spec the API server stores and only the operator rejects (tests/invalid_specs.yaml)."""
    corpus = yaml.safe_load((REPO_ROOT / "tests" / "invalid_specs.yaml").read_text())
    cases = [case for case in corpus if case["kubernetes"] == "operator"]
    assert cases, "tests/invalid_specs.yaml has no case only the operator rejects: pick another InvalidSpec"
    spec: dict[str, Any] = cases[0]["spec"]
    return spec


def stuck_canary(pod: Mapping[str, Any]) -> PodReport:
    """The kubelet stand-in: every pod ready, but those of the stuck canary stay Pending."""
    if str(pod.get("metadata", {}).get("name", "")).startswith(f"{STUCK}-canary-"):
        return PodReport(PodState.PENDING)
    return PodReport()


class Scenario:
    """The moves, each a function that waits until the operator has done what it should."""

    def __init__(self, cp: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
        self.api = cp.admin  # the admin's own client: its requests are not the operator's
        self.ns = namespace
        self.operator = operator

    # ------------------------------------------------------------------------------------ helpers

    def apply(self, manifest: Mapping[str, Any]) -> None:
        self.api.apply(manifest)

    def status(self, name: str) -> dict[str, Any]:
        status: dict[str, Any] = (self.api.get(*MD, self.ns, name) or {}).get("status") or {}
        return status

    def get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        return self.api.get(api_version, kind, self.ns, name)

    def until(self, what: str, predicate: Callable[[], Any]) -> Any:
        try:
            return self.api.wait_for(predicate, timeout=STEP_TIMEOUT, what=what, interval=0.2)
        except TimeoutError as error:
            raise AssertionError(f"{error}; operator log (tail):\n{self.operator.tail()}") from None

    def phase(self, name: str, phase: str) -> dict[str, Any]:
        status: dict[str, Any] = self.until(
            f"{name} to be {phase}", lambda: self.status(name).get("phase") == phase and self.status(name)
        )
        return status

    def promoted(self, name: str, version: str) -> None:
        def done() -> bool:
            status = self.status(name)
            history = status.get("history") or [{}]
            return (
                status.get("phase") == "Stable"
                and status.get("stableModelVersion") == version
                and history[0].get("result") == "Promoted"
            )

        self.until(f"{name} version {version} to be promoted", done)
        self.until(
            f"{name}'s canary Deployment to be removed",
            lambda: self.get("apps/v1", "Deployment", f"{name}-canary") is None,
        )

    def md(self, name: str, version: str = "1", **kwargs: Any) -> dict[str, Any]:
        return model_deployment(self.ns, name, version, **kwargs)

    # -------------------------------------------------------------------------------------- moves

    def lifecycle(self) -> None:
        """First deployment; a spec change that updates a child, one that prunes it; a child deleted
        by hand; an invalid spec (an Event); the spec fixed."""
        name = "life"
        hpa = ("autoscaling/v2", "HorizontalPodAutoscaler", name)
        self.apply(self.md(name, scaling={"minReplicas": 1, "maxReplicas": 3}))
        self.phase(name, "Stable")

        self.apply(self.md(name, scaling={"minReplicas": 1, "maxReplicas": 5}))
        self.until(
            "the HPA to follow the spec",
            lambda: (self.get(*hpa) or {}).get("spec", {}).get("maxReplicas") == 5,
        )

        policy = ("networking.k8s.io/v1", "NetworkPolicy", name)
        rule = ("monitoring.coreos.com/v1", "PrometheusRule", name)
        self.until("the NetworkPolicy", lambda: self.get(*policy))
        self.until("the PrometheusRule", lambda: self.get(*rule))
        fixed = self.md(
            name,
            scaling={"minReplicas": 2, "maxReplicas": 2},
            network_policy={"enabled": False},
            alerts={"enabled": False},
        )
        self.apply(fixed)
        self.until("the HPA to be pruned", lambda: self.get(*hpa) is None)
        self.until("the NetworkPolicy to be pruned", lambda: self.get(*policy) is None)
        self.until("the PrometheusRule to be pruned", lambda: self.get(*rule) is None)

        self.api.delete("v1", "Service", self.ns, name)
        self.until("the Service to be restored", lambda: self.get("v1", "Service", name))

        self.apply({**fixed, "spec": operator_only_invalid_spec()})
        self.until(
            f"{name} to be Degraded with InvalidSpec",
            lambda: any(
                c.get("type") == "Degraded" and c.get("reason") == "InvalidSpec"
                for c in self.status(name).get("conditions") or []
            ),
        )
        self.until(
            "an InvalidSpec event",
            lambda: any(e.get("reason") == "InvalidSpec" for e in self.api.list("v1", "Event", self.ns)),
        )
        self.apply(fixed)
        self.phase(name, "Stable")

    def gateway_rollout(self) -> None:
        """A Gateway API canary (HTTPRoute and GRPCRoute) to promotion; then the router removed."""
        name = "gw"
        self.apply(self.md(name, "1", traffic=GATEWAY, rollout=QUICK_ROLLOUT))
        self.phase(name, "Stable")
        assert self.get("gateway.networking.k8s.io/v1", "GRPCRoute", f"{name}-grpc") is not None
        self.apply(self.md(name, "2", traffic=GATEWAY, rollout=QUICK_ROLLOUT))
        self.promoted(name, "2")
        self.apply(self.md(name, "2", rollout=QUICK_ROLLOUT))
        self.until(
            "the routes to be pruned",
            lambda: (
                self.get("gateway.networking.k8s.io/v1", "HTTPRoute", name) is None
                and self.get("gateway.networking.k8s.io/v1", "GRPCRoute", f"{name}-grpc") is None
            ),
        )

    def istio_rollout(self) -> None:
        """An Istio canary (VirtualService) to promotion; then the router removed."""
        name = "mesh"
        self.apply(self.md(name, "1", traffic=ISTIO, rollout=QUICK_ROLLOUT))
        self.phase(name, "Stable")
        self.apply(self.md(name, "2", traffic=ISTIO, rollout=QUICK_ROLLOUT))
        self.promoted(name, "2")
        self.apply(self.md(name, "2", rollout=QUICK_ROLLOUT))
        self.until(
            "the VirtualService to be pruned",
            lambda: self.get("networking.istio.io/v1", "VirtualService", name) is None,
        )

    def rollback_at_deadline(self) -> None:
        """A canary whose pods stay Pending: the operator lists them, then rolls the canary back."""
        name = STUCK
        rollout = {**QUICK_ROLLOUT, "progressDeadline": "5s"}
        self.apply(self.md(name, "1", rollout=rollout))
        self.phase(name, "Stable")
        self.apply(self.md(name, "2", rollout=rollout))
        status = self.phase(name, "RolledBack")
        assert status["history"][0]["result"] == "RolledBack", status

    def analysed_rollout(self) -> None:
        """A canary judged by the real Prometheus (success rate) at two steps, then promoted."""
        name = ANALYSED
        rollout = {
            "steps": [{"weight": 25}, {"weight": 50}],
            "interval": "2s",
            "failureThreshold": 2,
            "progressDeadline": "60s",
            "analysis": {
                "minSampleCount": 10,
                "metrics": [{"name": "success-rate", "template": "successRate", "min": 0.9}],
            },
        }
        self.apply(self.md(name, "1", rollout=rollout))
        self.phase(name, "Stable")
        self.apply(self.md(name, "2", rollout=rollout))
        self.until(
            "a passing success-rate check from Prometheus",
            lambda: any(
                result.get("name") == "success-rate" and result.get("verdict") == "Pass"
                for result in self.status(name).get("analysis") or []
            ),
        )
        self.promoted(name, "2")

    def gated_rollout(self) -> None:
        """A model-quality gate reads its golden set (a ConfigMap GET) and asks the canary; no
        model server listens here, so the gate is Inconclusive and, by policy, rolls back."""
        name = "gated"
        golden = '{"inputs": {"features": [1.0, 2.0]}, "label": 1}\n'
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "golden", "namespace": self.ns},
                "data": {"golden.jsonl": golden},
            }
        )
        rollout = {
            **QUICK_ROLLOUT,
            "analysis": {"metrics": [], "inconclusive": {"limit": 1, "action": "Rollback"}},
            "gates": {
                "goldenSet": {"configMapKeyRef": {"name": "golden", "key": "golden.jsonl"}, "minAnswered": 1},
                "minAccuracy": 0.9,
                "timeout": "20s",
            },
        }
        self.apply(self.md(name, "1", rollout=rollout))
        self.phase(name, "Stable")
        self.apply(self.md(name, "2", rollout=rollout))
        status = self.phase(name, "RolledBack")
        assert (status.get("gate") or {}).get("state") == "Inconclusive", status.get("gate")

    def example(self) -> None:
        """The README's first example, as a user applies it (Done when: Stable with 0 forbidden)."""
        (manifest,) = [
            doc
            for doc in yaml.safe_load_all((REPO_ROOT / "examples" / "fraud-scorer.yaml").read_text())
            if isinstance(doc, dict) and doc.get("kind") == MD[1]
        ]
        manifest["metadata"]["namespace"] = self.ns
        self.apply(manifest)
        self.phase(manifest["metadata"]["name"], "Stable")

    def all(self) -> None:
        moves = [
            self.lifecycle,
            self.gateway_rollout,
            self.istio_rollout,
            self.rollback_at_deadline,
            self.analysed_rollout,
            self.gated_rollout,
            self.example,
        ]
        with concurrent.futures.ThreadPoolExecutor(len(moves), thread_name_prefix="move") as pool:
            for future in [pool.submit(move) for move in moves]:
                future.result()


def prepare_namespace(cp: ControlPlane, policies: Policies, namespace: str) -> None:
    api = cp.admin
    create_namespace(api, namespace)
    api.wait_for(
        lambda: api.get("v1", "ServiceAccount", namespace, "default"),
        what=f"the default ServiceAccount of {namespace}",
    )
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": STORAGE_SECRET, "namespace": namespace},
            "stringData": {"AWS_ACCESS_KEY_ID": "not-a-real-key"},
        }
    )
    policies.set(namespace, stuck_canary)


def no_model_deployments_elsewhere(cp: ControlPlane, namespace: str) -> None:
    """A cluster-wide operator reconciles every ModelDeployment: wait until other tests' leftovers (in
    namespaces still being deleted) are gone, so that everything it does is this scenario's."""
    api = cp.admin
    api.wait_for(
        lambda: all(md["metadata"]["namespace"] == namespace for md in api.list(*MD)),
        timeout=300,
        what="ModelDeployments of other tests to be deleted",
        interval=1.0,
    )


def children(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    """Every object the operator manages in `namespace` (not the namespace's own kube-root-ca.crt)."""
    return [
        obj
        for api_version, kind in CHILD_KINDS
        for obj in cp.admin.list(api_version, kind, namespace, MANAGED_SELECTOR)
    ]


def run_scenario(
    cp: ControlPlane, policies: Policies, mode: Mode, prometheus: PrometheusServer, workdir: Path
) -> tuple[ScenarioRun, list[Manifest]]:
    """Install the chart in `mode`, run the operator as its ServiceAccount through the scenario."""
    rendered = mode.template()
    manifests: list[Manifest] = [doc for doc in yaml.safe_load_all(rendered) if doc]
    install_chart(cp, mode, rendered, workdir)
    sa_namespace, sa_name = operator_service_account(manifests)
    creds = cp.service_account_token(sa_namespace, sa_name)
    if mode.name == CLUSTER_WIDE:
        no_model_deployments_elsewhere(cp, mode.workload_namespace)
    started = time.monotonic()
    since = cp.audit_position()
    operator = OperatorProcess(
        kubeconfig=cp.kubeconfig(creds, workdir / "operator.kubeconfig"),
        log=workdir / "operator.log",
        args=operator_args(manifests),
        resync_seconds=RESYNC_SECONDS,
        prometheus_url=prometheus.url,
    )
    with operator:
        Scenario(cp, mode.workload_namespace, operator).all()
        # One more resync, so that the operator's own client has listed ModelDeployments after the
        # last move, as it does all the time.
        time.sleep(RESYNC_SECONDS * 2)
    events = cp.audit_events(since, user=creds.user)
    run = ScenarioRun.of(
        mode.name,
        mode.workload_namespace,
        creds.user,
        events,
        time.monotonic() - started,
        children(cp, mode.workload_namespace),
    )
    return run, manifests


# ---------------------------------------------------------------------------------------------------
# Fixtures: helm, a real Prometheus, and one run of the scenario per mode


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_helm()


@pytest.fixture(scope="module")
def modes() -> dict[str, Mode]:
    return {name: new_mode(name) for name in (CLUSTER_WIDE, NAMESPACED)}


@pytest.fixture(scope="module")
def prometheus(modes: dict[str, Mode]) -> Iterator[PrometheusServer]:
    """Prometheus scraping Triton-format metrics of a healthy primary and canary of `analysed`, as the
    PodMonitor labels them, in both modes' namespaces."""
    require_prometheus()
    with (
        TritonExporter(ANALYSED, traffic=Traffic(rate=80, latency_ms=20)) as primary,
        TritonExporter(ANALYSED, traffic=Traffic(rate=40, latency_ms=20)) as canary,
    ):
        targets = [
            pod_target(exporter.address, namespace=mode.workload_namespace, name=ANALYSED, track=track)
            for mode in modes.values()
            for exporter, track in ((primary, "primary"), (canary, "canary"))
        ]
        with PrometheusServer(targets) as server:
            yield server


@pytest.fixture(scope="module")
def scenario_runs(
    control_plane: ControlPlane,
    kubelet_policies: Policies,
    modes: dict[str, Mode],
    prometheus: PrometheusServer,
    helm: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[ScenarioRun, list[Manifest]]]]:
    for mode in modes.values():
        prepare_namespace(control_plane, kubelet_policies, mode.workload_namespace)
    results = {
        name: run_scenario(control_plane, kubelet_policies, mode, prometheus, tmp_path_factory.mktemp(name))
        for name, mode in modes.items()
    }
    runs = [run for run, _ in results.values()]
    print(f"\nAPI rules the operator used:\n{verb_table(runs)}")
    for run in runs:
        verbs = Counter(str(e["verb"]) for e in run.events)
        codes = Counter(code(e) for e in run.events)
        print(
            f"{run.mode}: {len(run.events)} requests in {run.seconds:.0f}s; by verb: "
            + ", ".join(f"{verb} {n}" for verb, n in sorted(verbs.items()))
            + "; by response code: "
            + ", ".join(f"{status} {n}" for status, n in sorted(codes.items()))
        )
        for event in [e for e in run.events if code(e) >= 400][:10]:  # 403s fail a test below
            message = event.get("responseStatus", {}).get("message", "")
            print(f"  {code(event)} {event['verb']} {event.get('requestURI')}: {message}")
    yield results
    for name, mode in modes.items():
        uninstall(control_plane, mode, results[name][1])


@pytest.fixture(scope="module")
def cluster_wide_run(scenario_runs: dict[str, tuple[ScenarioRun, list[Manifest]]]) -> ScenarioRun:
    return scenario_runs[CLUSTER_WIDE][0]


@pytest.fixture(scope="module")
def namespaced_run(scenario_runs: dict[str, tuple[ScenarioRun, list[Manifest]]]) -> ScenarioRun:
    return scenario_runs[NAMESPACED][0]


@pytest.fixture(scope="module")
def runs(cluster_wide_run: ScenarioRun, namespaced_run: ScenarioRun) -> list[ScenarioRun]:
    return [cluster_wide_run, namespaced_run]


def chart_of(scenario_runs: dict[str, tuple[ScenarioRun, list[Manifest]]], mode: str) -> list[Manifest]:
    return scenario_runs[mode][1]


# ---------------------------------------------------------------------------------------------------
# The scenario really went everywhere


# What each move must have made the operator do, as (what, group, resource, verb, how it was checked).
EXPECTED_CHECKS = [
    ("read its objects", "modeldeploy.io", "modeldeployments", "get", "request"),
    ("write status", "modeldeploy.io", "modeldeployments/status", "patch", "request"),
    ("create a child (create, 409 if the name is taken)", "apps", "deployments", "create", "request"),
    (
        "set blockOwnerDeletion on a child",
        "modeldeploy.io",
        "modeldeployments/finalizers",
        "update",
        "admission",
    ),
    ("update a child", "autoscaling", "horizontalpodautoscalers", "patch", "request"),
    ("prune a child (HPA off)", "autoscaling", "horizontalpodautoscalers", "delete", "request"),
    ("fence the Triton pods", "networking.k8s.io", "networkpolicies", "create", "request"),
    ("prune the NetworkPolicy (turned off)", "networking.k8s.io", "networkpolicies", "delete", "request"),
    ("restore a Service deleted by hand", "", "services", "create", "request"),
    ("remove a promoted canary", "apps", "deployments", "delete", "request"),
    ("read a gate's golden set (the one ConfigMap verb)", "", "configmaps", "get", "request"),
    ("prune track Services when routing goes", "", "services", "delete", "request"),
    ("post an Event", "", "events", "create", "request"),
    ("route with Gateway API (HTTP)", "gateway.networking.k8s.io", "httproutes", "create", "request"),
    ("route with Gateway API (gRPC)", "gateway.networking.k8s.io", "grpcroutes", "create", "request"),
    ("route with Istio", "networking.istio.io", "virtualservices", "create", "request"),
    ("shift canary weight", "networking.istio.io", "virtualservices", "patch", "request"),
    ("prune an HTTPRoute", "gateway.networking.k8s.io", "httproutes", "delete", "request"),
    ("prune a GRPCRoute", "gateway.networking.k8s.io", "grpcroutes", "delete", "request"),
    ("prune a VirtualService", "networking.istio.io", "virtualservices", "delete", "request"),
    ("scrape config for analysis", "monitoring.coreos.com", "podmonitors", "create", "request"),
    ("alerts after the rollout", "monitoring.coreos.com", "prometheusrules", "create", "request"),
    ("prune the alerts (turned off)", "monitoring.coreos.com", "prometheusrules", "delete", "request"),
    ("diagnose a canary that is not ready", "", "pods", "list", "request"),
    (
        "reach the server at startup (the CLI reads our CRD)",
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "get",
        "request",
    ),
]


@pytest.mark.parametrize("mode", [CLUSTER_WIDE, NAMESPACED])
def test_the_scenario_reached_every_code_path_that_talks_to_the_api(
    mode: str, runs: list[ScenarioRun]
) -> None:
    (run,) = [r for r in runs if r.mode == mode]
    missed = [
        what
        for what, group, resource, verb, how in EXPECTED_CHECKS
        if not any(c.rule == (group, resource, verb) and c.how == how for c in run.checks)
    ]
    assert not missed, f"{mode}: the scenario never made the operator {missed}"
    # The periodic resync reads ModelDeployments from the operator's cache (kopf's list and watch),
    # so it makes no request of its own: nothing of it to authorize.


@pytest.mark.parametrize("mode", [CLUSTER_WIDE, NAMESPACED])
def test_no_request_was_forbidden(mode: str, runs: list[ScenarioRun]) -> None:
    (run,) = [r for r in runs if r.mode == mode]
    assert run.events, f"{mode}: the audit log has no request of {run.user}"
    forbidden = run.forbidden()
    assert not forbidden, f"{mode}: {len(forbidden)} requests answered 403:\n" + "\n".join(forbidden[:20])


def test_every_child_sets_block_owner_deletion_so_every_create_made_the_finalizers_check(
    runs: list[ScenarioRun],
) -> None:
    """The admission check counted in `checks()` happens only if the child's ownerReference sets
    blockOwnerDeletion: the children on the server show that it does."""
    for run in runs:
        assert run.children, f"{run.mode}: no children"
        for child in run.children:
            refs = child["metadata"].get("ownerReferences") or []
            owner = [r for r in refs if r.get("kind") == MD[1] and r.get("apiVersion") == MD[0]]
            assert owner and owner[0].get("blockOwnerDeletion") is True, (
                f"{run.mode}: {child['kind']}/{child['metadata']['name']} ownerReferences {refs}"
            )


# ---------------------------------------------------------------------------------------------------
# Both ways: everything used is granted, everything granted is used


@pytest.mark.parametrize("mode", [CLUSTER_WIDE, NAMESPACED])
def test_the_chart_allows_everything_the_operator_did_in_the_right_scope(
    mode: str, scenario_runs: dict[str, tuple[ScenarioRun, list[Manifest]]]
) -> None:
    run, manifests = scenario_runs[mode]
    missing = not_allowed(run, manifests)
    assert not missing, f"the {mode} chart does not grant:\n" + "\n".join(missing)


@pytest.mark.parametrize("mode", [CLUSTER_WIDE, NAMESPACED])
def test_the_chart_grants_nothing_the_operator_never_used(
    mode: str, scenario_runs: dict[str, tuple[ScenarioRun, list[Manifest]]]
) -> None:
    run, manifests = scenario_runs[mode]
    unused = unused_grants(manifests, [run])
    assert not unused, (
        f"the {mode} chart grants rules the operator never used (drop them):\n"
        + "\n".join(map(str, unused))
        + f"\n\nwhat the operator did use:\n{verb_table([run])}"
    )


# Every verb RBAC knows for a resource: the notes' claims are checked for each, granted or not.
ALL_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


def authorized(cp: ControlPlane, user: str, rule: Rule, namespace: str) -> bool:
    """The real authorizer's answer (a SubjectAccessReview) for `user` doing `rule` in `namespace`."""
    group, resource, verb = rule
    resource, _, subresource = resource.partition("/")
    attributes = {"namespace": namespace, "verb": verb, "group": group, "resource": resource}
    if subresource:
        attributes["subresource"] = subresource
    review = cp.admin.create(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "resourceAttributes": attributes,
            },
        },
    )
    return bool(review["status"].get("allowed"))


@pytest.mark.parametrize("mode", [CLUSTER_WIDE, NAMESPACED])
def test_the_authorizer_grants_exactly_what_the_notes_say(
    mode: str,
    control_plane: ControlPlane,
    modes: dict[str, Mode],
    scenario_runs: dict[str, tuple[ScenarioRun, list[Manifest]]],
) -> None:
    """What NOTES.txt prints at install is what the real authorizer allows the ServiceAccount, verb by
    verb, in the workload namespace, in kube-system and in the release's namespace: granted where the
    notes list it, refused where they do not (Secrets included), so the notes neither understate nor
    overstate. Namespaced mode reads no ConfigMap of kube-system; cluster-wide reads every one, and says
    so (issue 18)."""
    this, (run, _) = modes[mode], scenario_runs[mode]
    said = notes_rbac_by_scope(
        install_notes(this.values, release=this.release, namespace=this.release_namespace)
    )
    # Leases are granted by name (resourceNames), which a review without a name never matches.
    kinds = {(g, r) for rules in said.values() for g, r, _ in rules if r != "leases"} | {("", "secrets")}
    wrong = []
    for namespace in (this.workload_namespace, "kube-system", this.release_namespace):
        listed = said.get(None, set()) | said.get(namespace, set())
        for group, resource in sorted(kinds):
            for verb in ALL_VERBS:
                rule = (group, resource, verb)
                if authorized(control_plane, run.user, rule, namespace) != (rule in listed):
                    wrong.append(f"{rule} in {namespace}: notes say {'granted' if rule in listed else 'not'}")
    assert not wrong, f"{mode}: the authorizer disagrees with NOTES.txt:\n" + "\n".join(wrong)
    reads_kube_system = authorized(control_plane, run.user, ("", "configmaps", "get"), "kube-system")
    assert reads_kube_system is (mode == CLUSTER_WIDE)


def test_the_namespaced_operator_used_nothing_cluster_wide_beyond_the_small_cluster_role(
    namespaced_run: ScenarioRun, scenario_runs: dict[str, tuple[ScenarioRun, list[Manifest]]]
) -> None:
    cluster_role = rbac_rules_by_scope(chart_of(scenario_runs, NAMESPACED))[None]
    beyond: dict[Rule, Check] = {}
    for check in namespaced_run.checks:
        if check.namespace is None and check.rule not in cluster_role:
            beyond.setdefault(check.rule, check)
    assert not beyond, "cluster-wide requests of the namespaced operator, not in its ClusterRole:\n" + (
        "\n".join(c.describe() for c in beyond.values())
    )
    # ...and it stayed in its own namespace (the cluster-wide one had nothing elsewhere to do), but
    # for its leader-election Lease in the release's namespace.
    elsewhere = {c.namespace for c in namespaced_run.checks if not_its_own(namespaced_run, c)}
    assert not elsewhere, f"the namespaced operator reached into {elsewhere}"


def test_the_finalizers_grant_is_used_by_admission_only(runs: list[ScenarioRun]) -> None:
    """Counted as used because children were created with blockOwnerDeletion; never a request."""
    for run in runs:
        hows = {c.how for c in run.checks if c.rule == FINALIZERS_UPDATE}
        assert hows == {"admission"}, f"{run.mode}: {hows}"


def test_the_cluster_wide_operator_worked_only_where_the_scenario_ran(cluster_wide_run: ScenarioRun) -> None:
    """Other tests' objects were gone before it started, so every namespaced request is the scenario's."""
    elsewhere = {c.namespace for c in cluster_wide_run.checks if not_its_own(cluster_wide_run, c)}
    assert not elsewhere, f"the cluster-wide operator reconciled objects in {elsewhere}"
    leases = {c.rule[2] for c in cluster_wide_run.checks if c.rule[1] == "leases"}
    assert leases == {"get", "create", "update"}, leases  # leader election, as the chart runs it


def not_its_own(run: ScenarioRun, check: Check) -> bool:
    """A request outside the scenario's namespace, leader election's Lease apart."""
    lease = check.rule[:2] == ("coordination.k8s.io", "leases")
    return check.namespace not in (None, run.namespace) and not lease


# ---------------------------------------------------------------------------------------------------
# What the operator must never do


def test_the_operator_never_reads_or_writes_secrets(runs: list[ScenarioRun]) -> None:
    touched = [c.describe() for run in runs for c in run.checks if c.rule[1].startswith("secrets")]
    assert not touched, touched


def test_the_operator_only_gets_config_maps_by_name(runs: list[ScenarioRun]) -> None:
    """The golden set's GET is the one ConfigMap request: no list, watch or write (issue 18)."""
    verbs = {(run.mode, c.rule[2]) for run in runs for c in run.checks if c.rule[1] == "configmaps"}
    assert verbs == {(run.mode, "get") for run in runs}, verbs


def test_the_operator_writes_model_deployments_only_through_status(runs: list[ScenarioRun]) -> None:
    """Manual control (pause, promote, abort annotations) is the CLI's; the operator writes status only."""
    writes = [
        (run.mode, c)
        for run in runs
        for c in run.checks
        if c.rule[0] == "modeldeploy.io" and c.rule[2] not in ("get", "list", "watch") and c.how == "request"
    ]
    assert writes, "no status write seen at all: the scenario did not run"
    wrong = [f"{mode}: {c.describe()}" for mode, c in writes if c.rule != STATUS_PATCH]
    assert not wrong, "writes to a ModelDeployment other than a status patch:\n" + "\n".join(wrong)


def test_the_operator_requests_no_verb_beyond_get_list_watch_create_patch_delete(
    runs: list[ScenarioRun],
) -> None:
    odd = sorted(
        {
            f"{run.mode}: {c.describe()}"
            for run in runs
            for c in run.checks
            if c.how == "request" and c.rule[2] not in REQUEST_VERBS and c.rule[:3] != LEASE_UPDATE
        }
    )
    assert not odd, "verbs the operator should not need (update would need RBAC the chart omits):\n" + (
        "\n".join(odd)
    )


# ---------------------------------------------------------------------------------------------------
# The proof notices what it should


def without_rule(manifests: list[Manifest], rule: Rule) -> list[Manifest]:
    """The rendered chart with one (group, resource, verb) taken out of every role."""
    group, resource, verb = rule
    edited = copy.deepcopy(manifests)
    for role in find(edited, "ClusterRole") + find(edited, "Role"):
        for entry in role.get("rules", []):
            if group in entry.get("apiGroups", []) and resource in entry.get("resources", []):
                entry["verbs"] = [v for v in entry["verbs"] if v != verb]
        role["rules"] = [entry for entry in role.get("rules", []) if entry["verbs"]]
    return edited


def with_rule(manifests: list[Manifest], rule: Rule) -> list[Manifest]:
    """The rendered chart with one more (group, resource, verb) in the operator's ClusterRole."""
    group, resource, verb = rule
    edited = copy.deepcopy(manifests)
    (binding,) = [b for b in find(edited, "ClusterRoleBinding") if b["roleRef"]["kind"] == "ClusterRole"]
    (role,) = find(edited, "ClusterRole", binding["roleRef"]["name"])
    role["rules"].append({"apiGroups": [group], "resources": [resource], "verbs": [verb]})
    return edited


def test_the_proof_notices_a_rule_taken_out_of_the_chart(
    cluster_wide_run: ScenarioRun, scenario_runs: dict[str, tuple[ScenarioRun, list[Manifest]]]
) -> None:
    rule: Rule = ("", "pods", "list")
    missing = not_allowed(cluster_wide_run, without_rule(chart_of(scenario_runs, CLUSTER_WIDE), rule))
    assert any(line.startswith(f"{rule} namespace {cluster_wide_run.namespace!r}") for line in missing), (
        missing
    )


def test_the_proof_notices_a_rule_the_operator_never_uses(
    runs: list[ScenarioRun], scenario_runs: dict[str, tuple[ScenarioRun, list[Manifest]]]
) -> None:
    rule: Rule = ("", "pods", "get")
    assert rule in unused_grants(with_rule(chart_of(scenario_runs, CLUSTER_WIDE), rule), runs)


def test_the_proof_notices_rules_granted_in_another_namespace(
    namespaced_run: ScenarioRun, modes: dict[str, Mode]
) -> None:
    mode = modes[NAMESPACED]
    elsewhere = render_chart(
        {"watchNamespaces": ["elsewhere"]}, release=mode.release, namespace=mode.release_namespace
    )
    missing = not_allowed(namespaced_run, elsewhere)
    assert any(
        line.startswith(f"{STATUS_PATCH} namespace {namespaced_run.namespace!r}") for line in missing
    ), missing


def test_without_the_finalizers_grant_the_server_forbids_every_child(
    control_plane: ControlPlane, kubelet_policies: Policies, helm: Path, tmp_path: Path
) -> None:
    """The grant no request uses, taken out of the applied Role on the real server: every child create
    is answered 403 by OwnerReferencesPermissionEnforcement. Put back, the same object goes Stable."""
    cp = control_plane
    mode = new_mode(NAMESPACED)
    prepare_namespace(cp, kubelet_policies, mode.workload_namespace)
    manifests = mode.render()
    install_chart(cp, mode, yaml.safe_dump_all(without_rule(manifests, FINALIZERS_UPDATE)), tmp_path)
    sa_namespace, sa_name = operator_service_account(manifests)
    creds = cp.service_account_token(sa_namespace, sa_name)
    since = cp.audit_position()
    with OperatorProcess(
        kubeconfig=cp.kubeconfig(creds, tmp_path / "operator.kubeconfig"),
        log=tmp_path / "operator.log",
        args=operator_args(manifests),
        resync_seconds=RESYNC_SECONDS,
    ) as operator:
        scenario = Scenario(cp, mode.workload_namespace, operator)
        scenario.apply(scenario.md("scorer"))

        def forbidden() -> list[dict[str, Any]]:
            return [e for e in cp.audit_events(since, user=creds.user) if code(e) == 403]

        denied = scenario.until("a child create answered 403", forbidden)
        message = denied[0]["responseStatus"]["message"]
        assert "cannot set blockOwnerDeletion" in message, message
        assert denied[0]["verb"] == "create", denied[0]  # children are created, never applied into being
        assert scenario.status("scorer").get("phase") != "Stable"

        (role,) = [
            r for r in find(manifests, "Role") if r["metadata"]["namespace"] == mode.workload_namespace
        ]
        cp.admin.apply(role)  # the chart's Role, finalizers grant included
        scenario.phase("scorer", "Stable")
    uninstall(cp, mode, manifests)


def test_the_chart_installs_with_kubectl_apply_as_rendered(
    scenario_runs: dict[str, tuple[ScenarioRun, list[Manifest]]], control_plane: ControlPlane
) -> None:
    """Every object of both renders is on the server (kubectl apply succeeded on each), and the chart's
    operator Deployment became available (its pod bound and made Ready by the kubelet stand-in)."""
    for mode, (_, manifests) in scenario_runs.items():
        counted = Counter(m["kind"] for m in manifests)
        assert counted["Deployment"] == 1, (mode, counted)
        for manifest in manifests:
            meta = manifest["metadata"]
            found = control_plane.admin.get(
                manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"]
            )
            assert found is not None, f"{mode}: {manifest['kind']}/{meta['name']} is not on the server"
        (deployment,) = find(manifests, "Deployment")
        namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]

        def available(
            namespace: str = namespace, name: str = name, want: int = deployment["spec"]["replicas"]
        ) -> bool:
            found = control_plane.admin.get("apps/v1", "Deployment", namespace, name) or {}
            return bool(found.get("status", {}).get("availableReplicas") == want)

        control_plane.admin.wait_for(
            available, timeout=STEP_TIMEOUT, what=f"the {mode} operator Deployment to be available"
        )
