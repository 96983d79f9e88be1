"""modeldeploy end to end, on a real cluster (kind or k3d), CPU-only Triton. See docs/e2e.md.

One story, in order; a failed step skips the rest (e2e/conftest.py):
1. the Helm chart installs the operator built from this checkout;
2. a ModelDeployment of the generated ONNX model (version 1) goes Stable, and the model answers
   through the Gateway API route, queried with tritonclient, with the right numbers;
3. version 2 is rolled out under load: the canary gets traffic, passes analysis and is Promoted;
   afterwards every answer is version 2's;
4. version 3, which loads but fails every inference, is rolled out under load: the success-rate
   analysis fails and it is RolledBack; afterwards every answer is version 2's again.
Teardown deletes the ModelDeployment and uninstalls the release (unless --keep).

Prerequisites come from e2e/setup-kind.sh: Envoy Gateway with the Gateway gateway/inference-gateway,
kube-prometheus-stack in "monitoring", the images loaded, Triton's image pulled, the namespace.
"""

from __future__ import annotations

import contextlib
import json
import random
import select
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

import make_model

pytestmark = pytest.mark.e2e_step

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "modeldeploy"
RELEASE = "modeldeploy"
OPERATOR_NAMESPACE = "modeldeploy-system"
NAME = "simple"  # the ModelDeployment, and the Triton model
GROUP, VERSION, PLURAL = "modeldeploy.io", "v1alpha1", "modeldeployments"
GATEWAY_NAME, GATEWAY_NAMESPACE = "inference-gateway", "gateway"
ENVOY_NAMESPACE = "envoy-gateway-system"

# Generous, explicit budgets. Triton's first start includes loading its backends; a rollout is
# canary start + 2 steps x 1m analysis + promotion, with room for a slow laptop.
HELM_TIMEOUT = "10m"
MODEL_STORE_TIMEOUT = 300.0
STABLE_TIMEOUT = 900.0
ROLLOUT_TIMEOUT = 1500.0
ROUTE_TIMEOUT = 240.0
POLL_SECONDS = 5.0
LOAD_RPS = 10.0  # enough requests per analysis interval for minSampleCount, little enough for a laptop

T = TypeVar("T")


# ------------------------------------------------------------------------------------- plumbing


@dataclass(frozen=True)
class Options:
    kubeconfig: str
    namespace: str
    operator_image: str
    puller_image: str
    keep: bool


@dataclass
class Kube:
    api: Any
    core: Any
    apps: Any
    batch: Any
    custom: Any
    extensions: Any


def split_image(image: str) -> tuple[str, str, str]:
    """ghcr.io/org/name:tag -> (ghcr.io, org/name, tag), the chart's image.* values."""
    name, _, tag = image.rpartition(":")
    if "/" in tag or not name:
        raise ValueError(f"image {image!r} needs an explicit tag")
    registry, _, repository = name.partition("/")
    return registry, repository, tag


