"""Table-driven tests of every renderer: spec (+ track) in, the child object users will get out."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from google.protobuf import text_format
from kubernetes.utils import parse_quantity  # test-only: render/ itself never imports kubernetes

from modeldeploy.api.base import API_VERSION, KIND
from modeldeploy.api.resource import InvalidSpecError, ObjectRef, parse_spec
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.cli import render_document
from modeldeploy.render import model_config_pb2
from modeldeploy.render.autoscaler import autoscaler
from modeldeploy.render.children import stable_plan, workload_children
from modeldeploy.render.compare import contains
from modeldeploy.render.deployment import ADMIN_HEADER, RESTRICTED_PROTOCOLS, TRITON_FLAGS, deployment
from modeldeploy.render.modelconfig import CONFIG_ANNOTATION, HEADER, config_pbtxt, model_config
from modeldeploy.render.names import Track, deployment_name
from modeldeploy.render.networkpolicy import gateway_namespaces, network_policy
from modeldeploy.render.options import RenderOptions
from modeldeploy.render.podmonitor import pod_monitor
from modeldeploy.render.quantity import QuantityError, canonical, parse
from modeldeploy.render.revision import revision
from modeldeploy.render.service import service
from validation import validate_k8s, validate_third_party

PARENT = ObjectRef(
    name="fraud-scorer", namespace="ml", uid="0b3c8f52-7d1e-4c55-9a61-2f1f7a0c9d10", generation=3
)
OPTIONS = RenderOptions()
MODEL = {"name": "fraud_scorer", "version": "7", "storageUri": "s3://models/fraud_scorer/7"}


def spec_of(**sections: Any) -> ModelDeploymentSpec:
    """A valid spec: `model` entries merge into a default model, other sections replace defaults."""
    raw: dict[str, Any] = {"model": dict(MODEL)}
    for name, value in sections.items():
        raw[name] = {**MODEL, **value} if name == "model" else value
    scaling = raw.get("scaling") or {}
    if scaling.get("maxReplicas", 1) > scaling.get("minReplicas", 1) and "runtime" not in raw:
        # Utilization targets need requests to measure against.
        raw["runtime"] = {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}
    return parse_spec(raw)


def render_deployment(
    spec: ModelDeploymentSpec, track: Track = Track.PRIMARY, replicas: int | None = None
) -> dict[str, Any]:
    return deployment(PARENT, spec, revision(spec), track, OPTIONS, replicas)


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def triton(obj: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod_spec(obj)["containers"] if c["name"] == "triton"]
    return container


def puller(obj: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod_spec(obj)["initContainers"] if c["name"] == "model-puller"]
    return container


def volumes(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod_spec(obj)["volumes"]}


def mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def flag_value(args: list[str], flag: str) -> str | None:
    """The value tritonserver uses for `flag`: the last occurrence wins."""
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{flag}=")]
    return values[-1] if values else None


# ============================================================================== the Deployment


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--model-repository", "/models"),
        ("--model-control-mode", "none"),
        ("--strict-readiness", "true"),
        ("--exit-on-error", "true"),
        ("--http-port", "8000"),
        ("--grpc-port", "8001"),
        ("--metrics-port", "8002"),
        ("--allow-metrics", "true"),
    ],
    ids=[
        "repository",
        "control-mode-none",
        "strict-readiness",
        "exit-on-error",
        "http",
        "grpc",
        "metrics",
        "metrics-on",
    ],
)
def test_triton_safe_default_flags(flag: str, value: str) -> None:
    container = triton(render_deployment(spec_of()))
    assert container["command"] == ["tritonserver"]
    assert flag_value(container["args"], flag) == value


def test_user_args_come_after_the_operators_flags() -> None:
    user = ["--log-verbose=1", "--cache-config=local,size=1048576"]
    args = triton(render_deployment(spec_of(runtime={"args": user})))["args"]
    assert args[: len(TRITON_FLAGS)] == TRITON_FLAGS
    assert args[-len(user) :] == user


@pytest.mark.parametrize(
    "arg",
    [
        pytest.param("--model-control-mode=explicit", id="control-mode"),
        pytest.param("--model-control-mode", id="control-mode-separate-value"),
        pytest.param("--strict-readiness=false", id="strict-readiness"),
        pytest.param("--exit-on-error=false", id="exit-on-error"),
        pytest.param("--http-restricted-api=trace:k=v", id="http-restricted"),
        pytest.param("--grpc-restricted-protocol=trace:k=v", id="grpc-restricted"),
        pytest.param("--allow-http=false", id="allow-http"),
        pytest.param("--allow-metrics=false", id="allow-metrics"),
        pytest.param("--model-repository=/tmp", id="repository"),
        pytest.param("--http-port=9000", id="port"),
        pytest.param("-exit-on-error=false", id="single-dash"),
    ],
)
def test_args_that_weaken_a_safe_default_are_refused(arg: str) -> None:
    owned = r"^spec\.runtime\.args\[1\]: may not set a flag the operator owns"
    with pytest.raises(InvalidSpecError, match=owned):
        spec_of(runtime={"args": ["--log-verbose=1", arg]})


@pytest.mark.parametrize(
    "arg",
    [
        pytest.param("--log-verbose=1", id="log-verbose"),
        pytest.param("--model-load-thread-count=4", id="load-threads"),
        pytest.param("--http-thread-count=8", id="http-threads"),
        pytest.param("--backend-config=python,shm-default-byte-size=1048576", id="backend-config"),
        pytest.param("explicit", id="a-bare-value"),
    ],
)
def test_args_that_keep_the_safe_defaults_are_accepted(arg: str) -> None:
    assert spec_of(runtime={"args": [arg]}).runtime.args == [arg]


def test_management_protocols_are_restricted_on_both_endpoints() -> None:
    args = triton(render_deployment(spec_of()))["args"]
    expected = f"{','.join(RESTRICTED_PROTOCOLS)}:{ADMIN_HEADER}="
    for flag in ("--http-restricted-api", "--grpc-restricted-protocol"):
        value = flag_value(args, flag)
        assert value is not None and value.startswith(expected), flag
        assert len(value.removeprefix(expected)) == 32
    assert {"health", "inference", "metadata"}.isdisjoint(RESTRICTED_PROTOCOLS)


@pytest.mark.parametrize(
    ("runtime", "models", "shm", "tmp", "max_bytes"),
    [
        pytest.param({}, "50Gi", "1Gi", "4Gi", 51_002_736_640, id="defaults"),
        pytest.param(
            {"volumes": {"modelsSizeLimit": "200Gi", "shmSizeLimit": "8Gi", "tmpSizeLimit": "10Gi"}},
            "200Gi", "8Gi", "10Gi", 204_010_946_560, id="set",
        ),
        pytest.param({"volumes": {"shmSizeLimit": 2147483648}}, "50Gi", "2147483648", "4Gi", 51_002_736_640,
                     id="int-canonical"),
        pytest.param({"volumes": {"modelsSizeLimit": "1G"}}, "1G", "1Gi", "4Gi", 950_000_000, id="decimal"),
    ],
)  # fmt: skip
def test_scratch_volumes_have_size_limits(
    runtime: dict[str, Any], models: str, shm: str, tmp: str, max_bytes: int
) -> None:
    obj = render_deployment(spec_of(runtime=runtime))
    volumes = {v["name"]: v for v in obj["spec"]["template"]["spec"]["volumes"]}
    assert volumes["models"]["emptyDir"] == {"sizeLimit": models}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": shm}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": tmp}
    # The puller fails with one line before the model volume is over its sizeLimit (95% of it).
    args = puller(obj)["args"]
    assert int(args[args.index("--max-bytes") + 1]) == max_bytes
    assert max_bytes == parse_quantity(models) * 95 // 100


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [
        ({"gpus": 0}, "false"),
        ({"gpus": 1}, "true"),
        ({"gpus": 1, "gpuResource": "nvidia.com/mig-1g.10gb"}, "true"),
    ],
    ids=["cpu-only", "gpu", "mig"],
)
def test_gpu_metrics_only_with_a_gpu(runtime: dict[str, Any], expected: str) -> None:
    assert (
        flag_value(triton(render_deployment(spec_of(runtime=runtime)))["args"], "--allow-gpu-metrics")
        == expected
    )


@pytest.mark.parametrize(
    ("name", "port"),
    [("http", 8000), ("grpc", 8001), ("metrics", 8002)],
    ids=["http", "grpc", "metrics"],
)
def test_container_ports(name: str, port: int) -> None:
    ports = {p["name"]: p for p in triton(render_deployment(spec_of()))["ports"]}
    assert ports[name] == {"name": name, "containerPort": port, "protocol": "TCP"}


@pytest.mark.parametrize(
    ("load_timeout", "failure_threshold"),
    [("20m", 120), ("5m", 30), ("95s", 10), ("10s", 1), ("6h", 2160)],
    ids=["default-20m", "5m", "rounds-up", "minimum", "maximum"],
)
def test_startup_probe_allows_the_whole_model_load(load_timeout: str, failure_threshold: int) -> None:
    probe = triton(render_deployment(spec_of(runtime={"modelLoadTimeout": load_timeout})))["startupProbe"]
    assert probe["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert probe["failureThreshold"] == failure_threshold
    # Together, the attempts cover at least the configured load time.
    seconds = {"20m": 1200, "5m": 300, "95s": 95, "10s": 10, "6h": 21600}[load_timeout]
    assert probe["failureThreshold"] * probe["periodSeconds"] >= seconds
    assert probe["failureThreshold"] == math.ceil(seconds / probe["periodSeconds"])


def test_readiness_waits_for_the_model_and_liveness_for_the_server() -> None:
    container = triton(render_deployment(spec_of(model={"name": "text_embedder"})))
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/v2/models/text_embedder/ready",
        "port": "http",
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}


def test_progress_deadline_outlasts_the_model_load() -> None:
    obj = render_deployment(spec_of(runtime={"modelLoadTimeout": "1h"}))
    assert obj["spec"]["progressDeadlineSeconds"] > 3600


@pytest.mark.parametrize(
    ("runtime", "limits"),
    [
        ({}, {"nvidia.com/gpu": "1"}),
        ({"gpus": 2}, {"nvidia.com/gpu": "2"}),
        ({"gpus": 1, "gpuResource": "nvidia.com/mig-1g.10gb"}, {"nvidia.com/mig-1g.10gb": "1"}),
        ({"gpus": 2, "gpuResource": "nvidia.com/mig-3g.40gb"}, {"nvidia.com/mig-3g.40gb": "2"}),
        ({"gpus": 1, "gpuResource": "amd.com/gpu"}, {"amd.com/gpu": "1"}),
        ({"gpus": 1, "resources": {"limits": {"memory": "16Gi"}}}, {"memory": "16Gi", "nvidia.com/gpu": "1"}),
        ({"gpus": 0, "resources": {"limits": {"cpu": "4", "memory": "2Gi"}}}, {"cpu": "4", "memory": "2Gi"}),
        ({"gpus": 0}, None),
    ],
    ids=[
        "default",
        "two-gpus",
        "mig-1g",
        "two-mig-3g",
        "amd",
        "with-memory",
        "cpu-only-limits",
        "cpu-only-none",
    ],
)
def test_gpu_limits(runtime: dict[str, Any], limits: dict[str, Any] | None) -> None:
    resources = triton(render_deployment(spec_of(runtime=runtime)))["resources"]
    assert resources.get("limits") == limits


def test_requests_pass_through_as_the_server_stores_them() -> None:
    spec = spec_of(runtime={"resources": {"requests": {"cpu": "2000m", "memory": 1024}}})
    resources = triton(render_deployment(spec))["resources"]
    assert resources["requests"] == {"cpu": "2", "memory": "1024"}


GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
DEDICATED = {"key": "dedicated", "operator": "Equal", "value": "inference", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("runtime", "tolerations"),
    [
        ({}, [GPU_TOLERATION]),
        ({"gpuResource": "nvidia.com/mig-1g.10gb"}, [GPU_TOLERATION]),
        ({"tolerations": [GPU_TOLERATION]}, [GPU_TOLERATION]),
        (
            {
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
                ]
            },
            [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}],
        ),
        ({"tolerations": [DEDICATED]}, [DEDICATED, GPU_TOLERATION]),
        (
            {"gpus": 1, "gpuResource": "amd.com/gpu"},
            [{"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        ),
        ({"gpus": 0}, None),
        ({"gpus": 0, "tolerations": [DEDICATED]}, [DEDICATED]),
    ],
    ids=[
        "gpu-added",
        "mig-uses-the-gpu-taint",
        "user-gpu-toleration-not-duplicated",
        "user-gpu-toleration-kept-as-written",
        "user-toleration-plus-gpu",
        "other-vendor-taint",
        "cpu-only-none",
        "cpu-only-user-only",
    ],
)
def test_tolerations(runtime: dict[str, Any], tolerations: list[dict[str, Any]] | None) -> None:
    assert pod_spec(render_deployment(spec_of(runtime=runtime))).get("tolerations") == tolerations


AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["h100"]}]}
            ]
        }
    }
}


@pytest.mark.parametrize(
    ("runtime", "field", "expected"),
    [
        (
            {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100"}},
            "nodeSelector",
            {"nvidia.com/gpu.product": "NVIDIA-H100"},
        ),
        ({"affinity": AFFINITY}, "affinity", AFFINITY),
        ({"runtimeClassName": "nvidia"}, "runtimeClassName", "nvidia"),
        ({}, "nodeSelector", None),
        ({}, "affinity", None),
        ({}, "runtimeClassName", None),
    ],
    ids=["node-selector", "affinity", "runtime-class", "no-node-selector", "no-affinity", "no-runtime-class"],
)
def test_placement_passthrough(runtime: dict[str, Any], field: str, expected: Any) -> None:
    assert pod_spec(render_deployment(spec_of(runtime=runtime))).get(field) == expected


def test_dev_shm_is_a_memory_backed_empty_dir() -> None:
    obj = render_deployment(spec_of())
    shm = mounts(triton(obj))["/dev/shm"]
    assert volumes(obj)[shm["name"]] == {
        "name": shm["name"],
        "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"},
    }


def test_triton_gets_writable_tmp_under_a_read_only_root() -> None:
    obj = render_deployment(spec_of())
    container = triton(obj)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "emptyDir" in volumes(obj)[mounts(container)["/tmp"]["name"]]


def test_models_volume_written_by_the_puller_read_by_triton() -> None:
    obj = render_deployment(spec_of())
    assert mounts(puller(obj))["/models"].get("readOnly") is not True
    assert mounts(triton(obj))["/models"]["readOnly"] is True
    assert mounts(puller(obj))["/models"]["name"] == mounts(triton(obj))["/models"]["name"]
    assert "emptyDir" in volumes(obj)[mounts(triton(obj))["/models"]["name"]]


RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
SECURITY_SPECS = {
    "s3-with-secret": {"model": {"storageSecretRef": {"name": "creds"}, "config": {"maxBatchSize": 4}}},
    "pvc": {"model": {"storageUri": "pvc://model-store/fraud/7"}},
    "cpu-only-https": {
        "model": {"storageUri": "https://models.example.com/m.tar.gz"},
        "runtime": {"gpus": 0},
    },
}


@pytest.mark.parametrize("sections", SECURITY_SPECS.values(), ids=SECURITY_SPECS.keys())
def test_restricted_security_context_on_every_container(sections: dict[str, Any]) -> None:
    obj = render_deployment(spec_of(**sections))
    pod = pod_spec(obj)
    containers = pod["initContainers"] + pod["containers"]
    assert {c["name"] for c in containers} == {"model-puller", "triton"}
    for container in containers:
        context = container["securityContext"]
        assert {k: context.get(k) for k in RESTRICTED} == RESTRICTED, container["name"]
        assert context["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000  # triton-server in NVIDIA's image
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_no_service_account_token_in_the_pod() -> None:
    assert pod_spec(render_deployment(spec_of()))["automountServiceAccountToken"] is False


@pytest.mark.parametrize(
    "uri",
    [
        "s3://models/fraud_scorer/7",
        "gs://acme-models/fraud_scorer/7",
        "https://models.example.com/fraud_scorer-7.tar.gz",
        "https://models.example.com/fraud_scorer-7.zip?token=abc",
        "pvc://model-store/fraud_scorer/7",
    ],
    ids=["s3", "gs", "https-tar-gz", "https-zip-query", "pvc"],
)
def test_puller_args_per_scheme(uri: str) -> None:
    args = puller(render_deployment(spec_of(model={"storageUri": uri})))["args"]
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--source"] == uri
    assert pairs["--model-name"] == "fraud_scorer"
    assert pairs["--repository"] == "/models"


def test_puller_image_comes_from_the_options() -> None:
    obj = deployment(
        PARENT, spec_of(), "r", Track.PRIMARY, RenderOptions(puller_image="registry.local/puller:9"), None
    )
    assert puller(obj)["image"] == "registry.local/puller:9"


@pytest.mark.parametrize(
    ("uri", "claim"),
    [("pvc://model-store/fraud_scorer/7", "model-store"), ("pvc://models", "models")],
    ids=["claim-with-path", "claim-root"],
)
def test_pvc_is_mounted_read_only_into_the_puller_only(uri: str, claim: str) -> None:
    obj = render_deployment(spec_of(model={"storageUri": uri}))
    (pvc,) = [v for v in volumes(obj).values() if "persistentVolumeClaim" in v]
    assert pvc["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
    (mount,) = [m for m in puller(obj)["volumeMounts"] if m["name"] == pvc["name"]]
    assert mount["readOnly"] is True
    assert all(m["name"] != pvc["name"] for m in triton(obj)["volumeMounts"])


@pytest.mark.parametrize(
    "uri",
    ["s3://models/m/7", "gs://models/m/7", "https://models.example.com/m.tgz"],
    ids=["s3", "gs", "https"],
)
def test_no_pvc_without_pvc_storage(uri: str) -> None:
    obj = render_deployment(spec_of(model={"storageUri": uri}))
    assert not [v for v in volumes(obj).values() if "persistentVolumeClaim" in v]


def test_storage_secret_reaches_the_puller_only() -> None:
    obj = render_deployment(spec_of(model={"storageSecretRef": {"name": "model-store-creds"}}))
    assert puller(obj)["envFrom"] == [{"secretRef": {"name": "model-store-creds"}}]
    (secret,) = [v for v in volumes(obj).values() if "secret" in v]
    assert secret["secret"]["secretName"] == "model-store-creds"
    (mount,) = [m for m in puller(obj)["volumeMounts"] if m["name"] == secret["name"]]
    assert mount["readOnly"] is True
    container = triton(obj)
    assert "envFrom" not in container
    assert all(m["name"] != secret["name"] for m in container["volumeMounts"])
    # Credentials are referenced, never copied into the manifest.
    assert "model-store-creds" not in json.dumps(container)


def test_no_secret_without_storage_secret_ref() -> None:
    obj = render_deployment(spec_of())
    assert "envFrom" not in puller(obj)
    assert not [v for v in volumes(obj).values() if "secret" in v]


def test_config_volume_only_with_a_config() -> None:
    without = render_deployment(spec_of())
    assert "model-config" not in volumes(without)
    assert "annotations" not in without["spec"]["template"]["metadata"]
    assert "--config" not in puller(without)["args"]

    spec = spec_of(model={"config": {"maxBatchSize": 8}})
    obj = render_deployment(spec)
    # The config travels in the pod's own annotation, read back as a file by a downwardAPI volume:
    # no ConfigMap to write (docs/security.md, "The ConfigMap read").
    assert obj["spec"]["template"]["metadata"]["annotations"] == {CONFIG_ANNOTATION: config_pbtxt(spec.model)}
    volume = volumes(obj)["model-config"]
    (item,) = volume["downwardAPI"]["items"]
    assert item == {
        "path": "config.pbtxt",
        "fieldRef": {"fieldPath": f"metadata.annotations['{CONFIG_ANNOTATION}']"},
    }
    args = puller(obj)["args"]
    config_path = args[args.index("--config") + 1]
    mount = mounts(puller(obj))[config_path.rsplit("/", 1)[0]]
    assert mount["name"] == volume["name"]
    assert mount["readOnly"] is True
    assert config_path.endswith("/config.pbtxt")


@pytest.mark.parametrize(
    ("scaling", "replicas"),
    [({"minReplicas": 3, "maxReplicas": 3}, 3), ({"minReplicas": 2, "maxReplicas": 10}, None)],
    ids=["fixed-count", "left-to-the-hpa"],
)
def test_replicas_fixed_or_left_to_the_hpa(scaling: dict[str, Any], replicas: int | None) -> None:
    spec = spec_of(scaling=scaling)
    (plan,) = stable_plan(spec)
    obj = deployment(PARENT, spec, plan.revision, plan.track, OPTIONS, plan.replicas)
    assert obj["spec"].get("replicas") == replicas


@pytest.mark.parametrize("track", list(Track), ids=[t.value for t in Track])
def test_selector_matches_the_pod_template_and_names_the_track(track: Track) -> None:
    spec = spec_of()
    obj = render_deployment(spec, track)
    assert obj["metadata"]["name"] == f"fraud-scorer-{track.value}"
    selector = obj["spec"]["selector"]["matchLabels"]
    labels = obj["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert selector == {"modeldeploy.io/name": "fraud-scorer", "modeldeploy.io/track": track.value}
    # The revision is on the pods (for metrics and status) but never in the immutable selector.
    assert labels["modeldeploy.io/revision"] == revision(spec)
    assert "modeldeploy.io/revision" not in selector


def test_rolling_update_never_drops_serving_capacity() -> None:
    strategy = render_deployment(spec_of())["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


# ================================================================================ config.pbtxt

# The text after HEADER, as protobuf's text format prints Triton's ModelConfig (field-number order).
PBTXT_CASES = {
    "no-batching": (
        {"config": {}},
        'name: "fraud_scorer"\nbackend: "onnxruntime"\n',
    ),
    "dynamic-batching-and-instances": (
        {
            "config": {
                "maxBatchSize": 64,
                "dynamicBatching": {"maxQueueDelayMicroseconds": 500},
                "instanceGroups": [{"kind": "KIND_GPU", "count": 2}],
            }
        },
        'name: "fraud_scorer"\n'
        "max_batch_size: 64\n"
        "instance_group {\n"
        "  count: 2\n"
        "  kind: KIND_GPU\n"
        "}\n"
        "dynamic_batching {\n"
        "  max_queue_delay_microseconds: 500\n"
        "}\n"
        'backend: "onnxruntime"\n',
    ),
    "batching-without-preferred-sizes": (
        {"config": {"maxBatchSize": 8, "dynamicBatching": {}}},
        'name: "fraud_scorer"\nmax_batch_size: 8\ndynamic_batching {\n}\nbackend: "onnxruntime"\n',
    ),
    "everything": (
        {
            "name": "text_embedder",
            "backend": "tensorrt",
            "config": {
                "maxBatchSize": 128,
                "dynamicBatching": {
                    "maxQueueDelayMicroseconds": 100,
                    "preferredBatchSize": [32, 64],
                    "preserveOrdering": True,
                },
                "instanceGroups": [{"count": 1, "gpus": [0, 1]}, {"kind": "KIND_CPU", "count": 4}],
                "parameters": {"z_last": "1", "a_first": 'say "hi"\n'},
            },
        },
        'name: "text_embedder"\n'
        "max_batch_size: 128\n"
        "instance_group {\n"
        "  count: 1\n"
        "  gpus: 0\n"
        "  gpus: 1\n"
        "  kind: KIND_GPU\n"
        "}\n"
        "instance_group {\n"
        "  count: 4\n"
        "  kind: KIND_CPU\n"
        "}\n"
        "dynamic_batching {\n"
        "  preferred_batch_size: 32\n"
        "  preferred_batch_size: 64\n"
        "  max_queue_delay_microseconds: 100\n"
        "  preserve_ordering: true\n"
        "}\n"
        "parameters {\n"
        '  key: "a_first"\n'
        "  value {\n"
        '    string_value: "say \\"hi\\"\\n"\n'
        "  }\n"
        "}\n"
        "parameters {\n"
        '  key: "z_last"\n'
        "  value {\n"
        '    string_value: "1"\n'
        "  }\n"
        "}\n"
        'backend: "tensorrt"\n',
    ),
    "python-backend-on-cpu": (
        {
            "name": "whisper_small",
            "backend": "python",
            "config": {"maxBatchSize": 4, "instanceGroups": [{"kind": "KIND_CPU", "count": 2}]},
        },
        'name: "whisper_small"\n'
        "max_batch_size: 4\n"
        "instance_group {\n"
        "  count: 2\n"
        "  kind: KIND_CPU\n"
        "}\n"
        'backend: "python"\n',
    ),
}


@pytest.mark.parametrize(("model", "text"), PBTXT_CASES.values(), ids=PBTXT_CASES.keys())
def test_config_pbtxt_text(model: dict[str, Any], text: str) -> None:
    spec = spec_of(model=model, runtime={"gpus": 1})
    rendered = config_pbtxt(spec.model)
    assert rendered == HEADER + text
    # Triton's own schema reads it back to the message the renderer built (comments are skipped).
    assert text_format.Parse(rendered, model_config_pb2.ModelConfig()) == model_config(spec.model)


def test_no_config_means_the_repository_config() -> None:
    spec = spec_of()
    assert config_pbtxt(spec.model) is None
    assert not [c for c in children_of(spec) if c["kind"] == "ConfigMap"]


# ======================================================================= the config's annotation


def test_no_child_is_a_config_map() -> None:
    """The operator writes no ConfigMap, so its role needs no write, list or watch on them."""
    spec = spec_of(model={"config": {"maxBatchSize": 8}})
    assert not [c for c in children_of(spec) if c["kind"] == "ConfigMap"]


@pytest.mark.parametrize(
    ("change", "same_config"),
    [
        ({"model": {"version": "8", "config": {"maxBatchSize": 8}}}, True),
        ({"model": {"config": {"maxBatchSize": 16}}}, False),
        (
            {
                "model": {"config": {"maxBatchSize": 8}},
                "scaling": {"minReplicas": 2, "maxReplicas": 9},
                "runtime": {"resources": {"requests": {"cpu": "1"}}},
            },
            True,
        ),
    ],
    ids=["new-version-same-config", "new-config", "scaling-keeps-config"],
)
def test_each_revision_carries_its_own_config(change: dict[str, Any], same_config: bool) -> None:
    # Per pod template: the primary keeps reading its own config while a canary runs the next.
    base = spec_of(model={"config": {"maxBatchSize": 8}}, runtime={"resources": {"requests": {"cpu": "1"}}})
    other = spec_of(**change)
    annotation = [render_deployment(s)["spec"]["template"]["metadata"]["annotations"] for s in (base, other)]
    assert (annotation[0] == annotation[1]) is same_config


# ================================================================================== the Service


@pytest.mark.parametrize(
    ("name", "port", "extra"),
    [("http", 8000, {}), ("grpc", 8001, {"appProtocol": "kubernetes.io/h2c"}), ("metrics", 8002, {})],
    ids=["http", "grpc-h2c", "metrics"],
)
def test_service_ports(name: str, port: int, extra: dict[str, Any]) -> None:
    svc = service(PARENT, "fraud-scorer", Track.PRIMARY)
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports[name] == {"name": name, "port": port, "targetPort": name, "protocol": "TCP", **extra}
    # Target ports are the container's port names, so a port renumbering cannot break the Service.
    container_ports = {p["name"] for p in triton(render_deployment(spec_of()))["ports"]}
    assert ports[name]["targetPort"] in container_ports


@pytest.mark.parametrize(
    ("track", "selector"),
    [
        (None, {"modeldeploy.io/name": "fraud-scorer"}),
        (Track.PRIMARY, {"modeldeploy.io/name": "fraud-scorer", "modeldeploy.io/track": "primary"}),
        (Track.CANARY, {"modeldeploy.io/name": "fraud-scorer", "modeldeploy.io/track": "canary"}),
    ],
    ids=["every-track", "primary", "canary"],
)
def test_service_selector(track: Track | None, selector: dict[str, str]) -> None:
    svc = service(PARENT, "fraud-scorer", track)
    assert svc["spec"]["selector"] == selector
    assert svc["spec"]["type"] == "ClusterIP"
    if track is not None:
        labels = render_deployment(spec_of(), track)["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()


# ====================================================================================== the HPA


def hpa_of(scaling: dict[str, Any]) -> dict[str, Any] | None:
    spec = spec_of(scaling=scaling)
    return autoscaler(PARENT, PARENT.name, deployment_name(PARENT, Track.PRIMARY), spec.scaling)


@pytest.mark.parametrize(
    "scaling",
    [{}, {"minReplicas": 3, "maxReplicas": 3, "metrics": [{"cpu": {"averageUtilization": 50}}]}],
    ids=["defaults", "fixed-with-metrics"],
)
def test_no_hpa_for_a_fixed_count(scaling: dict[str, Any]) -> None:
    assert hpa_of(scaling) is None
    assert not [c for c in children_of(spec_of(scaling=scaling)) if c["kind"] == "HorizontalPodAutoscaler"]


def test_hpa_targets_the_primary_deployment() -> None:
    hpa = hpa_of({"minReplicas": 2, "maxReplicas": 20})
    assert hpa is not None
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "fraud-scorer-primary",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 20)


RAW_METRIC = {
    "type": "External",
    "external": {
        "metric": {"name": "kafka_consumergroup_lag", "selector": {"matchLabels": {"topic": "transactions"}}},
        "target": {"type": "AverageValue", "averageValue": "1k"},
    },
}
METRIC_CASES = {
    "cpu": (
        {"cpu": {"averageUtilization": 70}},
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
        },
    ),
    "memory-utilization": (
        {"memory": {"averageUtilization": 80}},
        {
            "type": "Resource",
            "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}},
        },
    ),
    "memory-value": (
        {"memory": {"averageValue": "12Gi"}},
        {
            "type": "Resource",
            "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "12Gi"}},
        },
    ),
    "queue-time": (
        {"queueTimeMicroseconds": {"averageValue": 5000}},
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "triton_queue_time_microseconds"},
                "target": {"type": "AverageValue", "averageValue": "5k"},
            },
        },
    ),
    "raw-passthrough": ({"raw": RAW_METRIC}, RAW_METRIC),
}


@pytest.mark.parametrize(("shorthand", "metric"), METRIC_CASES.values(), ids=METRIC_CASES.keys())
def test_hpa_metric_shorthands(shorthand: dict[str, Any], metric: dict[str, Any]) -> None:
    hpa = hpa_of({"minReplicas": 1, "maxReplicas": 4, "metrics": [shorthand]})
    assert hpa is not None
    assert hpa["spec"]["metrics"] == [metric]
    validate_k8s(hpa)  # every shorthand maps to a valid autoscaling/v2 MetricSpec


def test_hpa_metrics_keep_their_order() -> None:
    shorthands = [case[0] for case in METRIC_CASES.values()]
    hpa = hpa_of({"minReplicas": 1, "maxReplicas": 4, "metrics": shorthands})
    assert hpa is not None
    assert hpa["spec"]["metrics"] == [case[1] for case in METRIC_CASES.values()]


def test_hpa_defaults_to_cpu() -> None:
    hpa = hpa_of({"minReplicas": 1, "maxReplicas": 4})
    assert hpa is not None
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
        }
    ]


@pytest.mark.parametrize(
    "behavior",
    [
        None,
        {
            "scaleDown": {
                "stabilizationWindowSeconds": 600,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
            }
        },
        {
            "scaleUp": {
                "selectPolicy": "Max",
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
            }
        },
    ],
    ids=["absent", "scale-down", "scale-up"],
)
def test_hpa_behavior_passthrough(behavior: dict[str, Any] | None) -> None:
    scaling: dict[str, Any] = {"minReplicas": 1, "maxReplicas": 4}
    if behavior is not None:
        scaling["behavior"] = behavior
    hpa = hpa_of(scaling)
    assert hpa is not None
    assert hpa["spec"].get("behavior") == behavior
    validate_k8s(hpa)


# =============================================================================== the PodMonitor


def relabel(meta: dict[str, str], relabelings: list[dict[str, Any]]) -> dict[str, str]:
    """Prometheus' `replace` relabeling, enough to see which labels a scraped series ends up with."""
    labels = dict(meta)
    for rule in relabelings:
        assert rule.get("action", "replace") == "replace"
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule["sourceLabels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if match:
            replacement = rule.get("replacement", "$1")
            labels[rule["targetLabel"]] = match.expand(re.sub(r"\$(\d+)", r"\\\1", replacement))
    return {k: v for k, v in labels.items() if not k.startswith("__") and v}


def pod_discovery_labels(obj: dict[str, Any], pod_name: str) -> dict[str, str]:
    """The __meta_* labels Prometheus' Kubernetes pod discovery gives a pod of this Deployment."""
    pod_labels = obj["spec"]["template"]["metadata"]["labels"]
    meta = {
        "__meta_kubernetes_namespace": obj["metadata"]["namespace"],
        "__meta_kubernetes_pod_name": pod_name,
    }
    for key, value in pod_labels.items():
        meta["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
    return meta


@pytest.mark.parametrize("track", list(Track), ids=[t.value for t in Track])
def test_pod_monitor_relabeling_adds_pod_and_track_identity(track: Track) -> None:
    monitor = pod_monitor(PARENT, OPTIONS)
    assert monitor is not None
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    spec = spec_of()
    obj = render_deployment(spec, track)
    pod = f"{obj['metadata']['name']}-5d8f7c9b4-x2x7k"
    labels = relabel(pod_discovery_labels(obj, pod), endpoint["relabelings"])
    assert labels == {
        "namespace": "ml",
        "pod": pod,
        "modeldeployment": "fraud-scorer",
        "track": track.value,
        "revision": revision(spec),
        # The deployment label names the real Deployment, so queries can join on it.
        "deployment": obj["metadata"]["name"],
    }


def test_pod_monitor_scrapes_the_metrics_port_of_every_track() -> None:
    monitor = pod_monitor(PARENT, RenderOptions(scrape_interval="30s"))
    assert monitor is not None
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"] == {"matchLabels": {"modeldeploy.io/name": "fraud-scorer"}}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("metrics", "/metrics", "30s")
    for track in Track:
        labels = render_deployment(spec_of(), track)["spec"]["template"]["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    validate_third_party(monitor)


def test_no_pod_monitor_without_the_prometheus_operator() -> None:
    options = RenderOptions(pod_monitor=False)
    assert pod_monitor(PARENT, options) is None
    spec = spec_of()
    kinds = {c["kind"] for c in workload_children(PARENT, spec, options, stable_plan(spec))}
    assert "PodMonitor" not in kinds
    assert "Deployment" in kinds


# ==================================================================== ownership and labels

CHILDREN_SPECS: dict[str, dict[str, Any]] = {
    "minimal": {},
    "configured-autoscaled": {
        "model": {"config": {"maxBatchSize": 8}, "storageSecretRef": {"name": "creds"}},
        "scaling": {"minReplicas": 2, "maxReplicas": 6},
    },
    "cpu-pvc-fixed": {
        "model": {"storageUri": "pvc://store/m"},
        "runtime": {"gpus": 0},
        "scaling": {"minReplicas": 2, "maxReplicas": 2},
    },
}


def children_of(spec: ModelDeploymentSpec, options: RenderOptions = OPTIONS) -> list[dict[str, Any]]:
    plans = stable_plan(spec)
    canary = dataclasses.replace(plans[0], track=Track.CANARY, replicas=1)
    return workload_children(PARENT, spec, options, [*plans, canary])


def walk_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, sub in value.items():
            yield str(key)
            yield from walk_keys(sub)
    elif isinstance(value, list):
        for sub in value:
            yield from walk_keys(sub)


@pytest.mark.parametrize("sections", CHILDREN_SPECS.values(), ids=CHILDREN_SPECS.keys())
def test_every_child_is_owned_by_the_parent(sections: dict[str, Any]) -> None:
    children = children_of(spec_of(**sections))
    assert {"Deployment", "Service", "PodMonitor"} <= {c["kind"] for c in children}
    for child in children:
        meta = child["metadata"]
        assert meta["namespace"] == "ml"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": "fraud-scorer",
                "uid": PARENT.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ], f"{child['kind']} {meta['name']}"


@pytest.mark.parametrize("sections", CHILDREN_SPECS.values(), ids=CHILDREN_SPECS.keys())
def test_every_child_carries_the_recommended_labels(sections: dict[str, Any]) -> None:
    for child in children_of(spec_of(**sections)):
        labels = child["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "triton-inference-server"
        assert labels["app.kubernetes.io/part-of"] == "modeldeploy"
        assert labels["app.kubernetes.io/managed-by"] == "modeldeploy"
        assert labels["app.kubernetes.io/component"] == "inference-server"
        assert labels["modeldeploy.io/name"] == "fraud-scorer"
        # app.kubernetes.io/instance is Argo CD's default tracking label: on a child it would make
        # Argo CD think the child belongs to an Application of that name, and prune it.
        assert "app.kubernetes.io/instance" not in labels


PARENT_MANIFEST = {
    "apiVersion": API_VERSION,
    "kind": KIND,
    "metadata": {
        "name": "fraud-scorer",
        "namespace": "ml",
        "labels": {"argocd.argoproj.io/instance": "ml-models", "team": "payments"},
        "annotations": {
            "argocd.argoproj.io/tracking-id": "ml-models:modeldeploy.io/ModelDeployment:ml/fraud-scorer",
            "argocd.argoproj.io/sync-wave": "2",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
        },
    },
    "spec": {
        "model": {**MODEL, "config": {"maxBatchSize": 4}},
        "runtime": {"resources": {"requests": {"cpu": "1"}}},
        "scaling": {"minReplicas": 1, "maxReplicas": 3},
        "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
    },
}


def test_children_never_copy_the_parents_labels_or_annotations() -> None:
    children = render_document(copy.deepcopy(PARENT_MANIFEST), OPTIONS)
    assert children
    parent_meta = PARENT_MANIFEST["metadata"]
    forbidden = {*parent_meta["labels"], *parent_meta["annotations"]}  # type: ignore[misc]
    for child in children:
        keys = set(walk_keys(child))
        assert not forbidden & keys, (
            f"{child['kind']} {child['metadata']['name']}: {sorted(forbidden & keys)}"
        )
        assert not [k for k in keys if k.startswith("argocd.argoproj.io/")]
        text = json.dumps(child)
        assert "payments" not in text
        assert "ml-models" not in text


def test_rendering_is_deterministic_and_does_not_mutate_the_spec() -> None:
    spec = spec_of(**CHILDREN_SPECS["configured-autoscaled"])
    before = spec.model_dump()
    first, second = children_of(spec), children_of(spec)
    assert first == second
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert spec.model_dump() == before


# ------------------------------------------------------------------------------ quantities

# (written, what the API server stores): checked here against the kubernetes client's parser, and in
# test_real_api_defects.py against the real server itself.
CANONICAL_QUANTITIES = [
    pytest.param(1, "1", id="gpu-int"),
    pytest.param(0, "0", id="zero"),
    pytest.param(1000, "1k", id="int-thousand"),
    pytest.param("1000m", "1", id="milli-whole"),
    pytest.param("1500m", "1500m", id="milli"),
    pytest.param("0.5", "500m", id="fraction"),
    pytest.param("0.1", "100m", id="tenth"),
    pytest.param("2", "2", id="plain"),
    pytest.param("5000", "5k", id="thousands"),
    pytest.param("1024", "1024", id="1024-is-decimal"),
    pytest.param("8192Mi", "8Gi", id="mebi-to-gibi"),
    pytest.param("1536Mi", "1536Mi", id="mebi-kept"),
    pytest.param("2048Ki", "2Mi", id="kibi-to-mebi"),
    pytest.param("0.5Gi", "512Mi", id="half-gibi"),
    pytest.param("0.5Ki", "512", id="below-1ki-is-decimal"),
    pytest.param("1.2Gi", "1288490188800m", id="fractional-bytes-are-decimal"),
    pytest.param("1e3", "1e3", id="exponent"),
    pytest.param("1.5e3", "1500", id="exponent-fraction"),
    pytest.param("12e6", "12e6", id="exponent-kept"),
    pytest.param("1500k", "1500k", id="kilo"),
    pytest.param("129M", "129M", id="mega"),
    pytest.param("-1", "-1", id="negative"),
]


@pytest.mark.parametrize(("written", "stored"), CANONICAL_QUANTITIES)
def test_quantities_render_as_the_server_stores_them(written: int | str, stored: str) -> None:
    assert canonical(written) == stored
    # The client's parser does not round to a nano unit as the server does; otherwise they agree.
    assert parse(written)[0] == parse_quantity(stored)
    assert abs(parse_quantity(written) - parse_quantity(stored)) < Decimal("1e-9")


@pytest.mark.parametrize(
    "bad",
    [pytest.param("1Qi", id="unknown-suffix"), pytest.param("one", id="word"), pytest.param("", id="empty")],
)
def test_a_bad_quantity_is_named(bad: str) -> None:
    with pytest.raises(QuantityError, match="not a quantity"):
        canonical(bad)


def _limits(value: Any) -> dict[str, Any]:
    return {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": value}}}]}}


@pytest.mark.parametrize(
    ("live", "desired", "same"),
    [
        pytest.param(_limits("1"), _limits(1), True, id="int-vs-string"),
        pytest.param(_limits("1"), _limits("1000m"), True, id="milli-vs-whole"),
        pytest.param(_limits("1"), _limits("1"), True, id="equal-strings"),
        pytest.param(_limits("2"), _limits(1), False, id="different-value"),
        pytest.param(
            {"resources": {"requests": {"memory": "8Gi"}}},
            {"resources": {"requests": {"memory": "8192Mi"}}},
            True,
            id="binary-suffixes",
        ),
        pytest.param(
            {"target": {"type": "AverageValue", "averageValue": "5k"}},
            {"target": {"type": "AverageValue", "averageValue": "5000"}},
            True,
            id="hpa-target",
        ),
        pytest.param(
            {"emptyDir": {"sizeLimit": "1Gi"}}, {"emptyDir": {"sizeLimit": "1024Mi"}}, True, id="size"
        ),
        pytest.param(
            {"env": [{"name": "N", "value": "1k"}]},
            {"env": [{"name": "N", "value": "1000"}]},
            False,
            id="env-values-are-not-quantities",
        ),
        pytest.param({"replicas": 1}, {"replicas": True}, False, id="bool-is-not-one"),
    ],
)
def test_the_no_op_check_compares_quantities_by_value(
    live: dict[str, Any], desired: dict[str, Any], same: bool
) -> None:
    assert contains(live, desired) is same


# ------------------------------------------------------------------------------ NetworkPolicy

GATEWAY_REFS = {"parentRefs": [{"name": "edge", "namespace": "gateways"}, {"name": "local"}]}


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        pytest.param({}, [], id="no-router"),
        pytest.param({"traffic": {"gatewayAPI": GATEWAY_REFS}}, ["gateways"], id="gateway-api-parent-refs"),
        pytest.param(
            {
                "traffic": {
                    "gatewayAPI": {
                        **GATEWAY_REFS,
                        "grpc": {
                            "parentRefs": [{"name": "g", "namespace": "grpc-edge"}],
                            "hostnames": ["g.x"],
                        },
                    }
                }
            },
            ["gateways", "grpc-edge"],
            id="gateway-api-grpc-listener",
        ),
        pytest.param(
            {"traffic": {"istio": {"gateways": ["istio-system/ingress", "local-gw", "mesh"]}}},
            ["istio-system"],
            id="istio-namespaced-gateway",
        ),
        pytest.param(
            {"traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw", "namespace": "ml"}]}}},
            [],
            id="own-namespace-left-out",
        ),
        pytest.param(
            {
                "networkPolicy": {"ingressNamespaces": ["clients", "gateways"]},
                "traffic": {"gatewayAPI": GATEWAY_REFS},
            },
            ["clients", "gateways"],
            id="extra-namespaces-deduplicated",
        ),
    ],
)
def test_network_policy_callers(sections: dict[str, Any], expected: list[str]) -> None:
    spec = spec_of(**sections)
    assert gateway_namespaces(PARENT, spec) == expected
    policy = network_policy(PARENT, spec)
    assert policy is not None
    callers = policy["spec"]["ingress"][0]["from"]
    assert callers[0] == {"podSelector": {}}
    assert [
        c["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for c in callers[1:]
    ] == expected


def test_network_policy_opens_serving_ports_to_callers_and_metrics_to_prometheus_only() -> None:
    policy = network_policy(PARENT, spec_of())
    assert policy is not None
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"modeldeploy.io/name": PARENT.name}}
    assert spec["policyTypes"] == ["Ingress"]
    serving, metrics = spec["ingress"]
    assert serving["ports"] == [{"protocol": "TCP", "port": 8000}, {"protocol": "TCP", "port": 8001}]
    assert metrics == {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"protocol": "TCP", "port": 8002}],
    }
    validate_k8s(policy)


