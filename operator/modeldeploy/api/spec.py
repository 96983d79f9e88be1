"""The ModelDeployment spec (modeldeploy.io/v1alpha1), as pydantic models.

These models are the single source of truth: the CRD's OpenAPI schema is generated from them
(see crd.py), and the operator validates every object it receives with them, so an object that
slipped past the API server (stored before a rule existed) still gets a precise error.
Every cross-field rule carries a CEL twin in `cel(...)` that the API server evaluates, with the
same message; the model validators below repeat them for the operator (defence in depth).
"""

from __future__ import annotations

import re
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PlainValidator, WithJsonSchema, field_validator, model_validator

from modeldeploy.api.base import (
    CEL_KEY,
    DURATION_PATTERN,
    PRESERVE_KEY,
    Duration,
    Matches,
    Model,
    cel,
    cel_string,
    check_duration_between,
    dns_label,
    dns_subdomain,
    duration_between,
    parse_duration,
)
from modeldeploy.api.errors import FieldError
from modeldeploy.api.triton_flags import RESERVED_FLAG_CEL, RESERVED_FLAG_MESSAGE, is_reserved_flag

DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.10-py3"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"

# Userinfo (user:password@) is admitted by the pattern only so that the CEL rule below refuses it
# with a message that says why; every other part of the URI is the pattern's.
STORAGE_URI_PATTERN = r"^((s3|gs)://([^/?#\s]*@)?[a-z0-9][a-z0-9._-]{1,221}(/.*)?|pvc://([^/?#\s]*@)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?|https://[^\s?#]+\.(tar\.gz|tgz|zip)(\?[^\s#]*)?)$"
STORAGE_URI_MESSAGE = (
    "must be s3://<bucket>/<path>, gs://<bucket>/<path>, pvc://<claim>/<path>, or an https:// URL of a "
    ".tar.gz, .tgz or .zip archive; bucket and claim names are lower-case letters, digits, '.', '_' and "
    "'-' (a bucket at least 2 characters), e.g. s3://models/fraud_scorer/7"
)
STORAGE_USERINFO_PATTERN = r"^[a-z][a-z0-9+.-]*://[^/?#]*@"
STORAGE_CREDENTIALS_MESSAGE = (
    "storageUri must not carry credentials (user:password@): anyone who may read the "
    "ModelDeployment or its pods would see them; put them in the Secret named by storageSecretRef"
)
# Triton model names become directory names in the model repository.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MODEL_NAME_MESSAGE = (
    "must be a Triton model name: letters, digits, '_', '.' and '-', starting with a letter or digit "
    "(it names a directory in the model repository), e.g. fraud_scorer"
)
MODEL_VERSION_MESSAGE = (
    "must be letters, digits, '_', '.' and '-', starting with a letter or digit, e.g. 7 or 2024-06-01.rc1"
)
# Extended resource names: "nvidia.com/gpu", "nvidia.com/mig-1g.10gb", "amd.com/gpu".
RESOURCE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-z0-9]([-a-z0-9._]*[a-z0-9])?$"
RESOURCE_NAME_MESSAGE = (
    "must be an extended resource name, <domain>/<name> in lower-case letters, digits, '-', '.' and '_', "
    "e.g. nvidia.com/gpu or nvidia.com/mig-1g.10gb"
)
QUANTITY_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
QUANTITY_MAX_LENGTH = 64
QUANTITY_MESSAGE = "must be a Kubernetes quantity, such as 500m, 2, 1.5 or 8Gi"


def _quantity(value: object) -> int | str:
    # One check, one message: a union of int and a constrained str would report both branches.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and len(value) <= QUANTITY_MAX_LENGTH and re.fullmatch(QUANTITY_PATTERN, value):
        return value
    raise ValueError(QUANTITY_MESSAGE)


# A quantity is an int or a string in Kubernetes. The API server checks the string with its own
# parser (CEL isQuantity); maxLength keeps that rule within the CEL cost budget.
Quantity = Annotated[
    int | str,
    PlainValidator(_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "maxLength": QUANTITY_MAX_LENGTH,
            CEL_KEY: [{"rule": "type(self) == int || isQuantity(self)", "message": QUANTITY_MESSAGE}],
        }
    ),
]
# Free-form passthroughs (affinity, HPA behavior, raw metric specs) are nested a dozen levels at most.
# The API server stores them up to 10,000 levels deep and no CRD rule can measure depth, so the
# operator refuses deep ones: past about 250 levels pydantic cannot serialize them (every pass raised).
FREE_FORM_MAX_DEPTH = 32
FREE_FORM_DEPTH_MESSAGE = f"nested deeper than {FREE_FORM_MAX_DEPTH} levels; no Kubernetes field is this deep"


def _not_too_deep(value: dict[str, Any]) -> dict[str, Any]:
    # Iterative: the value may be nested deeper than the interpreter's recursion limit.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > FREE_FORM_MAX_DEPTH:
            raise ValueError(FREE_FORM_DEPTH_MESSAGE)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return value


FreeForm = Annotated[
    dict[str, Any], Field(json_schema_extra={PRESERVE_KEY: True}), AfterValidator(_not_too_deep)
]


class Backend(StrEnum):
    ONNXRUNTIME = "onnxruntime"
    TENSORRT = "tensorrt"
    PYTORCH = "pytorch"
    TENSORFLOW = "tensorflow"
    PYTHON = "python"
    OPENVINO = "openvino"


class InstanceKind(StrEnum):
    KIND_GPU = "KIND_GPU"
    KIND_CPU = "KIND_CPU"
    KIND_AUTO = "KIND_AUTO"
    KIND_MODEL = "KIND_MODEL"


class Strategy(StrEnum):
    CANARY = "Canary"
    BLUE_GREEN = "BlueGreen"
    SHADOW = "Shadow"


class InconclusiveAction(StrEnum):
    HOLD = "Hold"
    ROLLBACK = "Rollback"


