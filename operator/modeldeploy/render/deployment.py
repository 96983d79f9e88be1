"""The Triton Deployment: one per track (primary, and canary during a rollout)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

from modeldeploy.api.base import parse_duration
from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.render.modelconfig import CONFIG_ANNOTATION, CONFIG_KEY, config_annotation, config_pbtxt
from modeldeploy.render.names import (
    REVISION_LABEL,
    Track,
    common_labels,
    deployment_name,
    metadata,
    selector_labels,
)
from modeldeploy.render.options import RenderOptions
from modeldeploy.render.quantity import canonical, parse

HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
MODEL_REPOSITORY = "/models"
CONFIG_DIR = "/etc/modeldeploy/model-config"
SECRET_DIR = "/var/run/secrets/modeldeploy/storage"
PVC_ROOT = "/mnt/pvc"
TRITON_UID = 1000  # the `triton-server` user of NVIDIA's image
# The puller may fill this share of the models volume: files take whole blocks and directories
# take some, as the kubelet's usage count sees them, and past the sizeLimit it evicts the pod.
PULLER_SHARE_PERCENT = 95
STARTUP_PERIOD_SECONDS = 10

# The safe defaults: serve exactly what the repository holds, refuse to be ready before every
# model is, and exit (so Kubernetes restarts the pod) rather than run half-loaded.
TRITON_FLAGS = [
    f"--model-repository={MODEL_REPOSITORY}",
    "--model-control-mode=none",
    "--strict-readiness=true",
    "--exit-on-error=true",
    f"--http-port={HTTP_PORT}",
    f"--grpc-port={GRPC_PORT}",
    f"--metrics-port={METRICS_PORT}",
    "--allow-metrics=true",
]
# Triton's management protocols, closed as its secure-deployment guide advises: they load and
# unload models, rewrite configs, register shared memory, change logging and tracing, and read
# statistics. Each is answered only with the header below. Only the operator sends it, with a
# gate's model-config read; the probes use health, inference and metadata stay open, and the routes
# remove the header from every request that comes through a gateway or the mesh. What the key
# guards and why it is not secret: docs/security.md ("Management protocols restricted").
RESTRICTED_PROTOCOLS = (
    "model-repository",
    "model-config",
    "shared-memory",
    "statistics",
    "trace",
    "logging",
)
ADMIN_HEADER = "modeldeploy-admin-key"


def admin_key(parent: ObjectRef) -> str:
    """The admin header's value: stable per object (so the template does not change from pass to
    pass) and different per object. It is no secret from whoever can read the ModelDeployment or
    the Deployment (decided in docs/security.md, "Management protocols restricted"); it must never
    reach a log, an Event or the status."""
    digest = hashlib.sha256(f"{parent.namespace}/{parent.name}/{parent.uid}".encode()).hexdigest()
    return digest[:32]


def restriction_flags(parent: ObjectRef) -> list[str]:
    restriction = f"{','.join(RESTRICTED_PROTOCOLS)}:{ADMIN_HEADER}={admin_key(parent)}"
    return [f"--http-restricted-api={restriction}", f"--grpc-restricted-protocol={restriction}"]


def restricted_container_security() -> dict[str, Any]:
    """The container half of the restricted Pod Security profile."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def gpu_toleration_key(resource: str) -> str:
    # The NVIDIA GPU operator taints GPU nodes nvidia.com/gpu, MIG profiles included.
    return "nvidia.com/gpu" if resource.startswith("nvidia.com/") else resource