def wait_for(check: Callable[[], T | None], timeout: float, what: str, describe: Callable[[], str]) -> T:
    """Poll check() until it returns something truthy; on timeout, fail with describe()'s view."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{describe()}")
        time.sleep(POLL_SECONDS)


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(ROOT / ".tools" / "bin"))
    if found is None:
        pytest.fail(f"{name} is not on PATH (nor in .tools/bin): the e2e suite needs it")
    return found


def run(cmd: list[str], timeout: float = 900.0) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


# ------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def opts(request: pytest.FixtureRequest) -> Options:
    config = request.config
    return Options(
        kubeconfig=str(config.getoption("--kubeconfig")),
        namespace=str(config.getoption("--e2e-namespace")),
        operator_image=str(config.getoption("--operator-image")),
        puller_image=str(config.getoption("--puller-image")),
        keep=bool(config.getoption("--keep")),
    )


@pytest.fixture(scope="module")
def kube(opts: Options) -> Iterator[Kube]:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=opts.kubeconfig)  # type: ignore[no-untyped-call]
    try:
        yield Kube(
            api=api,
            core=client.CoreV1Api(api),
            apps=client.AppsV1Api(api),
            batch=client.BatchV1Api(api),
            custom=client.CustomObjectsApi(api),
            extensions=client.ApiextensionsV1Api(api),
        )
    finally:
        api.close()


def not_found(exc: Exception) -> bool:
    return getattr(exc, "status", None) == 404


@pytest.fixture(scope="module")
def prerequisites(kube: Kube, opts: Options) -> None:
    """What setup-kind.sh provides; a clear failure instead of a timeout when something is missing."""
    hint = "run e2e/setup-kind.sh (docs/e2e.md)"
    for crd in ("gateways.gateway.networking.k8s.io", "httproutes.gateway.networking.k8s.io",
                "podmonitors.monitoring.coreos.com"):  # fmt: skip
        try:
            kube.extensions.read_custom_resource_definition(crd)
        except Exception as exc:
            if not_found(exc):
                pytest.fail(f"CRD {crd} is not installed: {hint}")
            raise
    try:
        kube.core.read_namespace(opts.namespace)
    except Exception as exc:
        if not_found(exc):
            pytest.fail(f"namespace {opts.namespace} does not exist: {hint}")
        raise
    gateway = kube.custom.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", GATEWAY_NAMESPACE, "gateways", GATEWAY_NAME
    )
    conditions = {c["type"]: c["status"] for c in gateway.get("status", {}).get("conditions", [])}
    if conditions.get("Programmed") != "True":
        pytest.fail(f"Gateway {GATEWAY_NAMESPACE}/{GATEWAY_NAME} is not Programmed ({conditions}): {hint}")


@pytest.fixture(scope="module")
def operator_release(kube: Kube, opts: Options, prerequisites: None) -> Iterator[None]:
    helm = tool("helm")
    registry, repository, tag = split_image(opts.operator_image)
    p_registry, p_repository, p_tag = split_image(opts.puller_image)
    values = {
        "image.registry": registry,
        "image.repository": repository,
        "image.tag": tag,
        "image.pullPolicy": "IfNotPresent",  # loaded into the node by kind: never pulled
        "modelPuller.image.registry": p_registry,
        "modelPuller.image.repository": p_repository,
        "modelPuller.image.tag": p_tag,
    }
    cmd = [helm, "upgrade", "--install", RELEASE, str(CHART), "--kubeconfig", opts.kubeconfig,
           "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
           "--wait", "--timeout", HELM_TIMEOUT]  # fmt: skip
    for key, value in values.items():
        cmd += ["--set-string", f"{key}={value}"]
    run(cmd)
    try:
        yield
    finally:
        if not opts.keep:
            delete_model_deployment(kube, opts)
            # Helm leaves the CRDs (from the chart's crds/) in place, as it does for every chart.
            subprocess.run(
                [helm, "uninstall", RELEASE, "--kubeconfig", opts.kubeconfig,
                 "--namespace", OPERATOR_NAMESPACE, "--wait", "--timeout", "5m"],
                capture_output=True, timeout=400, check=False,
            )  # fmt: skip


@pytest.fixture(scope="module")
def model_store(kube: Kube, opts: Options) -> None:
    """The PVC model-store holding simple/v1, v2 and v3, unpacked by a Job from a ConfigMap."""
    try:
        import onnx  # noqa: F401 - make_model builds the models with it
    except ImportError:
        pytest.fail("the e2e suite needs the onnx package to build its model: pip install onnx (docs/e2e.md)")
    configmap, claim, job = make_model.seed_manifests(
        opts.namespace, opts.puller_image, make_model.store_archive()
    )
    ns = opts.namespace
    # Start from a clean seed: the archive may have changed since the last run.
    with contextlib.suppress(Exception):
        kube.batch.delete_namespaced_job(job["metadata"]["name"], ns, propagation_policy="Foreground")
    wait_for(
        lambda: not job_exists(kube, ns, job["metadata"]["name"]),
        120,
        "the previous seed Job to go",
        lambda: "",
    )
    with contextlib.suppress(Exception):
        kube.core.delete_namespaced_config_map(configmap["metadata"]["name"], ns)
    kube.core.create_namespaced_config_map(ns, configmap)
    try:
        kube.core.read_namespaced_persistent_volume_claim(claim["metadata"]["name"], ns)
    except Exception as exc:
        if not not_found(exc):
            raise
        kube.core.create_namespaced_persistent_volume_claim(ns, claim)
    kube.batch.create_namespaced_job(ns, job)

    def done() -> bool:
        status = kube.batch.read_namespaced_job_status(job["metadata"]["name"], ns).status
        if status.failed and status.failed > job["spec"]["backoffLimit"]:
            pytest.fail(f"the model store seed Job failed: {pod_summary(kube, ns)}")
        return bool(status.succeeded)

    wait_for(done, MODEL_STORE_TIMEOUT, "the model store seed Job", lambda: pod_summary(kube, ns))


def job_exists(kube: Kube, namespace: str, name: str) -> bool:
    try:
        kube.batch.read_namespaced_job(name, namespace)
    except Exception as exc:
        if not_found(exc):
            return False
        raise
    return True


class PortForward:
    """kubectl port-forward to the Envoy proxy of the Gateway; restarted if it dies."""

    def __init__(self, kubectl: str, kubeconfig: str, service: str) -> None:
        self._cmd = [kubectl, "--kubeconfig", kubeconfig, "-n", ENVOY_NAMESPACE, "port-forward",
                     "--address", "127.0.0.1", f"service/{service}", ":80"]  # fmt: skip
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._drainer: threading.Thread | None = None
        self._address = ""

    def address(self) -> str:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            return self._address

    def _start(self) -> None:
        self.close_locked()
        proc = subprocess.Popen(self._cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline()
                # "Forwarding from 127.0.0.1:40123 -> 10080"
                if line.startswith("Forwarding from 127.0.0.1:"):
                    self._proc = proc
                    self._address = line.split()[2]
                    self._drainer = threading.Thread(target=self._drain, args=(proc,), daemon=True)
                    self._drainer.start()
                    return
            if proc.poll() is not None:
                break
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        pytest.fail(f"kubectl port-forward to {self._cmd[-2]} did not start")

    @staticmethod
    def _drain(proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for _ in proc.stdout:  # keep the pipe from filling up
            pass

    def close_locked(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
            if self._drainer is not None:
                self._drainer.join(timeout=10)  # it ends at EOF, before the pipe is closed under it
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc, self._drainer = None, None

    def close(self) -> None:
        with self._lock:
            self.close_locked()


@pytest.fixture(scope="module")
def gateway(kube: Kube, opts: Options, prerequisites: None) -> Iterator[PortForward]:
    selector = (
        f"gateway.envoyproxy.io/owning-gateway-name={GATEWAY_NAME},"
        f"gateway.envoyproxy.io/owning-gateway-namespace={GATEWAY_NAMESPACE}"
    )
    services = kube.core.list_namespaced_service(ENVOY_NAMESPACE, label_selector=selector).items
    if len(services) != 1:
        pytest.fail(f"expected one Envoy Service for the Gateway ({selector}), found {len(services)}")
    forward = PortForward(tool("kubectl"), opts.kubeconfig, services[0].metadata.name)
    try:
        yield forward
    finally:
        forward.close()


# ------------------------------------------------------------------------ the ModelDeployment


def manifest(namespace: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "model": {
                "name": make_model.MODEL_NAME,
                "version": version,
                "storageUri": f"pvc://{make_model.CLAIM}/{make_model.MODEL_NAME}/v{version}",
                "backend": "onnxruntime",
                # Rendered into a ConfigMap and merged over the repository's config.pbtxt by the
                # puller: these fields win, the model's inputs and outputs stay.
                "config": {
                    "maxBatchSize": 8,
                    "dynamicBatching": {"maxQueueDelayMicroseconds": 1000},
                    "instanceGroups": [{"kind": "KIND_CPU", "count": 1}],
                },
            },
            "runtime": {
                "gpus": 0,
                "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
                "modelLoadTimeout": "5m",
            },
            "scaling": {"minReplicas": 1, "maxReplicas": 1},
            "traffic": {
                # HTTP only (no GRPCRoute): the suite queries Triton's HTTP port through the Gateway.
                "gatewayAPI": {"parentRefs": [{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}]}
            },
            "rollout": {
                "strategy": "Canary",
                "steps": [{"weight": 20}, {"weight": 50}],
                "interval": "1m",  # four 15s scrapes per rate() window
                "failureThreshold": 2,
                "progressDeadline": "10m",
                "analysis": {
                    "minSampleCount": 20,
                    "inconclusive": {"limit": 10, "action": "Hold"},
                    "metrics": [{"name": "success-rate", "template": "successRate", "min": 0.95}],
                },
            },
        },
    }


def validate_offline(body: dict[str, Any]) -> None:
    """Check the manifest against the operator's own models first: a clear error beats a timeout."""
    from modeldeploy.api.resource import parse_spec

    parse_spec(body["spec"])


