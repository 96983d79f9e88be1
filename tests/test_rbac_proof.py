"""RBAC is proven, not guessed (issue 4, item 2).

The real operator (kopf and every modeldeploy handler) runs against the emulated API server and is
driven through every code path that talks to the API: a first deployment, spec changes that update and
prune children, a child deleted by hand, an invalid spec, Gateway API and Istio canaries promoted, a
canary rolled back at its progress deadline, an analysed canary judged by a real Prometheus, and the
resync loop. Five ModelDeployments play their parts side by side, so the scenario takes seconds.

It runs twice per module: cluster-wide, and namespaced (`--namespace ml`). The emulator records every
HTTP request it serves; the tests call the emulator directly (no HTTP) for their own moves, so every
request in the log is the operator's. Each request is turned into what the API server would authorize
(`helm_tools.request_attributes`, after k8s.io/apiserver's RequestInfoFactory), and compared both ways
with the rules the real `helm template` renders:
- everything the operator did is allowed, in the scope it did it (a ClusterRole for cluster-scoped and
  all-namespace requests, a rule that applies in the namespace otherwise);
- everything the chart grants was used at least once (or is allowlisted below, with the reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from helm_tools import (
    Manifest,
    RequestAttributes,
    Rule,
    find,
    rbac_rules,
    rbac_rules_by_scope,
    render_chart,
    request_attributes,
    require_helm,
    rules_in_namespace,
)
from modeldeploy.handlers.config import OperatorConfig
from modeldeploy.sim import APPLY_PATCH
from modeldeploy.sim.cluster import LocalCluster
from modeldeploy.sim.emulator import ApiRequest, ClusterEmulator
from prometheus_fixture import PrometheusServer, pod_target, require_prometheus
from triton_exporter import Traffic, TritonExporter

pytestmark = pytest.mark.integration

NS = "ml"
STORAGE_SECRET = "model-store-creds"
CLUSTER_WIDE, NAMESPACED = "cluster-wide", "namespaced"
NAMESPACED_VALUES = {"watchNamespaces": [NS]}
STEP_TIMEOUT = 25.0  # seconds for any one stage of the scenario; the whole of it takes far less

# The verbs an operator that writes only with server-side apply needs. `update` (PUT) is not among them.
ALLOWED_VERBS = frozenset({"get", "list", "watch", "create", "patch", "delete"})
STATUS_PATCH: Rule = ("modeldeploy.io", "modeldeployments/status", "patch")

# Grants the chart needs in a real cluster that the emulated scenario cannot exercise, with the reason.
# Keep this empty unless a reason is written down: every other grant must be earned by a request.
UNEXERCISED_GRANTS: dict[Rule, str] = {}


# ---------------------------------------------------------------------------------------------------
# What the API server authorizes for each recorded request


@dataclass(frozen=True)
class Permission:
    """One authorization check the API server makes for a request: a rule, in a scope."""

    attributes: RequestAttributes
    request: ApiRequest

    @property
    def rule(self) -> Rule:
        return self.attributes.rule

    @property
    def namespace(self) -> str | None:
        return self.attributes.namespace

    def describe(self) -> str:
        scope = f"namespace {self.namespace!r}" if self.namespace else "cluster-wide"
        query = "&".join(f"{k}={v}" for k, v in sorted(self.request.query.items()))
        example = f"{self.request.method} {self.request.path}" + (f"?{query}" if query else "")
        return f"{self.rule} {scope}, e.g. {example} (-> {self.request.status})"


def permissions(request: ApiRequest) -> list[Permission]:
    """What RBAC checks for one request; none for discovery (every client may read it).

    A server-side apply that creates its object is authorized twice: `patch` by the request filter,
    then `create` by the patch handler (k8s.io/apiserver endpoints/handlers/patch.go,
    createAuthorizerAttributes). The emulator answers such an apply with 201.
    """
    attributes = request_attributes(request.method, request.path, request.query)
    if attributes is None:
        return []
    found = [Permission(attributes, request)]
    if attributes.verb == "patch" and request.content_type == APPLY_PATCH and request.status == 201:
        found.append(Permission(replace(attributes, verb="create"), request))
    return found


@dataclass(frozen=True)
class ScenarioRun:
    """Every request the operator sent in one run of the scenario."""

    mode: str
    requests: tuple[ApiRequest, ...]
    seconds: float
    permissions: tuple[Permission, ...] = ()

    @classmethod
    def of(cls, mode: str, requests: Iterable[ApiRequest], seconds: float) -> ScenarioRun:
        recorded = tuple(requests)
        return cls(mode, recorded, seconds, tuple(p for r in recorded for p in permissions(r)))

    @property
    def rules(self) -> set[Rule]:
        return {p.rule for p in self.permissions}


def not_allowed(run: ScenarioRun, manifests: list[Manifest]) -> list[str]:
    """The run's permissions that the rendered chart does not grant in the scope where they were used."""
    granted: dict[str | None, set[Rule]] = {}
    missing: dict[tuple[Rule, str | None], Permission] = {}
    for permission in run.permissions:
        scope = permission.namespace
        if scope not in granted:
            granted[scope] = rules_in_namespace(manifests, scope)
        if permission.rule not in granted[scope]:
            missing.setdefault((permission.rule, scope), permission)
    return sorted(p.describe() for p in missing.values())


