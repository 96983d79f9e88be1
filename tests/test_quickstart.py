"""The README's Helm quick start, followed on a cluster like a fresh kind one (issue 18).

A control plane of its own, as kind starts it: no CRD but the ones the chart installs (no Gateway
API, Istio or Prometheus Operator), no prometheus-adapter or metrics-server, one node that
advertises CPU and memory and no GPU. On it, the quick start's commands with the real tools:

    helm install modeldeploy charts/modeldeploy -n modeldeploy-system --create-namespace
        (here `helm template --include-crds` with the same values, applied with kubectl)
    kubectl create namespace ml
    kubectl apply -f examples/cpu-onnx-https.yaml

The operator runs as a process with the chart's arguments and its ServiceAccount's token, the kubelet
stand-in schedules pods on that node the way the scheduler would (a pod asking for nvidia.com/gpu
stays Pending, Unschedulable, with the scheduler's message). The example must reach Stable.

Then, on the same cluster, what the operator says when a ModelDeployment needs what it lacks
(rollout/prerequisites.py): the Prerequisites condition, with a reason naming it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import require_assets
from helm_tools import REPO_ROOT, TOOLS_BIN, Manifest, find, operator_service_account, require_helm, template
from testbed.controlplane import ADMIN_USER, ControlPlane, Credentials
from testbed.kubeapi import KubeApi
from testbed.kubelet import Kubelet, fits_node
from testbed.operator_process import OperatorProcess

pytestmark = pytest.mark.real_api  # on a control plane of its own, not the session's

MD = ("modeldeploy.io/v1alpha1", "ModelDeployment")
RELEASE, RELEASE_NAMESPACE, NAMESPACE = "modeldeploy", "modeldeploy-system", "ml"
EXAMPLE = REPO_ROOT / "examples" / "cpu-onnx-https.yaml"
# A kind node: CPU, memory and pods, no nvidia.com/gpu (no device plugin, no GPU).
NODE_ALLOCATABLE = {"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}
TIMEOUT = 120.0  # any one wait; generous under load, never a measurement


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    binary = TOOLS_BIN / "kubectl"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `make tools`")
    proc = subprocess.run(
        [str(binary), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"kubectl {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def chart_args(manifests: list[Manifest]) -> list[str]:
    """The chart's container arguments, but for those OperatorProcess sets itself (ports, log format,
    resync period)."""
    (deployment,) = find(manifests, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args: list[str] = container["args"]
    assert args[0] == "run", args
    own = ("--health-port=", "--metrics-port=", "--log-format=", "--resync-seconds=")
    return [a for a in args[1:] if not a.startswith(own)]


@dataclass
class KindLike:
    cp: ControlPlane
    admin: Path  # the admin's kubeconfig, as a user of kind has it
    operator: OperatorProcess
    node: dict[str, str]  # what the node advertises; the stand-in scheduler reads it at every pod

    @property
    def api(self) -> KubeApi:
        return self.cp.admin

    def status(self, name: str) -> dict[str, Any]:
        return (self.api.get(*MD, NAMESPACE, name) or {}).get("status") or {}

    def wait(self, what: str, predicate: Any) -> Any:
        try:
            return self.api.wait_for(predicate, timeout=TIMEOUT, what=what)
        except TimeoutError as error:
            raise AssertionError(f"{error}; operator log (tail):\n{self.operator.tail()}") from None

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        return next((c for c in self.status(name).get("conditions") or [] if c.get("type") == type_), None)


@pytest.fixture(scope="module")
def kind_like(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindLike]:
    assets = require_assets()
    require_helm()
    workdir = tmp_path_factory.mktemp("quickstart")
    (workdir / "cp").mkdir()
    with ControlPlane(assets=assets, workdir=workdir / "cp") as cp:
        admin_creds = Credentials(user=ADMIN_USER, token=cp.admin_token)
        admin = cp.kubeconfig(admin_creds, workdir / "admin.kubeconfig")
        # helm install ... -n modeldeploy-system --create-namespace, with no --set: the quick start's values.
        rendered = template({}, include_crds=True, release=RELEASE, namespace=RELEASE_NAMESPACE).stdout
        manifests: list[Manifest] = [doc for doc in yaml.safe_load_all(rendered) if doc]
        kubectl(admin, "create", "namespace", RELEASE_NAMESPACE)
        kubectl(admin, "apply", "-f", "-", stdin=rendered)
        kubectl(admin, "wait", "--for=condition=Established", "crd/modeldeployments.modeldeploy.io")
        kubectl(admin, "create", "namespace", NAMESPACE)
        sa_namespace, sa_name = operator_service_account(manifests)
        creds = cp.service_account_token(sa_namespace, sa_name)
        node = dict(NODE_ALLOCATABLE)
        with (
            Kubelet(cp.admin, fits_node(node), allocatable=node),
            OperatorProcess(
                kubeconfig=cp.kubeconfig(creds, workdir / "operator.kubeconfig"),
                log=workdir / "operator.log",
                args=chart_args(manifests),
                resync_seconds=2,
            ) as operator,
        ):
            yield KindLike(cp, admin, operator, node)


def test_the_quick_start_example_reaches_stable_on_a_cluster_without_gpus(kind_like: KindLike) -> None:
    kubectl(kind_like.admin, "apply", "-f", str(EXAMPLE))
    name = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]
    status = kind_like.wait(
        f"{name} to reach Stable", lambda: (s := kind_like.status(name)).get("phase") == "Stable" and s
    )
    assert status["readyReplicas"] == 2, status
    ready = kind_like.condition(name, "Ready")
    assert ready is not None and ready["status"] == "True", status
    assert kind_like.condition(name, "Prerequisites") is None, "nothing the example needs is missing"
    api = kind_like.api
    # What the example needs and a kind cluster has: no HPA (nothing needs metrics-server or
    # prometheus-adapter), no GPU limit, no Secret, no PodMonitor or route (their CRDs are absent).
    assert api.list("autoscaling/v2", "HorizontalPodAutoscaler", NAMESPACE) == []
    deployment = api.get("apps/v1", "Deployment", NAMESPACE, f"{name}-primary")
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    limits = [c.get("resources", {}).get("limits", {}) for c in pod["containers"]]
    assert not any(key.startswith("nvidia.com/") for lim in limits for key in lim), limits
    assert "secret" not in yaml.safe_dump(pod.get("volumes") or []).lower()
    assert "Traceback" not in kind_like.operator.tail(20000)


GPU_MD = "scorer-gpu"


def model_deployment(name: str, **spec: Any) -> str:
    body = {
        "apiVersion": "/".join(MD[:1]),
        "kind": MD[1],
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": "m", "version": "1", "storageUri": "https://models.example.com/m.tar.gz"},
            "scaling": {"minReplicas": 1, "maxReplicas": 1},
            **spec,
        },
    }
    return yaml.safe_dump(body)


@pytest.mark.parametrize(
    ("name", "spec", "reason", "words"),
    [
        pytest.param(
            GPU_MD,
            {},  # runtime.gpus defaults to 1
            "GPUResourceUnavailable",
            ["1 Insufficient nvidia.com/gpu", "device plugin or the GPU Operator"],
            id="gpu-on-a-node-without-gpus",
        ),
        pytest.param(
            "scorer-mig",
            {"runtime": {"gpus": 1, "gpuResource": "nvidia.com/mig-1g.10gb"}},
            "MIGResourceUnavailable",
            ["Insufficient nvidia.com/mig-1g.10gb", "mixed MIG strategy"],
            id="mig-profile-on-a-node-without-gpus",
        ),
        pytest.param(
            "scorer-gateway",
            {"runtime": {"gpus": 0}, "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}},
            "GatewayAPIMissing",
            ["the HTTPRoute CRD (gateway.networking.k8s.io/v1) is not installed"],
            id="gateway-api-not-installed",
        ),
        pytest.param(
            "scorer-istio",
            {"runtime": {"gpus": 0}, "traffic": {"istio": {"hosts": ["m.example.com"]}}},
            "IstioMissing",
            ["the VirtualService CRD (networking.istio.io/v1) is not installed"],
            id="istio-not-installed",
        ),
        pytest.param(
            "scorer-alerts",
            {"runtime": {"gpus": 0}, "alerts": {"labels": {"team": "payments"}}},
            "PrometheusOperatorMissing",
            ["the PrometheusRule CRD (monitoring.coreos.com/v1) is not installed", "no alerts are created"],
            id="alerts-without-the-prometheus-operator",
        ),
    ],
)
def test_the_status_names_what_the_cluster_lacks(
    kind_like: KindLike, name: str, spec: dict[str, Any], reason: str, words: list[str]
) -> None:
    started = time.monotonic()
    kubectl(kind_like.admin, "apply", "-f", "-", stdin=model_deployment(name, **spec))
    condition = kind_like.wait(
        f"{name}: Prerequisites False",
        lambda: (c := kind_like.condition(name, "Prerequisites")) and c["status"] == "False" and c,
    )
    print(f"{name}: Prerequisites False {time.monotonic() - started:.1f} s after kubectl apply")
    assert condition["reason"] == reason, condition
    for word in words:
        assert word in condition["message"], condition
    assert "docs/install.md" in condition["message"]
    # `kubectl describe` shows it; and the phase message says why a GPU pod waits.
    described = kubectl(kind_like.admin, "describe", "mdep", name, "-n", NAMESPACE)
    assert reason in described
    if reason.endswith("ResourceUnavailable"):
        status = kind_like.status(name)
        assert status.get("phase") == "Progressing", status
        assert "Insufficient nvidia.com/" in status["message"], status


def test_the_condition_turns_true_once_the_gpus_are_there(kind_like: KindLike) -> None:
    """The device plugin comes up: the node advertises nvidia.com/gpu, the scheduler places the
    pending pod (deleted here, so that the stand-in schedules its replacement), and the condition
    says the cluster has what the spec needs."""
    api = kind_like.api
    if kind_like.condition(GPU_MD, "Prerequisites") is None:
        kubectl(kind_like.admin, "apply", "-f", "-", stdin=model_deployment(GPU_MD))
        kind_like.wait(f"{GPU_MD}: Prerequisites", lambda: kind_like.condition(GPU_MD, "Prerequisites"))
    kind_like.node["nvidia.com/gpu"] = "1"
    started = time.monotonic()
    for pod in api.list("v1", "Pod", NAMESPACE, f"modeldeploy.io/name={GPU_MD}"):
        api.delete("v1", "Pod", NAMESPACE, pod["metadata"]["name"])
    condition = kind_like.wait(
        f"{GPU_MD}: Prerequisites True",
        lambda: (c := kind_like.condition(GPU_MD, "Prerequisites")) and c["status"] == "True" and c,
    )
    assert condition["reason"] == "Met", condition
    print(f"{GPU_MD}: Prerequisites True {time.monotonic() - started:.1f} s after the pod was replaced")
    kind_like.wait(f"{GPU_MD} Stable", lambda: kind_like.status(GPU_MD).get("phase") == "Stable")