class AnalysisTemplate(StrEnum):
    SUCCESS_RATE = "successRate"
    REQUEST_LATENCY_MS = "requestLatencyMs"
    QUEUE_TIME_MS = "queueTimeMs"


# ---------------------------------------------------------------------------------------- model


class SecretRef(Model):
    name: Annotated[
        str, Field(min_length=1, max_length=253), dns_subdomain("a Secret name", "model-store-creds")
    ]


class DynamicBatching(Model):
    max_queue_delay_microseconds: int | None = Field(default=None, ge=0, le=60_000_000)
    # Left unset unless asked: Triton picks batch sizes well on its own.
    preferred_batch_size: list[Annotated[int, Field(ge=1)]] | None = Field(default=None, max_length=16)
    preserve_ordering: bool | None = None


class InstanceGroup(Model):
    kind: InstanceKind = InstanceKind.KIND_GPU
    count: int = Field(default=1, ge=1, le=64)
    gpus: list[Annotated[int, Field(ge=0)]] | None = Field(default=None, max_length=16)


class ModelConfig(Model):
    """Rendered into config.pbtxt; absent means the repository's own config.pbtxt is used."""

    model_config = Model.model_config | {
        "json_schema_extra": cel(
            (
                "!has(self.dynamicBatching) || self.maxBatchSize > 0",
                "dynamicBatching needs maxBatchSize > 0: Triton cannot batch a model that does not batch",
                ".dynamicBatching",
            )
        )
    }

    max_batch_size: int = Field(default=0, ge=0, le=1_000_000)
    dynamic_batching: DynamicBatching | None = None
    instance_groups: list[InstanceGroup] = Field(default_factory=list, max_length=16)
    parameters: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _batching_needs_batches(self) -> ModelConfig:
        if self.dynamic_batching is not None and self.max_batch_size == 0:
            raise FieldError(
                ".dynamicBatching",
                "dynamicBatching needs maxBatchSize > 0: Triton cannot batch a model that does not batch",
            )
        return self