def unused_grants(manifests: list[Manifest], runs: Iterable[ScenarioRun]) -> list[Rule]:
    used: set[Rule] = set().union(*(run.rules for run in runs))
    return sorted(rbac_rules(manifests) - used - UNEXERCISED_GRANTS.keys())


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


# ---------------------------------------------------------------------------------------------------
# The scenario


def model_deployment(
    name: str,
    version: str = "1",
    *,
    scaling: dict[str, Any] | None = None,
    traffic: dict[str, Any] | None = None,
    rollout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {
            "name": name.replace("-", "_"),
            "version": version,
            "storageUri": f"s3://models/{name}/{version}",
            # A Secret is referenced, and exists: the operator must still never read it.
            "storageSecretRef": {"name": STORAGE_SECRET},
            # A config.pbtxt, so every revision gets a ConfigMap and a promotion prunes the old one.
            "config": {"maxBatchSize": 8},
        },
        "runtime": {"gpus": 1, "resources": {"requests": {"cpu": "1"}}},  # the HPA measures against it
        "scaling": scaling or {"minReplicas": 1, "maxReplicas": 1},
    }
    if traffic is not None:
        spec["traffic"] = traffic
    if rollout is not None:
        spec["rollout"] = rollout
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


# Rollouts gated by canary readiness and a 1 s interval only: no metrics, so no Prometheus needed.
QUICK_ROLLOUT = {
    "steps": [{"weight": 50}],
    "interval": "1s",
    "progressDeadline": "20s",
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
STUCK_CANARY = "stuck-canary"  # the one Deployment the kubelet below never makes ready
ANALYSED = "analysed"


class Scenario:
    """The moves, each a coroutine that waits until the operator has done what it should."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.emulator = cluster.emulator

    # ------------------------------------------------------------------------------------ helpers

    def status(self, name: str) -> dict[str, Any]:
        return self.cluster.status(NS, name)

    def get(self, group: str, version: str, plural: str, name: str) -> dict[str, Any] | None:
        return self.emulator.get_object(group, version, plural, NS, name)

    async def until(self, what: str, predicate: Callable[[], Any]) -> Any:
        return await self.cluster.wait_for(predicate, timeout=STEP_TIMEOUT, interval=0.05, what=what)

    async def phase(self, name: str, phase: str) -> dict[str, Any]:
        status: dict[str, Any] = await self.until(
            f"{name} to be {phase}", lambda: self.status(name).get("phase") == phase and self.status(name)
        )
        return status

    async def promoted(self, name: str, version: str) -> None:
        def done() -> bool:
            status = self.status(name)
            history = status.get("history") or [{}]
            return (
                status.get("phase") == "Stable"
                and status.get("stableModelVersion") == version
                and history[0].get("result") == "Promoted"
            )

        await self.until(f"{name} version {version} to be promoted", done)
        await self.until(
            f"{name}'s canary Deployment to be removed",
            lambda: self.get("apps", "v1", "deployments", f"{name}-canary") is None,
        )

    async def kubelet(self) -> None:
        """Every Deployment becomes ready soon after it asks for pods, except the stuck canary."""
        while True:
            for deployment in self.emulator.list_objects("apps", "v1", "deployments", NS):
                name = deployment["metadata"]["name"]
                if name != STUCK_CANARY:
                    with contextlib.suppress(KeyError):  # deleted meanwhile
                        self.emulator.mark_deployment_ready(NS, name)
            await asyncio.sleep(0.1)

    # -------------------------------------------------------------------------------------- moves

    async def lifecycle(self) -> None:
        """First deployment; a spec change that updates a child, one that prunes it; a child deleted
        by hand; an invalid spec (an Event); the spec fixed."""
        name = "life"
        hpa = ("autoscaling", "v2", "horizontalpodautoscalers", name)
        self.cluster.apply(model_deployment(name, scaling={"minReplicas": 1, "maxReplicas": 3}))
        await self.phase(name, "Stable")

        self.cluster.apply(model_deployment(name, scaling={"minReplicas": 1, "maxReplicas": 5}))
        await self.until(
            "the HPA to follow the spec",
            lambda: (self.get(*hpa) or {}).get("spec", {}).get("maxReplicas") == 5,
        )

        fixed = model_deployment(name, scaling={"minReplicas": 2, "maxReplicas": 2})
        self.cluster.apply(fixed)
        await self.until("the HPA to be pruned", lambda: self.get(*hpa) is None)

        self.emulator.delete_object("", "v1", "services", NS, name)
        await self.until("the Service to be restored", lambda: self.get("", "v1", "services", name))

        invalid = copy.deepcopy(fixed)
        invalid["spec"]["runtime"]["gpus"] = "two"
        self.cluster.apply(invalid)
        await self.until(
            f"{name} to be Degraded with InvalidSpec",
            lambda: any(
                c.get("type") == "Degraded" and c.get("reason") == "InvalidSpec"
                for c in self.status(name).get("conditions") or []
            ),
        )
        await self.until(
            "an InvalidSpec event",
            lambda: any(
                event.get("reason") == "InvalidSpec"
                for event in self.emulator.list_objects("", "v1", "events", NS)
            ),
        )
        self.cluster.apply(fixed)
        await self.phase(name, "Stable")

    async def gateway_rollout(self) -> None:
        """A Gateway API canary (HTTPRoute and GRPCRoute) to promotion; then the router removed."""
        name = "gw"
        self.cluster.apply(model_deployment(name, "1", traffic=GATEWAY, rollout=QUICK_ROLLOUT))
        await self.phase(name, "Stable")
        assert self.get("gateway.networking.k8s.io", "v1", "grpcroutes", f"{name}-grpc") is not None
        self.cluster.apply(model_deployment(name, "2", traffic=GATEWAY, rollout=QUICK_ROLLOUT))
        await self.promoted(name, "2")
        self.cluster.apply(model_deployment(name, "2", rollout=QUICK_ROLLOUT))
        await self.until(
            "the routes to be pruned",
            lambda: (
                self.get("gateway.networking.k8s.io", "v1", "httproutes", name) is None
                and self.get("gateway.networking.k8s.io", "v1", "grpcroutes", f"{name}-grpc") is None
            ),
        )

    async def istio_rollout(self) -> None:
        """An Istio canary (VirtualService) to promotion; then the router removed."""
        name = "mesh"
        self.cluster.apply(model_deployment(name, "1", traffic=ISTIO, rollout=QUICK_ROLLOUT))
        await self.phase(name, "Stable")
        self.cluster.apply(model_deployment(name, "2", traffic=ISTIO, rollout=QUICK_ROLLOUT))
        await self.promoted(name, "2")
        self.cluster.apply(model_deployment(name, "2", rollout=QUICK_ROLLOUT))
        await self.until(
            "the VirtualService to be pruned",
            lambda: self.get("networking.istio.io", "v1", "virtualservices", name) is None,
        )

    async def rollback_at_deadline(self) -> None:
        """A canary that never becomes ready: the operator lists its pods, then rolls it back."""
        name = "stuck"
        rollout = {**QUICK_ROLLOUT, "progressDeadline": "2s"}
        self.cluster.apply(model_deployment(name, "1", rollout=rollout))
        await self.phase(name, "Stable")
        self.cluster.apply(model_deployment(name, "2", rollout=rollout))
        status = await self.phase(name, "RolledBack")
        assert status["history"][0]["result"] == "RolledBack"
        degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
        assert degraded["reason"] == "ModelLoadTimeout", degraded

    async def analysed_rollout(self) -> None:
        """A canary judged by the real Prometheus (success rate) at two steps, then promoted."""
        name = ANALYSED
        rollout = {
            "steps": [{"weight": 25}, {"weight": 50}],
            "interval": "2s",
            "failureThreshold": 2,
            "progressDeadline": "20s",
            "analysis": {
                "minSampleCount": 10,
                "metrics": [{"name": "success-rate", "template": "successRate", "min": 0.9}],
            },
        }
        self.cluster.apply(model_deployment(name, "1", rollout=rollout))
        await self.phase(name, "Stable")
        self.cluster.apply(model_deployment(name, "2", rollout=rollout))
        await self.until(
            "a passing success-rate check from Prometheus",
            lambda: any(
                result.get("name") == "success-rate" and result.get("verdict") == "Pass"
                for result in self.status(name).get("analysis") or []
            ),
        )
        await self.promoted(name, "2")

    async def resync(self) -> None:
        """The periodic resync lists ModelDeployments with the operator's own client (not kopf's)."""
        await self.until(
            "a resync pass",
            lambda: any(
                r.resource == "modeldeployments"
                and r.verb == "list"
                and not (r.user_agent or "").startswith("kopf")
                for r in self.emulator.request_log
            ),
        )


async def run_scenario(mode: str, config: OperatorConfig) -> ScenarioRun:
    emulator = ClusterEmulator()
    emulator.declare_builtin_resources()
    emulator.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    emulator.put_object(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": STORAGE_SECRET, "namespace": NS},
            "stringData": {"AWS_ACCESS_KEY_ID": "not-a-real-key"},
        }
    )
    started = time.monotonic()
    async with LocalCluster(config=config, emulator=emulator) as cluster:
        scenario = Scenario(cluster)
        kubelet = asyncio.create_task(scenario.kubelet())
        try:
            await asyncio.gather(
                scenario.lifecycle(),
                scenario.gateway_rollout(),
                scenario.istio_rollout(),
                scenario.rollback_at_deadline(),
                scenario.analysed_rollout(),
                scenario.resync(),
            )
        finally:
            kubelet.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await kubelet
    return ScenarioRun.of(mode, emulator.request_log, time.monotonic() - started)


# ---------------------------------------------------------------------------------------------------
# Fixtures: helm, a real Prometheus, and one run of the scenario per mode


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_helm()


@pytest.fixture(scope="module")
def default_chart(helm: Path) -> list[Manifest]:
    return render_chart({})


@pytest.fixture(scope="module")
def namespaced_chart(helm: Path) -> list[Manifest]:
    return render_chart(NAMESPACED_VALUES)


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    """Prometheus scraping Triton-format metrics of a healthy primary and canary of `analysed`."""
    require_prometheus()
    with (
        TritonExporter(ANALYSED, traffic=Traffic(rate=80, latency_ms=20)) as primary,
        TritonExporter(ANALYSED, traffic=Traffic(rate=40, latency_ms=20)) as canary,
    ):
        targets = [
            pod_target(primary.address, namespace=NS, name=ANALYSED, track="primary"),
            pod_target(canary.address, namespace=NS, name=ANALYSED, track="canary"),
        ]
        with PrometheusServer(targets) as server:
            yield server


def operator_config(prometheus: PrometheusServer, namespaces: tuple[str, ...] = ()) -> OperatorConfig:
    return OperatorConfig(namespaces=namespaces, resync_seconds=1.0, prometheus_url=prometheus.url)


@pytest.fixture(scope="module")
def cluster_wide_run(prometheus: PrometheusServer) -> ScenarioRun:
    return asyncio.run(run_scenario(CLUSTER_WIDE, operator_config(prometheus)))


@pytest.fixture(scope="module")
def namespaced_run(prometheus: PrometheusServer) -> ScenarioRun:
    return asyncio.run(run_scenario(NAMESPACED, operator_config(prometheus, namespaces=(NS,))))


@pytest.fixture(scope="module")
def runs(cluster_wide_run: ScenarioRun, namespaced_run: ScenarioRun) -> list[ScenarioRun]:
    print(f"\nAPI verbs the operator used:\n{verb_table([cluster_wide_run, namespaced_run])}")
    return [cluster_wide_run, namespaced_run]


# ---------------------------------------------------------------------------------------------------
# The scenario really went everywhere


# What each move must have made the operator do, as (what, group, resource, verb, how it was sent).
EXPECTED_CALLS = [
    ("read its objects", "modeldeploy.io", "modeldeployments", "get", None),
    ("write status", "modeldeploy.io", "modeldeployments/status", "patch", None),
    ("create a child with server-side apply", "apps", "deployments", "create", APPLY_PATCH),
    ("update a child", "autoscaling", "horizontalpodautoscalers", "patch", APPLY_PATCH),
    ("prune a child (HPA off)", "autoscaling", "horizontalpodautoscalers", "delete", None),
    ("restore a Service deleted by hand", "", "services", "create", APPLY_PATCH),
    ("remove a promoted canary", "apps", "deployments", "delete", None),
    ("prune the old revision's config", "", "configmaps", "delete", None),
    ("prune track Services when routing goes", "", "services", "delete", None),
    ("post an Event", "", "events", "create", None),
    ("route with Gateway API (HTTP)", "gateway.networking.k8s.io", "httproutes", "create", APPLY_PATCH),
    ("route with Gateway API (gRPC)", "gateway.networking.k8s.io", "grpcroutes", "create", APPLY_PATCH),
    ("route with Istio", "networking.istio.io", "virtualservices", "create", APPLY_PATCH),
    ("shift canary weight", "networking.istio.io", "virtualservices", "patch", APPLY_PATCH),
    ("prune an HTTPRoute", "gateway.networking.k8s.io", "httproutes", "delete", None),
    ("prune a GRPCRoute", "gateway.networking.k8s.io", "grpcroutes", "delete", None),
    ("prune a VirtualService", "networking.istio.io", "virtualservices", "delete", None),
    ("scrape config for analysis", "monitoring.coreos.com", "podmonitors", "create", APPLY_PATCH),
    ("diagnose a canary that is not ready", "", "pods", "list", None),
    ("check which optional CRDs exist", "apiextensions.k8s.io", "customresourcedefinitions", "get", None),
]


@pytest.mark.parametrize("mode", [CLUSTER_WIDE, NAMESPACED])
def test_the_scenario_reached_every_code_path_that_talks_to_the_api(
    mode: str, runs: list[ScenarioRun]
) -> None:
    (run,) = [r for r in runs if r.mode == mode]
    missed = [
        what
        for what, group, resource, verb, content_type in EXPECTED_CALLS
        if not any(
            p.rule == (group, resource, verb)
            and (content_type is None or p.request.content_type == content_type)
            for p in run.permissions
        )
    ]
    assert not missed, f"{mode}: the scenario never made the operator {missed}"
    print(f"\n{mode} scenario: {len(run.requests)} requests in {run.seconds:.1f}s")


# ---------------------------------------------------------------------------------------------------
# Both ways: everything used is granted, everything granted is used


def test_the_default_chart_allows_everything_the_operator_did_in_the_right_scope(
    cluster_wide_run: ScenarioRun, default_chart: list[Manifest]
) -> None:
    missing = not_allowed(cluster_wide_run, default_chart)
    assert not missing, "the default chart does not grant:\n" + "\n".join(missing)


@pytest.mark.parametrize("chart", ["default", "namespaced"])
def test_the_chart_grants_nothing_the_operator_never_used(
    chart: str,
    runs: list[ScenarioRun],
    default_chart: list[Manifest],
    namespaced_chart: list[Manifest],
) -> None:
    manifests = default_chart if chart == "default" else namespaced_chart
    unused = unused_grants(manifests, runs)
    assert not unused, (
        f"the {chart} chart grants rules the operator never used in either run (drop them, or allowlist "
        "them in UNEXERCISED_GRANTS with the reason):\n"
        + "\n".join(map(str, unused))
        + f"\n\nwhat the operator did use:\n{verb_table(runs)}"
    )


def test_the_namespaced_chart_allows_everything_the_namespaced_operator_did(
    namespaced_run: ScenarioRun, namespaced_chart: list[Manifest]
) -> None:
    missing = not_allowed(namespaced_run, namespaced_chart)
    assert not missing, f"watchNamespaces: [{NS}] does not grant:\n" + "\n".join(missing)


def test_the_namespaced_operator_used_nothing_cluster_wide_beyond_the_small_cluster_role(
    namespaced_run: ScenarioRun, namespaced_chart: list[Manifest]
) -> None:
    cluster_role = rbac_rules_by_scope(namespaced_chart)[None]
    beyond: dict[Rule, Permission] = {}
    for permission in namespaced_run.permissions:
        if permission.namespace is None and permission.rule not in cluster_role:
            beyond.setdefault(permission.rule, permission)
    assert not beyond, (
        "cluster-wide requests of the namespaced operator, not in its ClusterRole:\n"
        + "\n".join(p.describe() for p in beyond.values())
    )
    # ...and it stayed in its own namespace.
    elsewhere = {p.namespace for p in namespaced_run.permissions if p.namespace not in (None, NS)}
    assert not elsewhere, f"the namespaced operator reached into {elsewhere}"


# ---------------------------------------------------------------------------------------------------
# What the operator must never do


def test_the_operator_never_reads_or_writes_secrets(runs: list[ScenarioRun]) -> None:
    touched = [p.describe() for run in runs for p in run.permissions if p.rule[1].startswith("secrets")]
    assert not touched, touched


def test_the_operator_writes_model_deployments_only_through_status(runs: list[ScenarioRun]) -> None:
    writes = [
        (run.mode, p)
        for run in runs
        for p in run.permissions
        if p.rule[0] == "modeldeploy.io" and p.rule[2] not in ("get", "list", "watch")
    ]
    assert writes, "no status write seen at all: the scenario did not run"
    wrong = [f"{mode}: {p.describe()}" for mode, p in writes if p.rule != STATUS_PATCH]
    assert not wrong, "writes to a ModelDeployment other than a status patch:\n" + "\n".join(wrong)


def test_the_operator_uses_no_verb_beyond_get_list_watch_create_patch_delete(
    runs: list[ScenarioRun],
) -> None:
    odd = sorted(
        {
            f"{run.mode}: {p.describe()}"
            for run in runs
            for p in run.permissions
            if p.rule[2] not in ALLOWED_VERBS
        }
    )
    assert not odd, "verbs the operator should not need (update would need RBAC the chart omits):\n" + (
        "\n".join(odd)
    )


# ---------------------------------------------------------------------------------------------------
# The proof itself


def test_the_emulator_and_the_rbac_request_parser_agree(runs: list[ScenarioRun]) -> None:
    """The emulator's verb (what it served) and request_attributes (what RBAC checks) match."""
    disagree = []
    for run in runs:
        for request in run.requests:
            attributes = request_attributes(request.method, request.path, request.query)
            ours = None if attributes is None else (attributes.group, attributes.resource, attributes.verb)
            theirs = (
                None if request.verb is None else (request.group or "", request.rbac_resource, request.verb)
            )
            if ours != theirs:
                disagree.append(f"{request.method} {request.path}: {ours} != {theirs}")
    assert not disagree, "\n".join(sorted(set(disagree)))


