"""The Helm chart, checked with the real helm binary: lint, template, official schemas, pod security,
RBAC, NetworkPolicy and values.schema.json.

helm comes from `make tools` (scripts/install-tools.sh, into .tools/bin). Without it these tests skip
on a developer machine and fail under CI=true, so CI can never pass by not running them.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from helm_tools import (
    CHART_DIR,
    RELEASE_NAMESPACE,
    REPO_ROOT,
    Manifest,
    Rule,
    crd_schema,
    find,
    install_notes,
    notes_people_rules,
    notes_rbac_by_scope,
    notes_readable_kinds,
    rbac_rules,
    rbac_rules_by_scope,
    render_chart,
    require_helm,
    rules_in_namespace,
    run_helm,
    template,
)
from validation import SCHEMA_VERSIONS, THIRD_PARTY_CRDS, missing_third_party_crds

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion), the test control plane's minor
# and the newest schema available: the same as the golden manifests.
KUBERNETES_VERSIONS = list(SCHEMA_VERSIONS)
DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.fixture(scope="session")
def helm() -> Path:
    return require_helm()


# Tests that run helm; the rest (the checkers themselves, the schema through jsonschema) run anywhere.
needs_helm = pytest.mark.usefixtures("helm")


# Values that each switch on a different part of the chart. Every case is linted, rendered, validated
# against the official schemas and checked for pod security, RBAC wildcards and NetworkPolicy holes.
VALUE_CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "digest": {"image": {"tag": "0.2.0", "digest": DIGEST, "pullPolicy": "Always"}},
    "service-monitor": {
        "metrics": {
            "serviceMonitor": {
                "enabled": True,
                "namespace": "monitoring",
                "labels": {"release": "prometheus"},
                "interval": "15s",
                "scrapeTimeout": "5s",
                "relabelings": [{"action": "replace", "targetLabel": "cluster", "replacement": "prod"}],
                "metricRelabelings": [
                    {"action": "drop", "sourceLabels": ["__name__"], "regex": "python_gc_.*"}
                ],
            }
        }
    },
    "custom-resources": {
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": 2, "memory": "1Gi"}},
        "tmpSizeLimit": "128Mi",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "node-role", "operator": "In", "values": ["ops"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "system-cluster-critical",
        "podLabels": {"team": "ml-platform"},
        "podAnnotations": {"example.com/owner": "ml-platform"},
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"annotations": {"example.com/role": "modeldeploy"}},
        "extraArgs": ["--verbose"],
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "logFormat": "text",
        "resyncSeconds": 300,
        "livenessProbe": {
            "initialDelaySeconds": 30,
            "periodSeconds": 30,
            "timeoutSeconds": 3,
            "failureThreshold": 5,
        },
    },
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "network-policy-tight": {
        "networkPolicy": {
            "metricsFrom": [],
            "healthFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
            "apiServer": {"cidrs": ["172.20.0.10/32", "fd00::1/128"], "ports": [6443]},
            "prometheus": {"to": [{"ipBlock": {"cidr": "192.168.10.0/24"}}], "ports": [9090, 10902]},
            "extraEgress": [{"to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}], "ports": [{"port": 8000}]}],
            "extraIngress": [{"from": [{"podSelector": {"matchLabels": {"app": "debug"}}}]}],
        }
    },
    "minimal": {
        "serviceAccount": {"create": False, "name": "existing-operator-sa"},
        "rbac": {"aggregateToDefaultRoles": False},
        "networkPolicy": {"enabled": False},
        "podDisruptionBudget": {"enabled": False},
        "metrics": {"service": {"enabled": False}},
        "prometheusUrl": "",
    },
    "stopped": {"replicaCount": 0, "podDisruptionBudget": {"maxUnavailable": "100%"}},
    "single-replica": {"replicaCount": 1, "leaderElection": {"enabled": False}},
}
CASE_IDS = list(VALUE_CASES)


def values_yaml() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    return loaded


def values_schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
    return loaded


@pytest.fixture(scope="module", params=CASE_IDS)
def case(request: pytest.FixtureRequest, helm: Path) -> tuple[str, dict[str, Any], list[Manifest]]:
    values = VALUE_CASES[request.param]
    return request.param, values, render_chart(values)


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, dict[str, Any]]]:
    for m in manifests:
        if m["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield m["metadata"]["name"], m["spec"]["template"]["spec"]
        elif m["kind"] == "Pod":
            yield m["metadata"]["name"], m["spec"]


def operator_deployment(manifests: list[Manifest]) -> Manifest:
    (deployment,) = find(manifests, "Deployment")
    return deployment


def operator_container(manifests: list[Manifest]) -> dict[str, Any]:
    (container,) = operator_deployment(manifests)["spec"]["template"]["spec"]["containers"]
    return dict(container)


# ---------------------------------------------------------------------------------------------------
# helm lint and the official schemas


@needs_helm
@pytest.mark.parametrize("name", CASE_IDS)
def test_helm_lint_strict(name: str, tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(VALUE_CASES[name]))
    proc = run_helm("lint", "--strict", str(CHART_DIR), "--values", str(values_file), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_match_official_schemas(
    case: tuple[str, dict[str, Any], list[Manifest]], version: str
) -> None:
    _, _, manifests = case
    checked: set[str] = set()
    for m in manifests:
        if m["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD kind: checked against the upstream CRD below
        kubernetes_validate.validate(m, version, strict=True)
        checked.add(m["kind"])
    assert "Deployment" in checked


@needs_helm
def test_service_monitor_matches_prometheus_operator_crd() -> None:
    manifests = render_chart(VALUE_CASES["service-monitor"])
    (monitor,) = find(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    if not THIRD_PARTY_CRDS.is_dir():
        missing_third_party_crds()
    schema = crd_schema(THIRD_PARTY_CRDS / "prometheus-operator.servicemonitors.yaml", "v1")
    jsonschema.Draft7Validator(schema).validate(monitor)
    # And the strict schema really is strict: an unknown field is rejected.
    broken = copy.deepcopy(monitor)
    broken["spec"]["endpoints"][0]["scrapeEvery"] = "15s"
    with pytest.raises(jsonschema.ValidationError, match="scrapeEvery"):
        jsonschema.Draft7Validator(schema).validate(broken)


@needs_helm
def test_service_monitor_scrapes_the_metrics_service() -> None:
    manifests = render_chart(VALUE_CASES["service-monitor"])
    (monitor,) = find(manifests, "ServiceMonitor")
    (service,) = find(manifests, "Service")
    spec = monitor["spec"]
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert spec["namespaceSelector"] == {"matchNames": [RELEASE_NAMESPACE]}
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert (endpoint["path"], endpoint["interval"], endpoint["scrapeTimeout"]) == ("/metrics", "15s", "5s")
    assert endpoint["metricRelabelings"][0]["regex"] == "python_gc_.*"


@needs_helm
def test_service_monitor_is_off_by_default() -> None:
    assert find(render_chart({}), "ServiceMonitor") == []


@needs_helm
def test_chart_crds_render_and_validate() -> None:
    crds = find(render_chart({}, include_crds=True), "CustomResourceDefinition")
    assert crds, "charts/modeldeploy/crds/ holds no CRD"
    for crd in crds:
        kubernetes_validate.validate(crd, KUBERNETES_VERSIONS[-1], strict=True)


def test_chart_crds_are_identical_to_generated_crds() -> None:
    generated = {p.name: p.read_text() for p in sorted((REPO_ROOT / "crds").glob("*.yaml"))}
    shipped = {p.name: p.read_text() for p in sorted((CHART_DIR / "crds").glob("*.yaml"))}
    assert "modeldeploy.io_modeldeployments.yaml" in generated, "run `make crd` to generate crds/"
    fix = "fix: cp crds/*.yaml charts/modeldeploy/crds/"
    assert sorted(shipped) == sorted(generated), fix
    for name, text in generated.items():
        diff = "".join(
            difflib.unified_diff(
                text.splitlines(True), shipped[name].splitlines(True), f"crds/{name}", f"chart/crds/{name}"
            )
        )
        assert not diff, f"{fix}\n{diff}"


# ---------------------------------------------------------------------------------------------------
# Pod security: the "restricted" Pod Security Standard, field by field


# Volume types the restricted profile allows.
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Every way `pod` breaks the restricted Pod Security Standard (empty list: compliant)."""
    found: list[str] = []
    psc = pod.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"{field} is true")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f"volume {volume['name']} is of type {sorted(kinds)}")
    if psc.get("runAsUser") == 0:
        found.append("pod runAsUser is 0")
    for sysctl in psc.get("sysctls", []):
        found.append(f"pod sets sysctl {sysctl['name']}")
    containers = pod.get("initContainers", []) + pod.get("containers", [])
    for c in containers:
        csc = c.get("securityContext", {})
        where = f"container {c['name']}"
        if csc.get("privileged"):
            found.append(f"{where} is privileged")
        if csc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where} does not set allowPrivilegeEscalation: false")
        caps = csc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            found.append(f"{where} does not drop ALL capabilities")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{where} adds capabilities {caps['add']}")
        if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            found.append(f"{where} does not run as non-root")
        if csc.get("runAsUser", psc.get("runAsUser")) == 0:
            found.append(f"{where} runs as uid 0")
        seccomp = csc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where} has seccomp profile {seccomp}")
        if csc.get("procMount", "Default") != "Default":
            found.append(f"{where} sets procMount")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                found.append(f"{where} uses hostPort {port['hostPort']}")
    return found