def _storage(spec: ModelDeploymentSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and puller mounts that bring the model in: the claim for pvc://."""
    uri = spec.model.storage_uri
    if not uri.startswith("pvc://"):
        return [], []
    claim = uri.removeprefix("pvc://").split("/", 1)[0]
    volume = {"name": "model-store", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
    mount = {"name": "model-store", "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True}
    return [volume], [mount]


def puller_max_bytes(models_size_limit: int | str) -> int:
    """The puller's --max-bytes, from the models emptyDir's sizeLimit: one place for both, so the
    puller fails with one clear line before the kubelet would evict the pod for the volume."""
    amount, _ = parse(models_size_limit)
    return int(amount) * PULLER_SHARE_PERCENT // 100


def _puller(
    parent: ObjectRef, spec: ModelDeploymentSpec, revision: str, options: RenderOptions
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    model = spec.model
    args = ["--source", model.storage_uri, "--model-name", model.name, "--repository", MODEL_REPOSITORY]
    args += ["--max-bytes", str(puller_max_bytes(spec.runtime.volumes.models_size_limit))]
    mounts: list[dict[str, Any]] = [{"name": "models", "mountPath": MODEL_REPOSITORY}]
    volumes, store_mounts = _storage(spec)
    mounts += store_mounts
    container: dict[str, Any] = {
        "name": "model-puller",
        "image": options.puller_image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": restricted_container_security(),
        "volumeMounts": mounts,
    }
    if config_pbtxt(model) is not None:
        args += ["--config", f"{CONFIG_DIR}/{CONFIG_KEY}"]
        mounts.append({"name": "model-config", "mountPath": CONFIG_DIR, "readOnly": True})
        # The pod's own annotation, as a file (render/modelconfig.py: config_annotation): the
        # operator writes no ConfigMap for it.
        item = {"path": CONFIG_KEY, "fieldRef": {"fieldPath": f"metadata.annotations['{CONFIG_ANNOTATION}']"}}
        volumes.append({"name": "model-config", "downwardAPI": {"items": [item], "defaultMode": 0o444}})
    if model.storage_secret_ref is not None:
        # Credentials reach the puller only: as env for S3-style keys and as files for key files.
        # Triton itself never sees them, and the operator never reads the Secret.
        secret = model.storage_secret_ref.name
        container["envFrom"] = [{"secretRef": {"name": secret}}]
        mounts.append({"name": "storage-credentials", "mountPath": SECRET_DIR, "readOnly": True})
        volumes.append(
            {"name": "storage-credentials", "secret": {"secretName": secret, "defaultMode": 0o440}}
        )
    # Downloads land on the models volume, so the read-only root filesystem is never written.
    container["env"] = [{"name": "TMPDIR", "value": MODEL_REPOSITORY}]
    return container, volumes


def _quantities(values: Mapping[str, int | str]) -> dict[str, str]:
    # As the server stores them, so that what we want and what we read back compare equal.
    return {name: canonical(value) for name, value in values.items()}


def _triton(parent: ObjectRef, spec: ModelDeploymentSpec) -> dict[str, Any]:
    runtime = spec.runtime
    limits = _quantities(runtime.resources.limits)
    gpu = runtime.effective_gpu_resource
    if gpu is not None:
        limits[gpu] = canonical(runtime.gpus)
    resources: dict[str, Any] = {}
    if runtime.resources.requests:
        resources["requests"] = _quantities(runtime.resources.requests)
    if limits:
        resources["limits"] = limits
    load_seconds = parse_duration(runtime.model_load_timeout)
    return {
        "name": "triton",
        "image": runtime.image,
        "imagePullPolicy": runtime.image_pull_policy,
        "command": ["tritonserver"],
        # User flags come last; the spec refuses any that would override ours (api/triton_flags.py).
        "args": [
            *TRITON_FLAGS,
            f"--allow-gpu-metrics={'true' if gpu else 'false'}",
            *restriction_flags(parent),
            *runtime.args,
        ],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "env": [{"name": "HOME", "value": "/tmp"}],  # Python backends write caches under $HOME
        # With --model-control-mode=none Triton loads every model before it listens, so the startup
        # probe must allow the whole load time; liveness takes over only once it has passed.
        "startupProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": STARTUP_PERIOD_SECONDS,
            "failureThreshold": max(1, math.ceil(load_seconds / STARTUP_PERIOD_SECONDS)),
            "timeoutSeconds": 5,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 5,
        },
        "readinessProbe": {
            "httpGet": {"path": f"/v2/models/{spec.model.name}/ready", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
            "timeoutSeconds": 5,
        },
        "resources": resources,
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "models", "mountPath": MODEL_REPOSITORY, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _annotations(spec: ModelDeploymentSpec) -> dict[str, Any]:
    annotations = config_annotation(spec.model)
    return {"annotations": annotations} if annotations else {}


def deployment(
    parent: ObjectRef,
    spec: ModelDeploymentSpec,
    revision: str,
    track: Track,
    options: RenderOptions,
    replicas: int | None,
) -> dict[str, Any]:
    """A Triton Deployment; `replicas` None leaves the count to the HPA (the field stays unowned)."""
    puller, volumes = _puller(parent, spec, revision, options)
    runtime = spec.runtime
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in runtime.tolerations]
    gpu = runtime.effective_gpu_resource
    if gpu is not None:
        key = gpu_toleration_key(gpu)
        if not any(t.get("key") == key for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoSchedule"})
    pod_labels = {**common_labels(parent), **selector_labels(parent, track), REVISION_LABEL: revision}
    pod_spec: dict[str, Any] = {
        # Triton never calls the Kubernetes API; a token in the pod would only be a liability.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 60,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": TRITON_UID,
            "runAsGroup": TRITON_UID,
            "fsGroup": TRITON_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [puller],
        "containers": [_triton(parent, spec)],
        "volumes": [
            # Bounded: past a sizeLimit the kubelet evicts the pod instead of filling the node's
            # disk (models) or memory (/dev/shm is tmpfs, counted against the container's memory).
            {"name": "models", "emptyDir": {"sizeLimit": canonical(runtime.volumes.models_size_limit)}},
            {
                "name": "dshm",
                "emptyDir": {"medium": "Memory", "sizeLimit": canonical(runtime.volumes.shm_size_limit)},
            },
            {"name": "tmp", "emptyDir": {"sizeLimit": canonical(runtime.volumes.tmp_size_limit)}},
            *volumes,
        ],
    }
    if runtime.node_selector:
        pod_spec["nodeSelector"] = dict(runtime.node_selector)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if runtime.affinity:
        pod_spec["affinity"] = dict(runtime.affinity)
    if runtime.runtime_class_name:
        pod_spec["runtimeClassName"] = runtime.runtime_class_name
    deploy_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(parent, track)},
        # One extra pod at a time and none taken away: serving capacity never dips during an
        # update, and the surge costs one pod's GPUs, not a whole second set.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": 600 + int(parse_duration(runtime.model_load_timeout)),
        "template": {"metadata": {"labels": pod_labels, **_annotations(spec)}, "spec": pod_spec},
    }
    if replicas is not None:
        deploy_spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(
            parent,
            deployment_name(parent, track),
            {**selector_labels(parent, track), REVISION_LABEL: revision},
        ),
        "spec": deploy_spec,
    }