@pytest.mark.parametrize(
    ("network_policy_spec", "expected"),
    [
        pytest.param({"metricsNamespaceSelector": {}}, {}, id="every-namespace"),
        pytest.param(
            {"metricsNamespaceSelector": {"team": "observability"}},
            {"matchLabels": {"team": "observability"}},
            id="labels",
        ),
    ],
)
def test_network_policy_metrics_namespace_selector(
    network_policy_spec: dict[str, Any], expected: dict[str, Any]
) -> None:
    policy = network_policy(PARENT, spec_of(networkPolicy=network_policy_spec))
    assert policy is not None
    assert policy["spec"]["ingress"][1]["from"] == [{"namespaceSelector": expected}]


GATED = {"gates": {"contract": {"enabled": True}}}


@pytest.mark.parametrize(
    ("rollout", "operator_namespace", "admitted"),
    [
        pytest.param(GATED, "modeldeploy-system", "modeldeploy-system", id="gates-admit-the-operator"),
        pytest.param({}, "modeldeploy-system", None, id="no-gates-no-rule"),
        pytest.param(GATED, None, None, id="operator-namespace-unknown"),
        pytest.param(GATED, PARENT.namespace, None, id="same-namespace-already-admitted"),
    ],
)
def test_network_policy_admits_the_operator_on_http_for_gates(
    rollout: dict[str, Any], operator_namespace: str | None, admitted: str | None
) -> None:
    policy = network_policy(PARENT, spec_of(rollout=rollout), operator_namespace)
    assert policy is not None
    rules = policy["spec"]["ingress"]
    if admitted is None:
        assert len(rules) == 2
        return
    assert rules[2] == {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": admitted}}}],
        "ports": [{"protocol": "TCP", "port": 8000}],
    }
    validate_k8s(policy)


def test_network_policy_opt_out_renders_none_and_the_child_set_drops_it() -> None:
    spec = spec_of(networkPolicy={"enabled": False})
    assert network_policy(PARENT, spec) is None
    kinds = [c["kind"] for c in workload_children(PARENT, spec, OPTIONS, stable_plan(spec))]
    assert "NetworkPolicy" not in kinds
    kinds = [c["kind"] for c in workload_children(PARENT, spec_of(), OPTIONS, stable_plan(spec_of()))]
    assert kinds.count("NetworkPolicy") == 1