def get_md(kube: Kube, opts: Options) -> dict[str, Any] | None:
    try:
        body: dict[str, Any] = kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, opts.namespace, PLURAL, NAME
        )
    except Exception as exc:
        if not_found(exc):
            return None
        raise
    return body


def apply_version(kube: Kube, opts: Options, version: str) -> None:
    body = manifest(opts.namespace, version)
    validate_offline(body)
    if get_md(kube, opts) is None:
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, opts.namespace, PLURAL, body)
    else:
        patch = {"spec": {"model": {k: body["spec"]["model"][k] for k in ("version", "storageUri")}}}
        kube.custom.patch_namespaced_custom_object(GROUP, VERSION, opts.namespace, PLURAL, NAME, patch)


def delete_model_deployment(kube: Kube, opts: Options) -> None:
    with contextlib.suppress(Exception):
        kube.custom.delete_namespaced_custom_object(GROUP, VERSION, opts.namespace, PLURAL, NAME)
    deadline = time.monotonic() + 180
    while get_md(kube, opts) is not None and time.monotonic() < deadline:
        time.sleep(2)


def pod_summary(kube: Kube, namespace: str) -> str:
    lines = []
    for pod in kube.core.list_namespaced_pod(namespace).items:
        statuses = (pod.status.init_container_statuses or []) + (pod.status.container_statuses or [])
        states = []
        for s in statuses:
            state = s.state
            if state.waiting:
                states.append(f"{s.name}=waiting:{state.waiting.reason}")
            elif state.terminated:
                states.append(
                    f"{s.name}=terminated:{state.terminated.reason}:{state.terminated.message or ''}"
                )
            else:
                states.append(f"{s.name}=running,ready={s.ready}")
        lines.append(f"  pod {pod.metadata.name}: {pod.status.phase} {' '.join(states)}")
    return "\n".join(lines) or "  (no pods)"