def test_pods_meet_the_restricted_profile(case: tuple[str, dict[str, Any], list[Manifest]]) -> None:
    _, _, manifests = case
    specs = list(pod_specs(manifests))
    assert specs
    for name, pod in specs:
        assert restricted_violations(pod) == [], name


def test_operator_pod_security_fields(case: tuple[str, dict[str, Any], list[Manifest]]) -> None:
    _, _, manifests = case
    pod = operator_deployment(manifests)["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in pod
    assert "hostPID" not in pod
    assert "hostIPC" not in pod
    assert pod["automountServiceAccountToken"] is True
    (container,) = pod["containers"]
    csc = container["securityContext"]
    assert csc["runAsNonRoot"] is True
    assert csc["runAsUser"] == 10001
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["privileged"] is False
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    # /tmp is the only writable path, and it is an emptyDir with a size limit.
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    (tmp,) = pod["volumes"]
    assert tmp["name"] == "tmp"
    assert set(tmp["emptyDir"]) == {"sizeLimit"}
    # The ServiceAccount (when the chart makes it) does not hand its token to other pods.
    for sa in find(manifests, "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


COMPLIANT_POD: dict[str, Any] = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [
        {
            "name": "c",
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }
    ],
    "volumes": [{"name": "tmp", "emptyDir": {}}],
}


def _mutate(path: str, value: Any) -> dict[str, Any]:
    pod = copy.deepcopy(COMPLIANT_POD)
    node: Any = pod
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    node[keys[-1]] = value
    return pod


@pytest.mark.parametrize(
    ("pod", "violation"),
    [
        pytest.param(_mutate("hostNetwork", True), "hostNetwork", id="host-network"),
        pytest.param(
            _mutate("volumes", [{"name": "h", "hostPath": {"path": "/"}}]), "hostPath", id="host-path"
        ),
        pytest.param(_mutate("securityContext.runAsNonRoot", False), "non-root", id="root-allowed"),
        pytest.param(_mutate("containers.0.securityContext.privileged", True), "privileged", id="privileged"),
        pytest.param(
            _mutate("containers.0.securityContext.allowPrivilegeEscalation", True),
            "allowPrivilegeEscalation",
            id="privilege-escalation",
        ),
        pytest.param(_mutate("containers.0.securityContext.capabilities", {}), "drop ALL", id="caps-kept"),
        pytest.param(
            _mutate("containers.0.securityContext.capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
            "adds capabilities",
            id="caps-added",
        ),
        pytest.param(
            _mutate("securityContext.seccompProfile", {"type": "Unconfined"}), "seccomp", id="seccomp-off"
        ),
        pytest.param(
            _mutate("containers.0.ports", [{"containerPort": 80, "hostPort": 80}]), "hostPort", id="host-port"
        ),
    ],
)
def test_restricted_check_catches_violations(pod: dict[str, Any], violation: str) -> None:
    assert restricted_violations(COMPLIANT_POD) == []
    found = restricted_violations(pod)
    assert any(violation in v for v in found), found


# ---------------------------------------------------------------------------------------------------
# The operator Deployment


def test_replicas_and_leader_election(case: tuple[str, dict[str, Any], list[Manifest]]) -> None:
    _name, values, manifests = case
    spec = operator_deployment(manifests)["spec"]
    electing = values.get("leaderElection", {}).get("enabled", True)
    args = spec["template"]["spec"]["containers"][0]["args"]
    leases = [
        m for m in manifests if m["kind"] == "Role" and m["metadata"]["name"].endswith("-leader-election")
    ]
    assert spec["replicas"] == values.get("replicaCount", 2)
    if electing:
        # Two replicas, one leader: a rolling update never has both reconciling.
        assert spec["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        }
        assert "--leader-elect" in args
        assert f"--leader-election-id={operator_deployment(manifests)['metadata']['name']}" in args
        assert len(leases) == 1
    else:
        assert spec["strategy"] == {"type": "Recreate"}
        assert "--leader-elect" not in args and not leases


def test_replicas_above_one_without_leader_election_are_refused() -> None:
    proc = template({"replicaCount": 2, "leaderElection": {"enabled": False}}, check=False)
    assert proc.returncode != 0
    assert "leaderElection/enabled" in proc.stderr or "leaderElection.enabled" in proc.stderr, proc.stderr


def test_lease_timings_that_do_not_fence_are_refused() -> None:
    proc = template({"leaderElection": {"renewDeadline": 20}}, check=False)
    assert proc.returncode != 0
    assert "retryPeriod < renewDeadline < leaseDuration" in proc.stderr, proc.stderr


@needs_helm
@pytest.mark.parametrize(
    ("values", "image"),
    [
        pytest.param({}, "ghcr.io/modeldeploy/modeldeploy-operator:0.1.0", id="app-version"),
        pytest.param({"image": {"tag": "0.2.0"}}, "ghcr.io/modeldeploy/modeldeploy-operator:0.2.0", id="tag"),
        pytest.param(
            {"image": {"tag": "0.2.0", "digest": DIGEST}},
            f"ghcr.io/modeldeploy/modeldeploy-operator@{DIGEST}",
            id="digest-wins",
        ),
        pytest.param(
            {"image": {"registry": "registry.example.com:5000", "repository": "ml/operator"}},
            "registry.example.com:5000/ml/operator:0.1.0",
            id="mirror",
        ),
    ],
)
def test_image_reference(values: dict[str, Any], image: str) -> None:
    assert operator_container(render_chart(values))["image"] == image


@needs_helm
@pytest.mark.parametrize(
    ("values", "flag"),
    [
        pytest.param({}, "--puller-image=ghcr.io/modeldeploy/model-puller:0.1.0", id="app-version"),
        pytest.param(
            {"modelPuller": {"image": {"tag": "0.2.0", "digest": DIGEST}}},
            f"--puller-image=ghcr.io/modeldeploy/model-puller@{DIGEST}",
            id="digest-wins",
        ),
    ],
)
def test_puller_image_reference(values: dict[str, Any], flag: str) -> None:
    assert flag in operator_container(render_chart(values))["args"]


DEFAULT_HA_ARGS = [
    "--kube-qps=100",
    "--kube-burst=200",
    "--leader-elect",
    f"--leader-election-namespace={RELEASE_NAMESPACE}",
    "--leader-election-id=modeldeploy",
    "--lease-duration=10",
    "--renew-deadline=7",
    "--retry-period=2",
]


@needs_helm
@pytest.mark.parametrize(
    ("values", "args"),
    [
        pytest.param(
            {},
            [
                "run",
                "--log-format=json",
                "--health-port=8080",
                "--metrics-port=9090",
                "--resync-seconds=60",
                "--puller-image=ghcr.io/modeldeploy/model-puller:0.1.0",
                *DEFAULT_HA_ARGS,
                "--prometheus-url=http://prometheus-operated.monitoring.svc:9090",
            ],
            id="defaults",
        ),
        pytest.param(
            {"watchNamespaces": ["team-a", "team-b"], "prometheusUrl": "", "extraArgs": ["--verbose"]},
            [
                "run",
                "--log-format=json",
                "--health-port=8080",
                "--metrics-port=9090",
                "--resync-seconds=60",
                "--puller-image=ghcr.io/modeldeploy/model-puller:0.1.0",
                *DEFAULT_HA_ARGS,
                "--namespace=team-a",
                "--namespace=team-b",
                "--verbose",
            ],
            id="namespaced",
        ),
        pytest.param(
            {"prometheusAllow": ["http://thanos-query.monitoring:9090/tenant-a", "*"]},
            [
                "run",
                "--log-format=json",
                "--health-port=8080",
                "--metrics-port=9090",
                "--resync-seconds=60",
                "--puller-image=ghcr.io/modeldeploy/model-puller:0.1.0",
                *DEFAULT_HA_ARGS,
                "--prometheus-url=http://prometheus-operated.monitoring.svc:9090",
                "--prometheus-allow=http://thanos-query.monitoring:9090/tenant-a",
                "--prometheus-allow=*",
            ],
            id="prometheus-allow",
        ),
    ],
)
def test_operator_args(values: dict[str, Any], args: list[str]) -> None:
    assert operator_container(render_chart(values))["args"] == args


@needs_helm
def test_probes_and_ports() -> None:
    manifests = render_chart({"healthPort": 8081, "metricsPort": 9091})
    container = operator_container(manifests)
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"health": 8081, "metrics": 9091}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "--health-port=8081" in container["args"]
    assert "--metrics-port=9091" in container["args"]


def test_selectors_match_the_operator_pod(case: tuple[str, dict[str, Any], list[Manifest]]) -> None:
    _, _, manifests = case
    deployment = operator_deployment(manifests)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert "helm.sh/chart" not in pod_labels  # a chart-only upgrade must not restart the operator
    for pdb in find(manifests, "PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    for service in find(manifests, "Service"):
        assert service["spec"]["selector"].items() <= pod_labels.items()
    for policy in find(manifests, "NetworkPolicy"):
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_every_namespaced_object_is_in_the_release_namespace(
    case: tuple[str, dict[str, Any], list[Manifest]],
) -> None:
    _, values, manifests = case
    watched = set(values.get("watchNamespaces", []))
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    for m in manifests:
        if m["kind"] in cluster_scoped:
            assert "namespace" not in m["metadata"]
        elif m["kind"] in ("Role", "RoleBinding"):
            # Each watched namespace's rules, and the leader-election Lease's in the release's own.
            lease = m["metadata"]["name"].endswith("-leader-election")
            assert (
                m["metadata"]["namespace"] == RELEASE_NAMESPACE
                if lease
                else m["metadata"]["namespace"] in watched
            )
        elif m["kind"] == "ServiceMonitor":
            continue  # may live in Prometheus's namespace (see the service-monitor case)
        else:
            assert m["metadata"]["namespace"] == RELEASE_NAMESPACE, m["kind"]


@needs_helm
def test_pod_disruption_budget_never_blocks_drains_by_default() -> None:
    (pdb,) = find(render_chart({}), "PodDisruptionBudget")
    assert pdb["spec"] == {**pdb["spec"], "maxUnavailable": 1}
    assert "minAvailable" not in pdb["spec"]


# ---------------------------------------------------------------------------------------------------
# RBAC

# Children kopf watches (a change wakes their owner); children only the resync repairs; the PodMonitor,
# which is always wanted while its CRD exists, so never deleted. No get: the operator reads children by list.
WATCHED_CHILD_VERBS = ("list", "watch", "create", "patch", "delete")
ROUTE_VERBS = WATCHED_CHILD_VERBS
NAMESPACED_RULES: set[Rule] = {
    ("modeldeploy.io", "modeldeployments", "get"),
    ("modeldeploy.io", "modeldeployments", "list"),
    ("modeldeploy.io", "modeldeployments", "watch"),
    ("modeldeploy.io", "modeldeployments/status", "patch"),
    # Checked by OwnerReferencesPermissionEnforcement on each child create (blockOwnerDeletion).
    ("modeldeploy.io", "modeldeployments/finalizers", "update"),
    *(
        (group, resource, verb)
        for group, resource in [
            ("apps", "deployments"),
            ("", "services"),
            ("autoscaling", "horizontalpodautoscalers"),
            ("networking.k8s.io", "networkpolicies"),
        ]
        for verb in WATCHED_CHILD_VERBS
    ),
    *(
        (group, resource, verb)
        for group, resource in [
            ("gateway.networking.k8s.io", "httproutes"),
            ("gateway.networking.k8s.io", "grpcroutes"),
            ("networking.istio.io", "virtualservices"),
            ("monitoring.coreos.com", "prometheusrules"),
        ]
        for verb in ROUTE_VERBS
    ),
    ("monitoring.coreos.com", "podmonitors", "list"),
    ("monitoring.coreos.com", "podmonitors", "watch"),
    ("monitoring.coreos.com", "podmonitors", "create"),
    ("monitoring.coreos.com", "podmonitors", "patch"),
    ("", "pods", "list"),
    # A gate's golden set: the user's ConfigMap, read by name (spec.rollout.gates.goldenSet). Nothing
    # else on ConfigMaps: the operator writes none (the model config rides in the pod template).
    ("", "configmaps", "get"),
    ("", "events", "create"),
}
CRD_RULES: set[Rule] = {
    ("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("get", "list", "watch")
}
NAMESPACE_RULES: set[Rule] = {("", "namespaces", "list"), ("", "namespaces", "watch")}
# Leader election, in the release's namespace only (get and update limited to the Lease's name).
LEASE_RULES: set[Rule] = {("coordination.k8s.io", "leases", v) for v in ("create", "get", "update")}


def test_no_rbac_rule_has_a_wildcard(case: tuple[str, dict[str, Any], list[Manifest]]) -> None:
    _, _, manifests = case
    roles = find(manifests, "ClusterRole") + find(manifests, "Role")
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                for item in rule.get(field, []):
                    assert "*" not in item, f"{role['kind']} {role['metadata']['name']}: {field} {item}"


@needs_helm
def test_cluster_mode_rbac_is_exact() -> None:
    manifests = render_chart({})
    scopes = rbac_rules_by_scope(manifests)
    assert scopes == {None: NAMESPACED_RULES | CRD_RULES, RELEASE_NAMESPACE: LEASE_RULES}
    assert [r["metadata"]["name"] for r in find(manifests, "Role")] == ["modeldeploy-leader-election"]
    lease_rules = find(manifests, "Role")[0]["rules"]
    assert [r.get("resourceNames") for r in lease_rules] == [None, ["modeldeploy"]]
    assert [r["metadata"]["name"] for r in find(manifests, "RoleBinding")] == ["modeldeploy-leader-election"]


@needs_helm
def test_namespaced_mode_rbac_is_exact() -> None:
    manifests = render_chart(VALUE_CASES["namespaced"])
    assert rbac_rules_by_scope(manifests) == {
        None: CRD_RULES | NAMESPACE_RULES,
        "team-a": NAMESPACED_RULES,
        "team-b": NAMESPACED_RULES,
        RELEASE_NAMESPACE: LEASE_RULES,
    }
    assert rules_in_namespace(manifests, "team-a") == NAMESPACED_RULES | CRD_RULES | NAMESPACE_RULES
    assert rules_in_namespace(manifests, "elsewhere") == CRD_RULES | NAMESPACE_RULES


def test_operator_never_gets_secrets(case: tuple[str, dict[str, Any], list[Manifest]]) -> None:
    _, values, manifests = case
    if not values.get("rbac", {}).get("create", True):
        return
    assert not {r for r in rbac_rules(manifests) if r[1].startswith("secrets")}
    assert not {r for r in rbac_rules(manifests) if r[1] in ("pods/exec", "serviceaccounts/token")}


@needs_helm
def test_rbac_binds_the_operator_service_account() -> None:
    manifests = render_chart(VALUE_CASES["minimal"])
    assert find(manifests, "ServiceAccount") == []
    pod = operator_deployment(manifests)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "existing-operator-sa"
    assert rbac_rules(manifests) == NAMESPACED_RULES | CRD_RULES | LEASE_RULES


@needs_helm
def test_rbac_can_be_left_to_the_user() -> None:
    manifests = render_chart({"rbac": {"create": False}})
    kinds = {m["kind"] for m in manifests}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


@needs_helm
def test_user_facing_roles_aggregate_into_builtin_roles() -> None:
    manifests = render_chart({})
    edit, view = (
        find(manifests, "ClusterRole", "modeldeploy-edit"),
        find(manifests, "ClusterRole", "modeldeploy-view"),
    )
    assert edit
    assert view
    assert edit[0]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view[0]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    # They are bound to nobody: they add nothing to the operator.
    bound = {
        b["roleRef"]["name"] for b in find(manifests, "ClusterRoleBinding") + find(manifests, "RoleBinding")
    }
    assert "modeldeploy-edit" not in bound
    assert "modeldeploy-view" not in bound


# ---------------------------------------------------------------------------------------------------
# NetworkPolicy


@needs_helm
def test_network_policy_defaults() -> None:
    (policy,) = find(render_chart({}), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = spec["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert ingress["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    api, dns, prometheus, triton = spec["egress"]
    assert "to" not in api
    assert [p["port"] for p in api["ports"]] == [443, 6443]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert prometheus["ports"] == [{"port": 9090, "protocol": "TCP"}]
    # Model-quality gates ask the Triton pods on their HTTP port, in any namespace.
    assert triton["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert triton["to"] == [
        {
            "namespaceSelector": {},
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "triton-inference-server",
                    "app.kubernetes.io/part-of": "modeldeploy",
                }
            },
        }
    ]


@needs_helm
def test_network_policy_tight() -> None:
    (policy,) = find(render_chart(VALUE_CASES["network-policy-tight"]), "NetworkPolicy")
    spec = policy["spec"]
    health, extra = spec["ingress"]  # no metrics rule: metricsFrom is empty
    assert health["ports"] == [{"port": "health", "protocol": "TCP"}]
    assert extra["from"][0]["podSelector"]["matchLabels"] == {"app": "debug"}
    api = spec["egress"][0]
    assert api["to"] == [{"ipBlock": {"cidr": "172.20.0.10/32"}}, {"ipBlock": {"cidr": "fd00::1/128"}}]
    assert api["ports"] == [{"port": 6443, "protocol": "TCP"}]
    assert spec["egress"][-1]["ports"] == [{"port": 8000}]


@needs_helm
def test_network_policy_with_no_sources_denies_all_ingress() -> None:
    values = {
        "networkPolicy": {
            "metricsFrom": [],
            "healthFrom": [],
            "dns": {"to": []},
            "prometheus": {"to": []},
            "triton": {"to": []},
        }
    }
    (policy,) = find(render_chart(values), "NetworkPolicy")
    assert "ingress" not in policy["spec"]
    assert "Ingress" in policy["spec"]["policyTypes"]
    assert len(policy["spec"]["egress"]) == 1  # only the API server


def test_network_policy_rules_never_match_everyone(case: tuple[str, dict[str, Any], list[Manifest]]) -> None:
    """A rule with no peers matches every peer. Only the API server rule may do that (on its ports),
    because NetworkPolicy cannot name the API server."""
    _, _, manifests = case
    for policy in find(manifests, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), rule
        open_egress = [rule for rule in policy["spec"]["egress"] if not rule.get("to")]
        for rule in open_egress:
            assert {p["port"] for p in rule["ports"]} <= {443, 6443}, rule


# ---------------------------------------------------------------------------------------------------
# values.yaml and values.schema.json


def test_default_values_pass_the_schema() -> None:
    schema = values_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(values_yaml())


def test_every_value_is_documented() -> None:
    """Each key in values.yaml (outside example list items) has a comment on the line(s) just above."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    undocumented: list[str] = []
    list_item_indent: int | None = None
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if not stripped or stripped.startswith("#"):
            continue
        if list_item_indent is not None and indent > list_item_indent:
            continue  # inside a default list item: data, not a setting
        list_item_indent = None
        if stripped.startswith("- "):
            list_item_indent = indent
            continue
        if re.match(r"^[A-Za-z0-9_.-]+:", stripped):
            previous = lines[i - 1].strip() if i else ""
            if not previous.startswith("#"):
                undocumented.append(f"line {i + 1}: {stripped}")
    assert undocumented == []


def test_schema_covers_every_default_value() -> None:
    """additionalProperties false everywhere we own the keys: every default is known to the schema."""

    def walk(value: Any, schema: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and "properties" in schema:
            assert schema.get("additionalProperties") is False, path
            for key, sub in value.items():
                assert key in schema["properties"], f"{path}/{key}"
                walk(sub, schema["properties"][key], f"{path}/{key}")

    walk(values_yaml(), values_schema(), "")


# Bad values: each must make `helm template` fail with a message that names the field.
BAD_VALUES: list[Any] = [
    pytest.param(
        {"replicaCount": 2, "leaderElection": {"enabled": False}},
        "/leaderElection/enabled",
        id="two-no-election",
    ),
    pytest.param({"replicaCount": -1}, "/replicaCount", id="replicas-negative"),
    pytest.param({"kubeApi": {"burst": 0}}, "/kubeApi/burst", id="burst-zero"),
    pytest.param({"replicaCount": "1"}, "/replicaCount", id="replicas-string"),
    pytest.param({"replicas": 1}, "replicas", id="unknown-top-level-key"),
    pytest.param({"image": {"sha": "abc"}}, "sha", id="unknown-nested-key"),
    pytest.param({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", id="pull-policy-enum"),
    pytest.param({"image": {"digest": "abc123"}}, "/image/digest", id="digest-pattern"),
    pytest.param({"image": {"tag": 1.2}}, "/image/tag", id="tag-number"),
    pytest.param(
        {"modelPuller": {"image": {"digest": "latest"}}}, "/modelPuller/image/digest", id="puller-digest"
    ),
    pytest.param({"logFormat": "xml"}, "/logFormat", id="log-format-enum"),
    pytest.param({"watchNamespaces": "team-a,team-b"}, "/watchNamespaces", id="namespaces-not-a-list"),
    pytest.param({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0", id="namespace-name"),
    pytest.param({"watchNamespaces": ["a", "a"]}, "/watchNamespaces", id="namespaces-repeated"),
    pytest.param({"healthPort": 80}, "/healthPort", id="privileged-port"),
    pytest.param({"metricsPort": "9090"}, "/metricsPort", id="port-string"),
    pytest.param({"resyncSeconds": 0}, "/resyncSeconds", id="resync-zero"),
    pytest.param({"prometheusUrl": "prometheus:9090"}, "/prometheusUrl", id="prometheus-url-scheme"),
    pytest.param({"prometheusAllow": "http://thanos"}, "/prometheusAllow", id="prometheus-allow-not-a-list"),
    pytest.param({"prometheusAllow": ["thanos:9090"]}, "/prometheusAllow/0", id="prometheus-allow-scheme"),
    pytest.param(
        {"prometheusAllow": ["http://u:p@thanos"]}, "/prometheusAllow/0", id="prometheus-allow-credentials"
    ),
    pytest.param({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory", id="quantity"),
    pytest.param({"resources": {"request": {"cpu": "1"}}}, "request", id="resources-typo"),
    pytest.param({"rbac": {"create": "yes"}}, "/rbac/create", id="bool-string"),
    pytest.param({"podLabels": {"app.kubernetes.io/name": "x"}}, "/podLabels", id="pod-label-override"),
    pytest.param(
        {"podDisruptionBudget": {"maxUnavailable": "one"}}, "/podDisruptionBudget/maxUnavailable", id="pdb"
    ),
    pytest.param({"livenessProbe": {"periodSeconds": 0}}, "/livenessProbe/periodSeconds", id="probe-period"),
    pytest.param(
        {"networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1"]}}},
        "/networkPolicy/apiServer/cidrs/0",
        id="cidr",
    ),
    pytest.param(
        {"networkPolicy": {"apiServer": {"ports": []}}}, "/networkPolicy/apiServer/ports", id="no-api-ports"
    ),
    pytest.param(
        {"metrics": {"serviceMonitor": {"interval": "30 seconds"}}},
        "/metrics/serviceMonitor/interval",
        id="duration",
    ),
    pytest.param(
        {"metrics": {"serviceMonitor": {"enabled": 1}}}, "/metrics/serviceMonitor/enabled", id="bool-int"
    ),
]


@needs_helm
@pytest.mark.parametrize(("values", "field"), BAD_VALUES)
def test_schema_rejects_bad_values(values: dict[str, Any], field: str) -> None:
    proc = template(values, check=False)
    assert proc.returncode != 0, f"helm accepted {values}"
    assert "schema" in proc.stderr, proc.stderr
    assert field in proc.stderr, proc.stderr


@pytest.mark.parametrize(("values", "field"), BAD_VALUES)
def test_schema_rejects_bad_values_in_python_too(values: dict[str, Any], field: str) -> None:
    """The same cases through jsonschema, on the merged values, so a change of helm's validator cannot
    hide a hole in the schema."""
    merged = _merge(values_yaml(), values)
    errors = list(jsonschema.Draft7Validator(values_schema()).iter_errors(merged))
    assert errors, f"schema accepted {values}"


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@needs_helm
@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param(
            {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
            "metrics.serviceMonitor.enabled needs metrics.service.enabled",
            id="monitor-without-service",
        ),
        pytest.param({"metricsPort": 8080}, "healthPort and metricsPort must differ", id="same-ports"),
        pytest.param(
            {"serviceAccount": {"create": False}},
            "serviceAccount.name is required",
            id="existing-sa-unnamed",
        ),
    ],
)
def test_template_rejects_inconsistent_values(values: dict[str, Any], message: str) -> None:
    proc = template(values, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


@needs_helm
def test_notes_render_for_both_modes() -> None:
    cluster = run_helm("install", "t", str(CHART_DIR), "--dry-run=client", "-n", "ops").stdout
    assert "in every namespace" in cluster
    assert "kubectl apply --server-side --force-conflicts" in cluster
    namespaced = run_helm(
        "install", "t", str(CHART_DIR), "--dry-run=client", "-n", "ops", "--set", "watchNamespaces={a,b}"
    ).stdout
    assert "It watches ModelDeployments in: a, b." in namespaced

    # Each mode says what it granted; the default one says it is every namespace, kube-system included.
    assert "Cluster-wide, IN EVERY NAMESPACE, kube-system included, a ClusterRole:" in cluster
    assert "In a, b only, a Role each:" in namespaced
    # The open API server egress is said out loud, and goes away once the CIDRs are set.
    assert "may connect to ANY address on TCP 443, 6443" in cluster
    pinned = run_helm(
        "install", "t", str(CHART_DIR), "--dry-run=client", "-n", "ops",
        "--set", "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
    ).stdout  # fmt: skip
    assert "may connect to ANY address" not in pinned.split("NOTES:", 1)[1]
    no_rbac = run_helm(
        "install", "t", str(CHART_DIR), "--dry-run=client", "-n", "ops", "--set", "rbac.create=false"
    ).stdout
    assert "the chart granted nothing" in no_rbac


@needs_helm
@pytest.mark.parametrize(
    "values",
    [
        pytest.param({}, id="cluster-wide"),
        pytest.param({"watchNamespaces": ["a", "b"]}, id="namespaced"),
        pytest.param({"leaderElection": {"enabled": False}, "replicaCount": 1}, id="no-leader-election"),
        pytest.param({"watchNamespaces": ["a"], "fullnameOverride": "md"}, id="renamed"),
    ],
)
def test_notes_list_exactly_the_rules_the_chart_grants(values: dict[str, Any]) -> None:
    """NOTES.txt is printed from the same rule templates the Roles are made of: what it lists, by
    scope, is exactly what `helm template` binds to the ServiceAccount, reads included (issue 18:
    the notes once named the writes on ConfigMaps and not the cluster-wide read)."""
    notes = install_notes(values)
    granted = rbac_rules_by_scope(render_chart(values))
    assert notes_rbac_by_scope(notes) == {scope: rules for scope, rules in granted.items() if rules}
    namespaced = granted[values["watchNamespaces"][0]] if values.get("watchNamespaces") else granted[None]
    readable = {
        f"{resource}.{group}" if group else resource
        for group, resource, verb in namespaced
        if verb in ("get", "list", "watch")
        and "/" not in resource
        and resource != "customresourcedefinitions"
    }
    assert set(notes_readable_kinds(notes)) == readable
    assert "configmaps" in readable  # the read the notes must not leave out
    if values.get("watchNamespaces"):
        assert "in the cluster, kube-system included" not in notes
    else:
        assert "IN EVERY NAMESPACE, kube-system included" in notes
        assert "every object of these kinds in the cluster, kube-system included" in notes
    assert "No rule names Secrets." in notes
    assert not any(resource == "secrets" for rules in granted.values() for _, resource, _ in rules)
    # The roles for people the chart aggregates into admin, edit and view are listed too.
    manifests = render_chart(values)
    aggregated = {
        label: set().union(
            *(
                _rules_of(role)
                for role in find(manifests, "ClusterRole")
                if role["metadata"]["labels"].get(f"rbac.authorization.k8s.io/aggregate-to-{label}") == "true"
            )
        )
        for label in ("edit", "view")
    }
    assert notes_people_rules(notes) == {"admin and edit": aggregated["edit"], "view": aggregated["view"]}


def _rules_of(role: Manifest) -> set[Rule]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@needs_helm
def test_notes_leave_out_the_people_roles_the_chart_does_not_make() -> None:
    assert notes_people_rules(install_notes({"rbac": {"aggregateToDefaultRoles": False}})) == {}


def security_doc_rbac_rows() -> set[Rule]:
    """The operator's rules as docs/security.md's RBAC table states them."""
    text = (REPO_ROOT / "docs" / "security.md").read_text()
    table = text.split("## RBAC", 1)[1].split("\n\n", 2)[2].split("\n\n", 1)[0]
    rules: set[Rule] = set()
    for line in table.splitlines()[2:]:  # skip the header and its rule
        group, resources, verbs = (cell.strip() for cell in line.strip("|").split("|")[:3])
        group = "" if '""' in group else group.strip("`")
        for resource in resources.split(","):
            for verb in verbs.split(","):
                rules.add((group, resource.strip().strip("`"), verb.strip()))
    return rules


@needs_helm
def test_security_doc_rbac_table_matches_the_chart() -> None:
    assert security_doc_rbac_rows() == rbac_rules(render_chart({}))