class ModelSource(Model):
    name: Annotated[str, Field(min_length=1, max_length=128), Matches(MODEL_NAME_PATTERN, MODEL_NAME_MESSAGE)]
    version: Annotated[
        str,
        Field(min_length=1, max_length=63),
        Matches(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", MODEL_VERSION_MESSAGE),
    ]
    storage_uri: Annotated[str, Field(max_length=2048), Matches(STORAGE_URI_PATTERN, STORAGE_URI_MESSAGE)] = (
        Field(
            json_schema_extra=cel(
                # The pattern has no quote or backslash: it is a CEL string literal as it stands.
                (f"!self.matches('{STORAGE_USERINFO_PATTERN}')", STORAGE_CREDENTIALS_MESSAGE, "")
            ),
        )
    )
    storage_secret_ref: SecretRef | None = None
    backend: Backend = Backend.ONNXRUNTIME
    config: ModelConfig | None = None

    @field_validator("storage_uri", mode="before")
    @classmethod
    def _no_credentials(cls, uri: object) -> object:
        # Before the pattern, so the message says why, as the CEL rule does.
        if isinstance(uri, str) and re.search(STORAGE_USERINFO_PATTERN, uri):
            raise ValueError(STORAGE_CREDENTIALS_MESSAGE)
        return uri


# -------------------------------------------------------------------------------------- runtime


class ResourceRequirements(Model):
    # Bounded so that the API server's cost estimate for the quantity rule stays within budget.
    requests: dict[str, Quantity] = Field(default_factory=dict, max_length=16)
    limits: dict[str, Quantity] = Field(default_factory=dict, max_length=16)


class Toleration(Model):
    key: str | None = Field(default=None, max_length=316)
    operator: Literal["Equal", "Exists"] | None = None
    value: str | None = Field(default=None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


# The Triton defaults: `models` holds the downloaded repository, /dev/shm is memory-backed (counted
# against the pod's memory) and carries Python-backend and shared-memory tensors.
DEFAULT_MODELS_SIZE_LIMIT = "50Gi"
DEFAULT_SHM_SIZE_LIMIT = "1Gi"
# /tmp is Triton's $HOME: backend caches, Python-backend environments unpacked at load time.
DEFAULT_TMP_SIZE_LIMIT = "4Gi"


def _not_reserved(arg: str) -> str:
    if is_reserved_flag(arg):
        raise ValueError(RESERVED_FLAG_MESSAGE)
    return arg


TritonArg = Annotated[
    str,
    Field(max_length=1024, json_schema_extra=cel((RESERVED_FLAG_CEL, RESERVED_FLAG_MESSAGE, ""))),
    AfterValidator(_not_reserved),
]


class Volumes(Model):
    """sizeLimits of the pod's scratch volumes; a pod past one is evicted by the kubelet."""

    models_size_limit: Quantity = DEFAULT_MODELS_SIZE_LIMIT
    shm_size_limit: Quantity = DEFAULT_SHM_SIZE_LIMIT
    tmp_size_limit: Quantity = DEFAULT_TMP_SIZE_LIMIT


class Runtime(Model):
    model_config = Model.model_config | {
        "json_schema_extra": cel(
            (
                "!has(self.gpuResource) || self.gpus > 0",
                "gpuResource is set but gpus is 0: ask for at least one GPU or drop gpuResource",
                ".gpus",
            )
        )
    }

    image: str = Field(default=DEFAULT_TRITON_IMAGE, min_length=1, max_length=512)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    gpus: int = Field(default=1, ge=0, le=16)
    # Unset means nvidia.com/gpu when gpus > 0. A MIG profile such as nvidia.com/mig-1g.10gb works too.
    gpu_resource: (
        Annotated[str, Field(max_length=253), Matches(RESOURCE_NAME_PATTERN, RESOURCE_NAME_MESSAGE)] | None
    ) = None
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    affinity: FreeForm | None = None
    runtime_class_name: (
        Annotated[str, Field(max_length=253), dns_subdomain("a RuntimeClass name", "nvidia")] | None
    ) = None
    # Each item is checked alone, so that the error names the item; a flag whose value is in the next
    # item is refused by its own name (api/triton_flags.py).
    args: list[TritonArg] = Field(default_factory=list, max_length=64)
    volumes: Volumes = Field(default_factory=Volumes)
    # Large models take minutes to load; the startup probe allows this long before restarting.
    model_load_timeout: Duration = Field(default="15m", json_schema_extra=duration_between("10s", "6h"))

    @model_validator(mode="after")
    def _gpu_resource_needs_gpus(self) -> Runtime:
        if self.gpu_resource is not None and self.gpus == 0:
            raise FieldError(
                ".gpus", "gpuResource is set but gpus is 0: ask for at least one GPU or drop gpuResource"
            )
        return self

    @field_validator("model_load_timeout")
    @classmethod
    def _load_timeout_bounds(cls, value: str) -> str:
        return check_duration_between(value, "10s", "6h")

    @property
    def effective_gpu_resource(self) -> str | None:
        if self.gpus == 0:
            return None
        return self.gpu_resource or DEFAULT_GPU_RESOURCE


# -------------------------------------------------------------------------------------- scaling


class UtilizationTarget(Model):
    average_utilization: int = Field(ge=1, le=1000)


class MemoryTarget(Model):
    model_config = Model.model_config | {
        "json_schema_extra": cel(
            (
                "has(self.averageUtilization) != has(self.averageValue)",
                "set exactly one of averageUtilization or averageValue",
                "",
            )
        )
    }

    average_utilization: int | None = Field(default=None, ge=1, le=1000)
    average_value: Quantity | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MemoryTarget:
        if (self.average_utilization is None) == (self.average_value is None):
            raise ValueError("set exactly one of averageUtilization or averageValue")
        return self


class QueueTimeTarget(Model):
    average_value: int = Field(ge=1)


class ScalingMetric(Model):
    """One autoscaling signal: a shorthand, or a raw autoscaling/v2 MetricSpec."""

    model_config = Model.model_config | {
        "json_schema_extra": cel(
            (
                "[has(self.cpu), has(self.memory), has(self.queueTimeMicroseconds), has(self.raw)]"
                ".exists_one(x, x)",
                "set exactly one of cpu, memory, queueTimeMicroseconds or raw",
                "",
            )
        )
    }

    cpu: UtilizationTarget | None = None
    memory: MemoryTarget | None = None
    # Triton's average queue time per request, served to the HPA by prometheus-adapter (docs/autoscaling.md).
    queue_time_microseconds: QueueTimeTarget | None = None
    raw: FreeForm | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ScalingMetric:
        chosen = [self.cpu, self.memory, self.queue_time_microseconds, self.raw]
        if sum(x is not None for x in chosen) != 1:
            raise ValueError("set exactly one of cpu, memory, queueTimeMicroseconds or raw")
        return self


class Scaling(Model):
    model_config = Model.model_config | {
        "json_schema_extra": cel(
            (
                "self.minReplicas <= self.maxReplicas",
                "minReplicas must be less than or equal to maxReplicas",
                ".minReplicas",
            )
        )
    }

    min_replicas: int = Field(default=1, ge=1, le=1000)
    max_replicas: int = Field(default=1, ge=1, le=1000)
    metrics: list[ScalingMetric] = Field(default_factory=list, max_length=16)
    behavior: FreeForm | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Scaling:
        if self.min_replicas > self.max_replicas:
            raise FieldError(".minReplicas", "minReplicas must be less than or equal to maxReplicas")
        return self

    @property
    def autoscaled(self) -> bool:
        return self.max_replicas > self.min_replicas


# -------------------------------------------------------------------------------------- traffic


class ParentRef(Model):
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(default=None, max_length=63)
    section_name: str | None = Field(default=None, max_length=253)
    port: int | None = Field(default=None, ge=1, le=65535)


class GRPCListener(Model):
    """Where the GRPCRoute for Triton's gRPC port attaches.

    Gateway API rejects a GRPCRoute that shares a listener and hostname with an HTTPRoute, so
    gRPC needs hostnames of its own (and, optionally, its own listener via parentRefs)."""

    parent_refs: list[ParentRef] = Field(default_factory=list, max_length=32)
    hostnames: list[Annotated[str, Field(max_length=253)]] = Field(min_length=1, max_length=16)


class GatewayAPI(Model):
    model_config = Model.model_config | {
        "json_schema_extra": cel(
            (
                "!has(self.grpc) || self.grpc.hostnames.all(h, !(h in self.hostnames))",
                "grpc.hostnames must not repeat the HTTPRoute's hostnames: Gateway API rejects a GRPCRoute "
                "that shares a hostname with an HTTPRoute on the same listener",
                ".grpc.hostnames",
            )
        )
    }

    parent_refs: list[ParentRef] = Field(min_length=1, max_length=32)
    hostnames: list[Annotated[str, Field(max_length=253)]] = Field(default_factory=list, max_length=16)
    # Triton's gRPC port gets a GRPCRoute when set; HTTP/REST clients need only the HTTPRoute.
    grpc: GRPCListener | None = None

    @model_validator(mode="after")
    def _distinct_hostnames(self) -> GatewayAPI:
        if self.grpc is not None and set(self.grpc.hostnames) & set(self.hostnames):
            raise FieldError(
                ".grpc.hostnames",
                "grpc.hostnames must not repeat the HTTPRoute's hostnames: Gateway API rejects a GRPCRoute "
                "that shares a hostname with an HTTPRoute on the same listener",
            )
        return self


class Istio(Model):
    hosts: list[Annotated[str, Field(max_length=253)]] = Field(default_factory=list, max_length=16)
    gateways: list[Annotated[str, Field(max_length=253)]] = Field(default_factory=list, max_length=16)


class Traffic(Model):
    model_config = Model.model_config | {
        "json_schema_extra": cel(
            (
                "!(has(self.gatewayAPI) && has(self.istio))",
                "set at most one traffic router: gatewayAPI or istio",
                "",
            )
        )
    }

    gateway_api: GatewayAPI | None = Field(default=None, alias="gatewayAPI")
    istio: Istio | None = None

    @model_validator(mode="after")
    def _one_router(self) -> Traffic:
        if self.gateway_api is not None and self.istio is not None:
            raise ValueError("set at most one traffic router: gatewayAPI or istio")
        return self

    @property
    def router(self) -> str:
        if self.gateway_api is not None:
            return "gatewayAPI"
        if self.istio is not None:
            return "istio"
        return "replicaRatio"


# -------------------------------------------------------------------------------------- rollout


class Step(Model):
    weight: int = Field(ge=0, le=100)
    pause: Duration | None = None


class StringMatch(Model):
    model_config = Model.model_config | {
        "json_schema_extra": cel(
            (
                "[has(self.exact), has(self.prefix), has(self.regex)].exists_one(x, x)",
                "set exactly one of exact, prefix or regex",
                "",
            )
        )
    }

    exact: str | None = Field(default=None, max_length=1024)
    prefix: str | None = Field(default=None, max_length=1024)
    regex: str | None = Field(default=None, min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _exactly_one(self) -> StringMatch:
        if sum(x is not None for x in (self.exact, self.prefix, self.regex)) != 1:
            raise ValueError("set exactly one of exact, prefix or regex")
        return self


HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$"
HEADER_NAME_MESSAGE = (
    "header names must be HTTP tokens: 1 to 256 letters, digits or any of ! # $ % & ' * + - . ^ _ ` | ~, "
    "and no spaces, e.g. X-Canary"
)
HEADER_CASE_MESSAGE = "header names are case-insensitive: two of them differ only in case"


class Match(Model):
    # Keys are HTTP header names (RFC 9110 tokens), compared without regard to case. A CRD cannot
    # constrain map keys in its schema (no patternProperties), so CEL checks them.
    headers: dict[str, StringMatch] = Field(
        min_length=1,
        max_length=16,
        json_schema_extra=cel(
            (f"self.all(k, k.matches({cel_string(HEADER_NAME_PATTERN)}))", HEADER_NAME_MESSAGE, ""),
            (
                "self.all(k, self.filter(j, j.lowerAscii() == k.lowerAscii()).size() == 1)",
                HEADER_CASE_MESSAGE,
                "",
            ),
        ),
    )

    @field_validator("headers")
    @classmethod
    def _header_names(cls, headers: dict[str, StringMatch]) -> dict[str, StringMatch]:
        if not all(re.fullmatch(HEADER_NAME_PATTERN, name) for name in headers):
            raise ValueError(HEADER_NAME_MESSAGE)
        # CEL's lowerAscii folds ASCII only; so does this (the names are ASCII tokens by now).
        if len({name.lower() for name in headers}) != len(headers):
            raise ValueError(HEADER_CASE_MESSAGE)
        return headers


def _bounds_rule(low: str, high: str) -> tuple[str, str, str]:
    """A CEL rule refusing a lower bound above its upper bound: no value could ever pass."""
    return (
        f"!has(self.{low}) || !has(self.{high}) || self.{low} <= self.{high}",
        inverted_bounds_message(low, high),
        f".{low}",
    )


def inverted_bounds_message(low: str, high: str) -> str:
    return f"{low} is above {high}: no value can pass both; make {low} at most {high}"


def _check_bounds(model: Model, *pairs: tuple[str, str]) -> None:
    """The operator's twin of _bounds_rule, blamed on the same field."""
    for low, high in pairs:
        low_value = getattr(model, _snake(low))
        high_value = getattr(model, _snake(high))
        if low_value is not None and high_value is not None and low_value > high_value:
            raise FieldError(f".{low}", inverted_bounds_message(low, high))


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


class RelativeToPrimary(Model):
    model_config = Model.model_config | {
        "json_schema_extra": cel(
            (
                "has(self.maxRatio) || has(self.minRatio) || has(self.maxDelta) || has(self.minDelta)",
                "set at least one of maxRatio, minRatio, maxDelta or minDelta",
                "",
            ),
            _bounds_rule("minRatio", "maxRatio"),
            _bounds_rule("minDelta", "maxDelta"),
        )
    }

    max_ratio: float | None = Field(default=None, gt=0)
    min_ratio: float | None = Field(default=None, gt=0)
    max_delta: float | None = None
    min_delta: float | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> RelativeToPrimary:
        if all(x is None for x in (self.max_ratio, self.min_ratio, self.max_delta, self.min_delta)):
            raise ValueError("set at least one of maxRatio, minRatio, maxDelta or minDelta")
        _check_bounds(self, ("minRatio", "maxRatio"), ("minDelta", "maxDelta"))
        return self


# A custom query compared with the primary must tell the tracks apart: {{target}} or {{track}}.
TRACK_VARIABLE_PATTERN = r"\{\{\s*(target|track)\s*\}\}"
RELATIVE_QUERY_MESSAGE = (
    "relativeToPrimary needs the query to measure the track under test: "
    "use {{target}} (the Deployment name) or {{track}} (primary or canary) in it"
)


class AnalysisMetric(Model):
    model_config = Model.model_config | {
        "json_schema_extra": cel(
            ("has(self.template) != has(self.query)", "set exactly one of template or query", ""),
            (
                "has(self.min) || has(self.max) || has(self.relativeToPrimary)",
                "set at least one of min, max or relativeToPrimary",
                "",
            ),
            # The operator's twin is analysis.templates.check_custom (rollout/validate.py runs it). Its
            # other check, unknown {{variables}}, needs findAll over every query: over CEL's cost budget.
            (
                "!has(self.query) || !has(self.relativeToPrimary) || "
                + f"self.query.matches({cel_string(TRACK_VARIABLE_PATTERN)})",
                RELATIVE_QUERY_MESSAGE,
                ".query",
            ),
            _bounds_rule("min", "max"),
        )
    }

    name: Annotated[str, Field(max_length=63), dns_label("a metric name", "success-rate")]
    template: AnalysisTemplate | None = None
    query: str | None = Field(default=None, min_length=1, max_length=4096)
    min: float | None = None
    max: float | None = None
    relative_to_primary: RelativeToPrimary | None = None

    @model_validator(mode="after")
    def _shape(self) -> AnalysisMetric:
        if (self.template is None) == (self.query is None):
            raise ValueError("set exactly one of template or query")
        if self.min is None and self.max is None and self.relative_to_primary is None:
            raise ValueError("set at least one of min, max or relativeToPrimary")
        _check_bounds(self, ("min", "max"))
        return self


class Inconclusive(Model):
    limit: int = Field(default=5, ge=1, le=1000)
    action: InconclusiveAction = InconclusiveAction.HOLD


METRIC_NAMES_MESSAGE = "metric names must be unique"
# user[:password]@ before the host.
URL_USERINFO_PATTERN = r"^[a-z]+://[^/?#]*@"
URL_CREDENTIALS_MESSAGE = (
    "prometheusUrl must not carry credentials (user:password@): anyone who may read the "
    "ModelDeployment would see them; give the operator its Prometheus credentials instead"
)


PROMETHEUS_URL_MESSAGE = (
    "must be an http:// or https:// URL without spaces, e.g. http://prometheus.monitoring.svc:9090"
)


class Analysis(Model):
    min_sample_count: int = Field(default=100, ge=0)
    inconclusive: Inconclusive = Field(default_factory=Inconclusive)
    # Per-object override of the operator's --prometheus-url. http or https only, and never with
    # credentials: anyone who can read the ModelDeployment (the aggregated view role) would see them.
    prometheus_url: (
        Annotated[str, Field(max_length=2048), Matches(r"^https?://\S+$", PROMETHEUS_URL_MESSAGE)] | None
    ) = Field(
        default=None,
        json_schema_extra=cel(
            (f"!self.matches({cel_string(URL_USERINFO_PATTERN)})", URL_CREDENTIALS_MESSAGE, "")
        ),
    )
    metrics: list[AnalysisMetric] = Field(
        default_factory=list,
        max_length=32,
        json_schema_extra=cel(
            ("self.all(m, self.exists_one(n, n.name == m.name))", METRIC_NAMES_MESSAGE, "")
        ),
    )

    @field_validator("prometheus_url")
    @classmethod
    def _no_credentials(cls, url: str | None) -> str | None:
        if url is not None and re.search(URL_USERINFO_PATTERN, url):
            raise ValueError(URL_CREDENTIALS_MESSAGE)
        return url

    @field_validator("metrics")
    @classmethod
    def _unique_names(cls, metrics: list[AnalysisMetric]) -> list[AnalysisMetric]:
        names = [m.name for m in metrics]
        if len(set(names)) != len(names):
            raise ValueError(METRIC_NAMES_MESSAGE)
        return metrics


# ------------------------------------------------------------------------------ model-quality gates

# https only: the operator fetches the golden set itself, and it never reads Secrets (object stores
# need the model's credentials; the Triton pods mount them). A presigned URL works: its query is
# never logged or shown.
GOLDEN_URI_PATTERN = r"^https://[^\s#]+$"
GOLDEN_URI_MESSAGE = (
    "must be an https:// URL without spaces or #, e.g. https://models.example.com/golden/fraud.jsonl: the "
    "operator fetches the golden set itself and never reads storage Secrets, so s3://, gs:// and pvc:// "
    "cannot work; for a private bucket use a presigned https URL (its query is never shown)"
)
CONFIGMAP_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
CONFIGMAP_KEY_MESSAGE = "must be a ConfigMap key: letters, digits, '-', '_' and '.', e.g. fraud.jsonl"
GOLDEN_SOURCE_MESSAGE = "set exactly one of configMapKeyRef or storageUri"
GATES_NEED_GOLDEN_MESSAGE = (
    "minAccuracy, minAgreement, maxPSI, maxLatencyP95 and minDemographicParity need a goldenSet to measure"
)
GATES_EMPTY_MESSAGE = "gates check nothing: enable contract or set goldenSet with at least one threshold"
GOLDEN_CREDENTIALS_MESSAGE = (
    "goldenSet.storageUri must not carry credentials (user:password@): anyone who may read the "
    "ModelDeployment would see them; use a presigned https URL (its query is never shown)"
)
GATE_THRESHOLDS = ("minAccuracy", "minAgreement", "maxPSI", "maxLatencyP95", "minDemographicParity")


class ConfigMapKeyRef(Model):
    name: Annotated[str, Field(max_length=253), dns_subdomain("a ConfigMap name", "golden-sets")]
    key: Annotated[str, Field(max_length=253), Matches(CONFIGMAP_KEY_PATTERN, CONFIGMAP_KEY_MESSAGE)]


class GoldenSet(Model):
    """The reference examples sent to the canary and the primary: JSON lines (docs/gates.md)."""

    model_config = Model.model_config | {
        "json_schema_extra": cel(
            ("has(self.configMapKeyRef) != has(self.storageUri)", GOLDEN_SOURCE_MESSAGE, ""),
        )
    }

    config_map_key_ref: ConfigMapKeyRef | None = None
    # One JSON-lines file over https, fetched by the operator (at most 2 MiB; docs/gates.md).
    storage_uri: (
        Annotated[str, Field(max_length=2048), Matches(GOLDEN_URI_PATTERN, GOLDEN_URI_MESSAGE)] | None
    ) = Field(
        default=None,
        json_schema_extra=cel(
            (f"!self.matches({cel_string(URL_USERINFO_PATTERN)})", GOLDEN_CREDENTIALS_MESSAGE, "")
        ),
    )
    batch_size: int = Field(default=32, ge=1, le=1024)
    # Fewer examples answered than this makes every quality check Inconclusive.
    min_answered: int = Field(default=20, ge=1, le=100_000)

    @field_validator("storage_uri")
    @classmethod
    def _no_credentials(cls, uri: str | None) -> str | None:
        if uri is not None and re.search(URL_USERINFO_PATTERN, uri):
            raise ValueError(GOLDEN_CREDENTIALS_MESSAGE)
        return uri

    @model_validator(mode="after")
    def _one_source(self) -> GoldenSet:
        if (self.config_map_key_ref is None) == (self.storage_uri is None):
            raise ValueError(GOLDEN_SOURCE_MESSAGE)
        return self


class ContractGate(Model):
    enabled: bool = True
    # Accept a breaking change (an input renamed, a dtype changed) on purpose.
    allow_contract_change: bool = False


class Gates(Model):
    """Model-quality gates: the canary model is judged on a golden set before it takes traffic."""

    model_config = Model.model_config | {
        "json_schema_extra": cel(
            (
                "has(self.goldenSet) || !(" + " || ".join(f"has(self.{t})" for t in GATE_THRESHOLDS) + ")",
                GATES_NEED_GOLDEN_MESSAGE,
                ".goldenSet",
            ),
            (
                "(has(self.contract) && self.contract.enabled) || "
                "(has(self.goldenSet) && (" + " || ".join(f"has(self.{t})" for t in GATE_THRESHOLDS) + "))",
                GATES_EMPTY_MESSAGE,
                "",
            ),
        )
    }

    contract: ContractGate = Field(default_factory=ContractGate)
    golden_set: GoldenSet | None = None
    min_accuracy: float | None = Field(default=None, ge=0, le=1)
    min_agreement: float | None = Field(default=None, ge=0, le=1)
    max_psi: float | None = Field(default=None, ge=0, le=100, alias="maxPSI")
    max_latency_p95: Duration | None = Field(default=None, json_schema_extra=duration_between("1ms", "1h"))
    min_demographic_parity: float | None = Field(default=None, ge=0, le=1)
    # The output whose top-1 is the prediction; default: the model's first output.
    prediction_output: str | None = Field(default=None, min_length=1, max_length=128)
    # The prediction that counts as positive for demographic parity, compared as text ("1", "yes").
    positive_class: str = Field(default="1", min_length=1, max_length=128)
    timeout: Duration = Field(default="5m", json_schema_extra=duration_between("1s", "1h"))
    # Shadow: run the gates again once mirroring has started, on the mirrored phase.
    on_mirror: bool = False

    @field_validator("max_latency_p95")
    @classmethod
    def _latency_bounds(cls, value: str | None) -> str | None:
        return None if value is None else check_duration_between(value, "1ms", "1h")

    @field_validator("timeout")
    @classmethod
    def _timeout_bounds(cls, value: str) -> str:
        return check_duration_between(value, "1s", "1h")

    def thresholds_set(self) -> bool:
        return any(
            v is not None
            for v in (
                self.min_accuracy,
                self.min_agreement,
                self.max_psi,
                self.max_latency_p95,
                self.min_demographic_parity,
            )
        )

    @model_validator(mode="after")
    def _measurable(self) -> Gates:
        if self.thresholds_set() and self.golden_set is None:
            raise FieldError(".goldenSet", GATES_NEED_GOLDEN_MESSAGE)
        if not self.contract.enabled and not (self.golden_set is not None and self.thresholds_set()):
            raise ValueError(GATES_EMPTY_MESSAGE)
        return self


STEPS_MESSAGE = "weights must increase step by step: each step's weight must be greater than the one before"


def _default_steps() -> list[Step]:
    return [Step(weight=10), Step(weight=50)]


class Rollout(Model):
    model_config = Model.model_config | {
        "json_schema_extra": cel(
            (
                "self.strategy != 'Canary' || size(self.steps) > 0",
                "a Canary rollout needs at least one step",
                ".steps",
            )
        )
    }

    strategy: Strategy = Strategy.CANARY
    steps: list[Step] = Field(
        default_factory=_default_steps,
        max_length=32,
        json_schema_extra=cel(("self.all(i, s, i == 0 || s.weight > self[i - 1].weight)", STEPS_MESSAGE, "")),
    )
    interval: Duration = Field(default="1m", json_schema_extra=duration_between("1s"))
    failure_threshold: int = Field(default=3, ge=1, le=100)
    progress_deadline: Duration = Field(default="15m", json_schema_extra=duration_between("1s"))
    match: list[Match] = Field(default_factory=list, max_length=8)
    # Canary replicas follow the weight unless fixed here.
    canary_replicas: int | None = Field(default=None, ge=1, le=1000)
    max_extra_gpus: int | None = Field(default=None, ge=0, le=10_000, alias="maxExtraGPUs")
    analysis: Analysis = Field(default_factory=Analysis)
    # Model-quality gates before traffic (docs/gates.md); none: the canary is judged by analysis alone.
    gates: Gates | None = None

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[Step]) -> list[Step]:
        if any(later.weight <= earlier.weight for earlier, later in pairwise(steps)):
            raise ValueError(STEPS_MESSAGE)
        return steps

    @model_validator(mode="after")
    def _canary_has_steps(self) -> Rollout:
        if self.strategy == Strategy.CANARY and not self.steps:
            raise FieldError(".steps", "a Canary rollout needs at least one step")
        return self

    @field_validator("interval", "progress_deadline")
    @classmethod
    def _positive(cls, value: str) -> str:
        return check_duration_between(value, "1s")


# ------------------------------------------------------------------------------- network policy

DEFAULT_METRICS_NAMESPACE = "monitoring"


def _default_metrics_namespace() -> dict[str, str]:
    return {"kubernetes.io/metadata.name": DEFAULT_METRICS_NAMESPACE}


class NetworkPolicy(Model):
    """The NetworkPolicy around the Triton pods: 8000/8001 from this namespace, the gateways'
    namespaces and `ingressNamespaces`; 8002 from the namespaces `metricsNamespaceSelector` picks."""

    enabled: bool = True
    # Namespaces of callers beyond this one: a mesh's ingress gateway, clients in other namespaces.
    # Gateway API parentRef namespaces and Istio `<namespace>/<gateway>` namespaces are added.
    ingress_namespaces: list[
        Annotated[str, Field(max_length=63), dns_label("a namespace name", "istio-system")]
    ] = Field(default_factory=list, max_length=32)
    # matchLabels of the namespaces Prometheus scrapes from; an empty map means every namespace.
    metrics_namespace_selector: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=_default_metrics_namespace, max_length=16
    )


# --------------------------------------------------------------------------------------- alerts

# Prometheus's duration syntax as the PrometheusRule CRD accepts it: units in descending order,
# each at most once ("1h30m", not "30m1h"); the same strings are valid spec Durations too.
ALERT_DURATION_PATTERN = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$"
ALERT_DURATION_MESSAGE = (
    "must be a Prometheus duration: hours, minutes, seconds and milliseconds (h, m, s, ms) in that order, "
    "each at most once, without spaces, e.g. 5m or 1h30m"
)
AlertDuration = Annotated[
    str, Field(min_length=2, max_length=16), Matches(ALERT_DURATION_PATTERN, ALERT_DURATION_MESSAGE)
]
# Prometheus label names; "__" is reserved for Prometheus's internal labels.
ALERT_LABEL_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
# The labels every alert carries to say which object it is about: never overridden.
RESERVED_ALERT_LABELS = ("alertname", "namespace", "modeldeployment")
ALERT_LABELS_MESSAGE = (
    "alert label names must be Prometheus label names: letters, digits and '_', not starting with a digit "
    "or with two '_', and none of alertname, namespace and modeldeployment, e.g. team"
)
BASELINE_MESSAGE = "queueTime.baseline must be at least window: the two windows compared must not overlap"


class ErrorRateAlert(Model):
    """Failed requests as a share of all requests, over `window`."""

    enabled: bool = True
    max: float = Field(default=0.01, gt=0, lt=1)
    for_: AlertDuration = Field(default="5m", alias="for", json_schema_extra=duration_between("0s", "24h"))

    @field_validator("for_")
    @classmethod
    def _for_bounds(cls, value: str) -> str:
        return check_duration_between(value, "0s", "24h")


class LatencyAlert(Model):
    """p95 request latency, from Triton's latency summary (docs/metrics.md#alerts)."""

    # The SLA. No default: there is no latency that suits every model; unset means no latency alert.
    max: AlertDuration | None = Field(default=None, json_schema_extra=duration_between("1ms", "1h"))
    for_: AlertDuration = Field(default="5m", alias="for", json_schema_extra=duration_between("0s", "24h"))

    @field_validator("max")
    @classmethod
    def _max_bounds(cls, value: str | None) -> str | None:
        return None if value is None else check_duration_between(value, "1ms", "1h")

    @field_validator("for_")
    @classmethod
    def _for_bounds(cls, value: str) -> str:
        return check_duration_between(value, "0s", "24h")


class QueueTimeAlert(Model):
    """The mean queue time per request now, against the same `baseline` ago."""

    enabled: bool = True
    # Fires when the mean queue time is more than `factor` times what it was `baseline` ago...
    factor: float = Field(default=2.0, gt=1, le=1000)
    baseline: AlertDuration = Field(default="1h", json_schema_extra=duration_between("1m", "168h"))
    # ...and above `floor`: a queue growing from 50 µs to 200 µs is nobody's problem.
    floor: AlertDuration = Field(default="1ms", json_schema_extra=duration_between("0s", "1h"))
    for_: AlertDuration = Field(default="10m", alias="for", json_schema_extra=duration_between("0s", "24h"))

    @field_validator("baseline")
    @classmethod
    def _baseline_bounds(cls, value: str) -> str:
        return check_duration_between(value, "1m", "168h")

    @field_validator("floor")
    @classmethod
    def _floor_bounds(cls, value: str) -> str:
        return check_duration_between(value, "0s", "1h")

    @field_validator("for_")
    @classmethod
    def _for_bounds(cls, value: str) -> str:
        return check_duration_between(value, "0s", "24h")


class GPUUtilizationAlert(Model):
    """The primary's mean GPU utilisation (Triton's nv_gpu_utilization, 0 to 1); pods with GPUs only."""

    enabled: bool = True
    max: float = Field(default=0.85, gt=0, lt=1)
    for_: AlertDuration = Field(default="15m", alias="for", json_schema_extra=duration_between("0s", "24h"))

    @field_validator("for_")
    @classmethod
    def _for_bounds(cls, value: str) -> str:
        return check_duration_between(value, "0s", "24h")


class Alerts(Model):
    """The PrometheusRule `<name>`: alerts on the serving (primary) track, where its CRD exists."""

    model_config = Model.model_config | {
        "json_schema_extra": cel(
            (
                # Malformed durations get their own field's message; duration() would fail on them.
                f"!self.queueTime.baseline.matches({cel_string(DURATION_PATTERN)}) || "
                f"!self.window.matches({cel_string(DURATION_PATTERN)}) || "
                "duration(self.queueTime.baseline) >= duration(self.window)",
                BASELINE_MESSAGE,
                ".queueTime.baseline",
            )
        )
    }

    enabled: bool = True
    # The rate and average window of every expression.
    window: AlertDuration = Field(default="5m", json_schema_extra=duration_between("1m", "1h"))
    # Added to every alert, for Alertmanager's routes (team, a receiver); `severity` here replaces
    # each alert's own.
    labels: dict[str, Annotated[str, Field(max_length=256)]] = Field(
        default_factory=dict,
        max_length=16,
        json_schema_extra=cel(
            (
                f"self.all(k, k.matches({cel_string(ALERT_LABEL_PATTERN)}) && !k.startsWith('__') && "
                f"!(k in [{', '.join(cel_string(label) for label in RESERVED_ALERT_LABELS)}]))",
                ALERT_LABELS_MESSAGE,
                "",
            )
        ),
    )
    error_rate: ErrorRateAlert = Field(default_factory=ErrorRateAlert)
    latency_p95: LatencyAlert = Field(default_factory=LatencyAlert, alias="latencyP95")
    queue_time: QueueTimeAlert = Field(default_factory=QueueTimeAlert)
    gpu_utilization: GPUUtilizationAlert = Field(default_factory=GPUUtilizationAlert)

    @field_validator("window")
    @classmethod
    def _window_bounds(cls, value: str) -> str:
        return check_duration_between(value, "1m", "1h")

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        for name in labels:
            if not re.fullmatch(ALERT_LABEL_PATTERN, name) or name.startswith("__"):
                raise ValueError(ALERT_LABELS_MESSAGE)
            if name in RESERVED_ALERT_LABELS:
                raise ValueError(ALERT_LABELS_MESSAGE)
        return labels

    @model_validator(mode="after")
    def _baseline_after_window(self) -> Alerts:
        if parse_duration(self.queue_time.baseline) < parse_duration(self.window):
            raise FieldError(".queueTime.baseline", BASELINE_MESSAGE)
        return self


# ----------------------------------------------------------------------------------------- spec

_ROUTER = "has(self.traffic) && (has(self.traffic.gatewayAPI) || has(self.traffic.istio))"
# The HPA computes utilization against the container's request: without one it cannot scale at all
# (it reports "missing request for cpu"), so the API server refuses such an object.
_NOT_AUTOSCALED = "self.scaling.minReplicas >= self.scaling.maxReplicas"
DEFAULT_CPU_REQUEST_MESSAGE = (
    "autoscaling on CPU utilization (the default when scaling.metrics is empty) needs "
    "runtime.resources.requests.cpu"
)


def utilization_request_message(resource: str) -> str:
    return f"a {resource} utilization target in scaling.metrics needs runtime.resources.requests.{resource}"


_UTILIZATION_TARGET = {
    "cpu": "has(m.cpu)",
    "memory": "has(m.memory) && has(m.memory.averageUtilization)",
}


class ModelDeploymentSpec(Model):
    model_config = Model.model_config | {
        "json_schema_extra": cel(
            (
                "!has(self.model.config) || !has(self.model.config.instanceGroups) || "
                "self.model.config.instanceGroups.all(g, !has(g.kind) || g.kind != 'KIND_GPU') || "
                "self.runtime.gpus > 0",
                "model.config.instanceGroups asks for KIND_GPU but runtime.gpus is 0",
                ".runtime.gpus",
            ),
            (
                f"({_ROUTER}) || self.rollout.strategy != 'Shadow'",
                "rollout.strategy Shadow mirrors traffic and needs traffic.gatewayAPI or traffic.istio; "
                "the replica-ratio fallback cannot mirror",
                ".rollout.strategy",
            ),
            (
                f"({_ROUTER}) || size(self.rollout.match) == 0",
                "rollout.match pins requests by header and needs traffic.gatewayAPI or traffic.istio; "
                "the replica-ratio fallback cannot match headers",
                ".rollout.match",
            ),
            (
                f"{_NOT_AUTOSCALED} || size(self.scaling.metrics) > 0 || "
                "'cpu' in self.runtime.resources.requests",
                DEFAULT_CPU_REQUEST_MESSAGE,
                ".runtime.resources.requests",
            ),
            *(
                (
                    f"{_NOT_AUTOSCALED} || '{resource}' in self.runtime.resources.requests || "
                    f"!self.scaling.metrics.exists(m, {target})",
                    utilization_request_message(resource),
                    ".runtime.resources.requests",
                )
                for resource, target in _UTILIZATION_TARGET.items()
            ),
        )
    }

    model: ModelSource
    runtime: Runtime = Field(default_factory=Runtime)

    def _utilization_needs_requests(self) -> None:
        if not self.scaling.autoscaled:
            return
        requests = self.runtime.resources.requests
        metrics = self.scaling.metrics
        if not metrics and "cpu" not in requests:
            raise FieldError(".runtime.resources.requests", DEFAULT_CPU_REQUEST_MESSAGE)
        for resource in _UTILIZATION_TARGET:
            targets = [getattr(metric, resource) for metric in metrics]
            wanted = any(getattr(t, "average_utilization", None) is not None for t in targets)
            if wanted and resource not in requests:
                raise FieldError(".runtime.resources.requests", utilization_request_message(resource))

    scaling: Scaling = Field(default_factory=Scaling)
    traffic: Traffic = Field(default_factory=Traffic)
    rollout: Rollout = Field(default_factory=Rollout)
    network_policy: NetworkPolicy = Field(default_factory=NetworkPolicy)
    alerts: Alerts = Field(default_factory=Alerts)

    @model_validator(mode="after")
    def _cross_section(self) -> ModelDeploymentSpec:
        config = self.model.config
        if (
            config is not None
            and self.runtime.gpus == 0
            and any(g.kind == InstanceKind.KIND_GPU for g in config.instance_groups)
        ):
            raise FieldError(
                ".runtime.gpus", "model.config.instanceGroups asks for KIND_GPU but runtime.gpus is 0"
            )
        self._utilization_needs_requests()
        routed = self.traffic.router != "replicaRatio"
        if not routed and self.rollout.strategy == Strategy.SHADOW:
            raise FieldError(
                ".rollout.strategy",
                "rollout.strategy Shadow mirrors traffic and needs traffic.gatewayAPI or traffic.istio; "
                "the replica-ratio fallback cannot mirror",
            )
        if not routed and self.rollout.match:
            raise FieldError(
                ".rollout.match",
                "rollout.match pins requests by header and needs traffic.gatewayAPI or traffic.istio; "
                "the replica-ratio fallback cannot match headers",
            )
        return self