def describe(kube: Kube, opts: Options) -> Callable[[], str]:
    def text() -> str:
        body = get_md(kube, opts) or {}
        status = body.get("status", {})
        summary = {k: status.get(k) for k in ("phase", "message", "step", "canaryWeight", "failedChecks",
                                              "inconclusiveChecks", "analysis", "conditions")}  # fmt: skip
        summary["history[:3]"] = status.get("history", [])[:3]
        return f"ModelDeployment {NAME}: {json.dumps(summary, indent=1)}\n{pod_summary(kube, opts.namespace)}"

    return text


def status_of(kube: Kube, opts: Options) -> dict[str, Any]:
    body = get_md(kube, opts) or {}
    status: dict[str, Any] = body.get("status") or {}
    status["_generation"] = body.get("metadata", {}).get("generation")
    return status


def wait_for_outcome(kube: Kube, opts: Options, version: str, result: str) -> dict[str, Any]:
    """Wait until history[0] records `result` for `version`; returns that status."""
    phases: list[str] = []

    def check() -> dict[str, Any] | None:
        status = status_of(kube, opts)
        phase = status.get("phase")
        if phase and (not phases or phases[-1] != phase):
            phases.append(phase)
        history = status.get("history") or []
        if history and history[0].get("modelVersion") == version:
            if history[0].get("result") != result:
                pytest.fail(f"version {version} ended {history[0]}, expected {result}; phases seen: {phases}")
            return status
        return None

    status = wait_for(check, ROLLOUT_TIMEOUT, f"version {version} to be {result}", describe(kube, opts))
    status["_phases"] = phases
    return status


# ----------------------------------------------------------------------------------- inference


def infer(address: str, values: list[float]) -> list[float]:
    """One request through the Gateway with tritonclient's HTTP client."""
    import numpy as np
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=address, connection_timeout=10.0, network_timeout=30.0)
    try:
        data = np.array([[v] for v in values], dtype=np.float32)
        inputs = [httpclient.InferInput("INPUT0", list(data.shape), "FP32")]
        # JSON tensors rather than the binary extension: plain KServe v2, readable in any proxy log.
        inputs[0].set_data_from_numpy(data, binary_data=False)
        outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=False)]
        result = client.infer(make_model.MODEL_NAME, inputs, outputs=outputs)
        array = result.as_numpy("OUTPUT0")
        return [round(float(v), 4) for v in array.ravel()]
    finally:
        client.close()


def wait_for_answers(gateway: PortForward, version: str, consecutive: int = 20) -> None:
    """Until `consecutive` answers in a row are version's: the route has settled on one version."""
    values = [1.0, 2.0, 3.0]
    expected = make_model.VERSIONS[version].expected(values)
    streak, last = 0, "nothing yet"
    deadline = time.monotonic() + ROUTE_TIMEOUT
    while streak < consecutive:
        if time.monotonic() > deadline:
            pytest.fail(
                f"no {consecutive} answers in a row from version {version} ({expected}); last: {last}"
            )
        try:
            got = infer(gateway.address(), values)
        except Exception as exc:  # route not programmed yet, endpoint switching, ...
            streak, last = 0, f"{type(exc).__name__}: {exc}"
            time.sleep(1)
            continue
        if got == expected:
            streak += 1
        else:
            streak, last = 0, f"answer {got}"
            time.sleep(0.5)