def without_rule(manifests: list[Manifest], rule: Rule) -> list[Manifest]:
    """The rendered chart with one (group, resource, verb) taken out of every role."""
    group, resource, verb = rule
    edited = copy.deepcopy(manifests)
    for role in find(edited, "ClusterRole") + find(edited, "Role"):
        for entry in role.get("rules", []):
            if group in entry.get("apiGroups", []) and resource in entry.get("resources", []):
                entry["verbs"] = [v for v in entry["verbs"] if v != verb]
    return edited


def with_rule(manifests: list[Manifest], rule: Rule) -> list[Manifest]:
    """The rendered chart with one more (group, resource, verb) in the operator's ClusterRole."""
    group, resource, verb = rule
    edited = copy.deepcopy(manifests)
    (binding,) = find(edited, "ClusterRoleBinding")
    (role,) = find(edited, "ClusterRole", binding["roleRef"]["name"])
    role["rules"].append({"apiGroups": [group], "resources": [resource], "verbs": [verb]})
    return edited


def test_the_proof_notices_a_rule_taken_out_of_the_chart(
    cluster_wide_run: ScenarioRun, default_chart: list[Manifest]
) -> None:
    rule: Rule = ("", "pods", "list")
    missing = not_allowed(cluster_wide_run, without_rule(default_chart, rule))
    assert any(line.startswith(f"{rule} namespace {NS!r}") for line in missing), missing


def test_the_proof_notices_a_rule_the_operator_never_uses(
    runs: list[ScenarioRun], default_chart: list[Manifest]
) -> None:
    rule: Rule = ("", "pods", "get")
    assert rule in unused_grants(with_rule(default_chart, rule), runs)


def test_the_proof_notices_rules_granted_in_another_namespace(
    namespaced_run: ScenarioRun, helm: Path
) -> None:
    elsewhere = render_chart({"watchNamespaces": ["elsewhere"]})
    missing = not_allowed(namespaced_run, elsewhere)
    assert any(line.startswith(f"{STATUS_PATCH} namespace {NS!r}") for line in missing), missing