@dataclass
class Load:
    """Steady KServe v2 requests through the Gateway, counting answers by the version that gave them."""

    gateway: PortForward
    answers: dict[str, int] = field(default_factory=dict)  # version -> count; "error", "unknown"
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng = random.Random(7)
        by_output = {}
        for key, version in make_model.VERSIONS.items():
            if not version.bad:
                for x in range(1, 10):
                    by_output[(x, round(version.expected([float(x)])[0], 4))] = key
        deadline = time.monotonic() + 2 * ROLLOUT_TIMEOUT  # bounded, whatever happens to the test
        while not self._stop.is_set() and time.monotonic() < deadline:
            x = rng.randint(1, 9)
            body = {"inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "FP32", "data": [float(x)]}]}
            key = "error"
            with contextlib.suppress(Exception):
                request = urllib.request.Request(
                    f"http://{self.gateway.address()}/v2/models/{make_model.MODEL_NAME}/infer",
                    data=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=10) as response:
                    out = json.loads(response.read())["outputs"][0]["data"][0]
                key = by_output.get((x, round(float(out), 4)), "unknown")
            self.answers[key] = self.answers.get(key, 0) + 1
            self._stop.wait(1.0 / LOAD_RPS)

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        thread = threading.Thread(target=self.run, name="e2e-load", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=30)


# ---------------------------------------------------------------------------------------- steps


def test_operator_is_installed(kube: Kube, operator_release: None) -> None:
    deployments = kube.apps.list_namespaced_deployment(OPERATOR_NAMESPACE).items
    assert deployments, f"no Deployment in {OPERATOR_NAMESPACE}"
    for deployment in deployments:
        assert deployment.status.available_replicas == deployment.spec.replicas, deployment.status
    crd = kube.extensions.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    established = {c.type: c.status for c in crd.status.conditions}
    assert established.get("Established") == "True"


def test_first_version_goes_stable_and_answers(
    kube: Kube, opts: Options, operator_release: None, model_store: None, gateway: PortForward
) -> None:
    delete_model_deployment(kube, opts)  # a leftover from an interrupted run would skew the story
    apply_version(kube, opts, "1")

    def stable() -> dict[str, Any] | None:
        status = status_of(kube, opts)
        ok = status.get("phase") == "Stable" and status.get("observedGeneration") == status["_generation"]
        return status if ok and (status.get("readyReplicas") or 0) >= 1 else None

    status = wait_for(stable, STABLE_TIMEOUT, "phase Stable with a ready replica", describe(kube, opts))
    assert status.get("url"), status
    wait_for_answers(gateway, "1")
    assert infer(gateway.address(), [0.5, 4.0]) == make_model.VERSIONS["1"].expected([0.5, 4.0])


def test_good_version_is_promoted(kube: Kube, opts: Options, gateway: PortForward) -> None:
    with Load(gateway).running() as load:
        apply_version(kube, opts, "2")
        status = wait_for_outcome(kube, opts, "2", "Promoted")
    assert "Progressing" in status["_phases"], status["_phases"]
    assert status.get("phase") in ("Stable", "Promoting"), status.get("phase")
    wait_for_answers(gateway, "2")
    wait_for(
        lambda: status_of(kube, opts).get("phase") == "Stable",
        ROUTE_TIMEOUT,
        "phase Stable after promotion",
        describe(kube, opts),
    )
    # The canary served real traffic during the rollout, and nothing answered wrongly.
    answers = load.answers
    assert answers.get("2", 0) > 0, answers
    assert answers.get("unknown", 0) == 0, answers
    total = sum(answers.values())
    assert answers.get("error", 0) <= 0.05 * total, (
        f"too many failed requests during a good rollout: {answers}"
    )


def test_bad_version_is_rolled_back(kube: Kube, opts: Options, gateway: PortForward) -> None:
    with Load(gateway).running() as load:
        apply_version(kube, opts, "3")
        status = wait_for_outcome(kube, opts, "3", "RolledBack")
    assert status.get("phase") == "RolledBack", status.get("phase")
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    assert conditions.get("Degraded", {}).get("status") == "True", conditions
    # The canary got traffic and failed it: that is what the analysis caught.
    assert load.answers.get("error", 0) > 0, load.answers
    assert load.answers.get("3", 0) == 0, load.answers
    # All traffic is back on the primary, still on version 2, and the spec is left as it was.
    wait_for_answers(gateway, "2")
    body = get_md(kube, opts)
    assert body is not None
    assert body["spec"]["model"]["version"] == "3"
    assert status.get("stableModelVersion") in (None, "2"), status.get("stableModelVersion")
