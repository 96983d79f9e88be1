"""The API models: defaults, durations, the revision hash, conditions, and errors that name the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modeldeploy.api.base import parse_duration
from modeldeploy.api.conditions import find_condition, set_condition
from modeldeploy.api.resource import InvalidSpecError, parse_spec, parse_status
from modeldeploy.api.spec import (
    DEFAULT_TRITON_IMAGE,
    FREE_FORM_DEPTH_MESSAGE,
    FREE_FORM_MAX_DEPTH,
    HEADER_NAME_MESSAGE,
    QUANTITY_MESSAGE,
    ModelDeploymentSpec,
    inverted_bounds_message,
)
from modeldeploy.api.status import Condition
from modeldeploy.api.triton_flags import (
    RESERVED_FLAG_FAMILY,
    RESERVED_FLAG_MESSAGE,
    RESERVED_TRITON_FLAGS,
    TRITON_LONG_OPTIONS,
    is_reserved_flag,
)
from modeldeploy.render.revision import revision

MODEL = {"name": "fraud_scorer", "version": "7", "storageUri": "s3://models/fraud_scorer/7"}
MINIMAL: dict[str, Any] = {"model": MODEL}


def spec_with(**sections: Any) -> dict[str, Any]:
    """MINIMAL with whole sections replaced (model sections are merged into MODEL).

    An autoscaled spec with no runtime gets CPU and memory requests, which utilization targets need."""
    out = copy.deepcopy(MINIMAL)
    for name, value in sections.items():
        out[name] = {**MODEL, **value} if name == "model" else value
    scaling = out.get("scaling") or {}
    if scaling.get("maxReplicas", 1) > scaling.get("minReplicas", 1) and "runtime" not in out:
        out["runtime"] = {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}
    return out


def attr(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


# ------------------------------------------------------------------------------------ defaults


DEFAULTS = [
    ("model.backend", "onnxruntime"),
    ("model.config", None),
    ("model.storage_secret_ref", None),
    ("runtime.image", DEFAULT_TRITON_IMAGE),
    ("runtime.image_pull_policy", "IfNotPresent"),
    ("runtime.gpus", 1),
    ("runtime.gpu_resource", None),
    ("runtime.effective_gpu_resource", "nvidia.com/gpu"),
    ("runtime.model_load_timeout", "15m"),
    ("runtime.args", []),
    ("runtime.tolerations", []),
    ("scaling.min_replicas", 1),
    ("scaling.max_replicas", 1),
    ("scaling.autoscaled", False),
    ("scaling.metrics", []),
    ("traffic.router", "replicaRatio"),
    ("rollout.strategy", "Canary"),
    ("rollout.interval", "1m"),
    ("rollout.failure_threshold", 3),
    ("rollout.progress_deadline", "15m"),
    ("rollout.match", []),
    ("rollout.analysis.min_sample_count", 100),
    ("rollout.analysis.inconclusive.limit", 5),
    ("rollout.analysis.inconclusive.action", "Hold"),
    ("rollout.analysis.metrics", []),
]


@pytest.mark.parametrize(("attribute", "expected"), DEFAULTS, ids=[a for a, _ in DEFAULTS])
def test_defaults(attribute: str, expected: Any) -> None:
    assert attr(parse_spec(MINIMAL), attribute) == expected


def test_default_steps_increase() -> None:
    assert [s.weight for s in parse_spec(MINIMAL).rollout.steps] == [10, 50]


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [
        ({"gpus": 0}, None),
        ({"gpus": 2}, "nvidia.com/gpu"),
        ({"gpus": 1, "gpuResource": "nvidia.com/mig-1g.10gb"}, "nvidia.com/mig-1g.10gb"),
        ({"gpus": 1, "gpuResource": "amd.com/gpu"}, "amd.com/gpu"),
    ],
    ids=["cpu-only", "default-resource", "mig-profile", "other-vendor"],
)
def test_effective_gpu_resource(runtime: dict[str, Any], expected: str | None) -> None:
    assert parse_spec(spec_with(runtime=runtime)).runtime.effective_gpu_resource == expected


@pytest.mark.parametrize(
    ("scaling", "autoscaled"),
    [({"minReplicas": 2, "maxReplicas": 2}, False), ({"minReplicas": 2, "maxReplicas": 3}, True)],
    ids=["fixed", "range"],
)
def test_autoscaled_only_with_a_range(scaling: dict[str, Any], autoscaled: bool) -> None:
    assert parse_spec(spec_with(scaling=scaling)).scaling.autoscaled is autoscaled


@pytest.mark.parametrize(
    ("traffic", "router"),
    [
        ({}, "replicaRatio"),
        ({"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}, "gatewayAPI"),
        ({"istio": {}}, "istio"),
    ],
    ids=["none", "gateway-api", "istio"],
)
def test_router(traffic: dict[str, Any], router: str) -> None:
    assert parse_spec(spec_with(traffic=traffic)).traffic.router == router


def test_spec_is_immutable() -> None:
    spec = parse_spec(MINIMAL)
    with pytest.raises(ValueError, match="frozen"):
        spec.runtime.gpus = 4  # type: ignore[misc]


def test_rollout_accepts_max_extra_gpus_as_spelled_in_the_contract() -> None:
    # DESIGN.md's resource contract spells the GPU budget `maxExtraGPUs` (as `gatewayAPI`); the
    # generated camelCase name is `maxExtraGpus`, so a manifest written from the contract is rejected.
    spec = parse_spec(spec_with(rollout={"maxExtraGPUs": 2}))
    assert spec.rollout.max_extra_gpus == 2


# ------------------------------------------------------------------------------------ durations


DURATIONS = [
    ("500ms", 0.5),
    ("90s", 90),
    ("5m", 300),
    ("1h", 3600),
    ("1m30s", 90),
    ("1h30m", 5400),
    ("2h0m5s", 7205),
    ("0s", 0),
    ("1s500ms", 1.5),
]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS, ids=[t for t, _ in DURATIONS])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "5", "m", "1.5m", "-1s", "5 m", "1d", "PT5M", "5M", " 5m"],
    ids=[
        "empty",
        "no-unit",
        "no-number",
        "decimal",
        "negative",
        "space",
        "days",
        "iso-8601",
        "upper",
        "lead",
    ],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="must be a duration: whole numbers each followed by ms, s, m or h"):
        parse_duration(text)


# ------------------------------------------------------------------------------------- revision

FULL: dict[str, Any] = {
    "model": {
        **MODEL,
        "storageSecretRef": {"name": "creds"},
        "config": {
            "maxBatchSize": 8,
            "dynamicBatching": {"maxQueueDelayMicroseconds": 100},
            "instanceGroups": [{"kind": "KIND_GPU", "count": 2}],
        },
    },
    "runtime": {
        "gpus": 1,
        "resources": {"requests": {"cpu": "2"}, "limits": {"memory": "8Gi"}},
        "nodeSelector": {"a": "1", "b": "2"},
    },
    "scaling": {"minReplicas": 2, "maxReplicas": 5},
}


def reordered(value: Any) -> Any:
    """The same data with every mapping's keys in reverse order."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


def rev(raw: dict[str, Any]) -> str:
    return revision(parse_spec(raw))


def test_revision_is_a_short_hex_hash() -> None:
    value = rev(FULL)
    assert len(value) == 10
    assert int(value, 16) >= 0  # a DNS-label-safe suffix for ConfigMap names


def test_revision_ignores_key_order() -> None:
    assert rev(reordered(FULL)) == rev(FULL)


def test_revision_is_stable_across_parses() -> None:
    # A frozen value: a restarted operator computes the same revision for the same spec.
    assert rev(FULL) == rev(copy.deepcopy(FULL))


@pytest.mark.parametrize(
    "explicit",
    [
        spec_with(model={"backend": "onnxruntime"}),
        spec_with(runtime={"gpus": 1}),
        spec_with(runtime={"image": DEFAULT_TRITON_IMAGE, "imagePullPolicy": "IfNotPresent"}),
        spec_with(runtime={"modelLoadTimeout": "15m"}),
        spec_with(runtime={"resources": {"requests": {}, "limits": {}}, "args": [], "tolerations": []}),
        spec_with(runtime={"nodeSelector": {}}),
        spec_with(runtime={"gpuResource": "nvidia.com/gpu"}),
        spec_with(scaling={"minReplicas": 1, "maxReplicas": 1, "metrics": []}),
        spec_with(
            rollout={"strategy": "Canary", "steps": [{"weight": 10}, {"weight": 50}], "interval": "1m"}
        ),
        spec_with(traffic={}),
    ],
    ids=[
        "backend",
        "gpus",
        "image",
        "model-load-timeout",
        "empty-resources-args-tolerations",
        "empty-node-selector",
        "gpu-resource",
        "scaling",
        "rollout",
        "traffic",
    ],
)
def test_explicit_default_gives_the_same_revision(explicit: dict[str, Any]) -> None:
    assert rev(explicit) == rev(MINIMAL)


def test_explicit_config_defaults_give_the_same_revision() -> None:
    omitted = spec_with(model={"config": {"maxBatchSize": 4, "instanceGroups": [{}]}})
    explicit = spec_with(
        model={
            "config": {
                "maxBatchSize": 4,
                "instanceGroups": [{"kind": "KIND_GPU", "count": 1}],
                "parameters": {},
            }
        }
    )
    assert rev(explicit) == rev(omitted)


@pytest.mark.parametrize(
    "change",
    [
        {"model": {**FULL["model"], "version": "8"}},
        {"model": {**FULL["model"], "storageUri": "s3://models/fraud_scorer/8"}},
        {"model": {**FULL["model"], "backend": "tensorrt"}},
        {"model": {**FULL["model"], "config": {**FULL["model"]["config"], "maxBatchSize": 16}}},
        {"model": {**FULL["model"], "storageSecretRef": {"name": "other-creds"}}},
        {"runtime": {**FULL["runtime"], "image": "nvcr.io/nvidia/tritonserver:25.11-py3"}},
        {"runtime": {**FULL["runtime"], "gpus": 2}},
        {"runtime": {**FULL["runtime"], "args": ["--log-verbose=1"]}},
        {
            "runtime": {
                **FULL["runtime"],
                "resources": {"requests": {"cpu": "2"}, "limits": {"memory": "16Gi"}},
            }
        },
        {"runtime": {**FULL["runtime"], "gpuResource": "nvidia.com/mig-1g.10gb"}},
        {"runtime": {**FULL["runtime"], "nodeSelector": {"a": "1"}}},
    ],
    ids=[
        "model-version",
        "storage-uri",
        "backend",
        "config",
        "storage-secret",
        "image",
        "gpus",
        "triton-args",
        "resources",
        "gpu-resource",
        "node-selector",
    ],
)
def test_pod_changes_give_a_new_revision(change: dict[str, Any]) -> None:
    assert rev({**FULL, **change}) != rev(FULL)


@pytest.mark.parametrize(
    "change",
    [
        {"scaling": {"minReplicas": 3, "maxReplicas": 30, "metrics": [{"cpu": {"averageUtilization": 50}}]}},
        {"scaling": {"minReplicas": 2, "maxReplicas": 5, "behavior": {"scaleDown": {}}}},
        {"traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}},
        {"traffic": {"istio": {"hosts": ["m.example.com"]}}},
        {"rollout": {"steps": [{"weight": 5}, {"weight": 20, "pause": "5m"}], "interval": "30s"}},
        {"rollout": {"strategy": "BlueGreen", "failureThreshold": 5, "analysis": {"minSampleCount": 10}}},
    ],
    ids=["scaling", "hpa-behavior", "gateway-api", "istio", "canary-steps", "strategy-and-analysis"],
)
def test_scaling_traffic_and_rollout_changes_keep_the_revision(change: dict[str, Any]) -> None:
    # Editing how a model is scaled, routed or rolled out must not start a canary of itself.
    assert rev({**FULL, **change}) == rev(FULL)


# ----------------------------------------------------------------------------------- conditions

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def ready(status: str, reason: str = "Serving", at: str = T0) -> Condition:
    return Condition(
        type="Ready", status=status, reason=reason, message="", last_transition_time=at, observed_generation=1
    )


@pytest.mark.parametrize(
    ("before", "status", "expected_time"),
    [
        ([], "True", T1),
        ([ready("True")], "True", T0),
        ([ready("False", "Loading")], "False", T0),
        ([ready("True")], "False", T1),
        ([ready("False", "Loading")], "True", T1),
        ([ready("Unknown", "Starting")], "True", T1),
    ],
    ids=["new", "still-true", "still-false", "true-to-false", "false-to-true", "unknown-to-true"],
)
def test_last_transition_time_moves_only_when_status_flips(
    before: list[Condition], status: str, expected_time: str
) -> None:
    after = set_condition(
        before, type="Ready", status=status, reason="Changed", message="m", now=T1, observed_generation=2
    )
    found = find_condition(after, "Ready")
    assert found is not None
    assert found.last_transition_time == expected_time
    # Reason, message and observedGeneration are always current, even when the time stays.
    assert (found.status, found.reason, found.message, found.observed_generation) == (
        status,
        "Changed",
        "m",
        2,
    )


def test_set_condition_keeps_other_conditions_sorted_and_does_not_mutate() -> None:
    degraded = Condition(type="Degraded", status="False", reason="AsExpected", last_transition_time=T0)
    before = [ready("True"), degraded]
    after = set_condition(
        before, type="Progressing", status="True", reason="Rolling", message="", now=T1, observed_generation=1
    )
    assert [c.type for c in after] == ["Degraded", "Progressing", "Ready"]
    assert after[0] == degraded
    assert [c.type for c in before] == ["Ready", "Degraded"]
    assert (
        len(
            set_condition(
                after, type="Ready", status="True", reason="R", message="", now=T1, observed_generation=1
            )
        )
        == 3
    )


def test_condition_serialises_as_metav1_condition() -> None:
    dumped = ready("True").model_dump(by_alias=True, exclude_none=True)
    assert set(dumped) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}


@pytest.mark.parametrize(
    "raw",
    [None, {}, {"phase": "Exploded"}, {"conditions": "nope"}],
    ids=["none", "empty", "unknown-phase", "malformed-conditions"],
)
def test_unreadable_status_is_treated_as_empty(raw: dict[str, Any] | None) -> None:
    assert parse_status(raw) == parse_status({})


def test_status_tolerates_fields_from_a_newer_operator() -> None:
    assert parse_status({"phase": "Stable", "futureField": 1}).phase == "Stable"


# ------------------------------------------------------------------------- errors name the field


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "spec: required"),
        ({}, "spec: required"),
        (
            spec_with(scaling={"minReplicas": 3, "maxReplicas": 2}),
            "spec.scaling.minReplicas: minReplicas must be less than or equal to maxReplicas",
        ),
        (spec_with(runtime={"gpus": 1, "gpu": 1}), "spec.runtime.gpu: unknown field; did you mean gpus?"),
        (
            spec_with(model={"config": {"maxBatch": 3}}),
            "spec.model.config.maxBatch: unknown field; did you mean maxBatchSize?",
        ),
        (
            spec_with(extra={"a": 1}),
            "spec.extra: unknown field; the fields here are "
            "model, runtime, scaling, traffic, rollout, networkPolicy, alerts",
        ),
        (
            spec_with(scaling={"maxReplicas": 3, "metrics": [{"cpu": {"averageUtilization": 50}}, {}]}),
            "spec.scaling.metrics[1]: set exactly one of cpu, memory, queueTimeMicroseconds or raw",
        ),
        (
            spec_with(rollout={"steps": [{"weight": 5}, {"weight": 101}]}),
            "spec.rollout.steps[1].weight: must be at most 100, not 101",
        ),
        (
            spec_with(traffic={"gatewayAPI": {"parentRefs": [{"port": 80}]}}),
            "spec.traffic.gatewayAPI.parentRefs[0].name: required",
        ),
        (
            spec_with(traffic={"istio": {}}, rollout={"match": [{"headers": {"x-cohort": {}}}]}),
            "spec.rollout.match[0].headers.x-cohort: set exactly one of exact, prefix or regex",
        ),
        (
            spec_with(rollout={"steps": [{"weight": 50}, {"weight": 20}]}),
            "spec.rollout.steps: weights must increase step by step: "
            "each step's weight must be greater than the one before",
        ),
        (
            spec_with(runtime={"gpus": 0, "gpuResource": "nvidia.com/gpu"}),
            "spec.runtime.gpus: gpuResource is set but gpus is 0: "
            "ask for at least one GPU or drop gpuResource",
        ),
        (
            spec_with(runtime={"modelLoadTimeout": "2s"}),
            "spec.runtime.modelLoadTimeout: must be between 10s and 6h",
        ),
    ],
    ids=[
        "no-spec",
        "empty-spec",
        "min-above-max-names-min-replicas",
        "unknown-field",
        "unknown-nested-field",
        "unknown-section",
        "list-index",
        "nested-list-index",
        "required-in-list",
        "map-key",
        "steps-not-increasing",
        "gpu-resource-names-gpus",
        "duration-bounds",
    ],
)
def test_error_names_the_field(raw: dict[str, Any] | None, expected: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(raw)
    assert expected in caught.value.problems


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(2, id="int"),
        pytest.param("500m", id="milli"),
        pytest.param("1.5", id="decimal"),
        pytest.param("8Gi", id="binary-suffix"),
        pytest.param("1e3", id="exponent"),
        pytest.param(".5", id="leading-dot"),
    ],
)
def test_quantities_the_operator_accepts(value: int | str) -> None:
    spec = parse_spec(spec_with(runtime={"resources": {"limits": {"memory": value}}}))
    assert spec.runtime.resources.limits["memory"] == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("lots", id="words"),
        pytest.param("500 m", id="space-before-unit"),
        pytest.param("8GB", id="decimal-suffix-spelled-like-bytes"),
        pytest.param(0.5, id="yaml-float"),
        pytest.param(True, id="bool"),
        pytest.param("1" * 65, id="longer-than-the-crd-allows"),
    ],
)
def test_a_bad_quantity_gets_one_problem_with_the_cel_rules_message(value: Any) -> None:
    # One check for int-or-string, so pydantic never reports both union members.
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(spec_with(runtime={"resources": {"limits": {"memory": value}}}))
    assert caught.value.problems == [f"spec.runtime.resources.limits.memory: {QUANTITY_MESSAGE}"]


def test_a_bad_header_name_is_named_at_the_map_as_the_cel_rule_does() -> None:
    raw = spec_with(traffic={"istio": {}}, rollout={"match": [{"headers": {"x cohort": {"exact": "b"}}}]})
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(raw)
    assert caught.value.problems == [f"spec.rollout.match[0].headers: {HEADER_NAME_MESSAGE}"]


def test_every_problem_is_reported_once_each_naming_its_field() -> None:
    raw = {"model": {"version": 7}, "runtime": {"gpus": -1}, "scaling": {"minReplicas": 0}}
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(raw)
    problems = caught.value.problems
    assert [p.split(": ", 1)[0] for p in problems] == [
        "spec.model.name",
        "spec.model.storageUri",
        "spec.model.version",
        "spec.runtime.gpus",
        "spec.scaling.minReplicas",
    ]
    assert len(set(problems)) == len(problems)
    assert str(caught.value) == "; ".join(problems)


def test_valid_spec_round_trips_through_its_wire_form() -> None:
    spec = parse_spec(FULL)
    wire = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert ModelDeploymentSpec.model_validate(wire) == spec
    assert "storageUri" in wire["model"]
    assert "storage_uri" not in wire["model"]


# ------------------------------------------------------------------ flags the operator owns


def _args_problems(args: list[str]) -> list[str]:
    try:
        parse_spec(spec_with(runtime={"args": args}))
    except InvalidSpecError as error:
        return error.problems
    return []


# (args, index of the refused item or None): each refused as getopt_long would read it.
RESERVED_ARGS = [
    pytest.param(["--model-control-mode=explicit"], 0, id="exact-with-value"),
    pytest.param(["--model-control=explicit"], 0, id="abbreviated-with-value"),
    pytest.param(["--model-control", "explicit"], 0, id="abbreviated-value-in-next-arg"),
    pytest.param(["--model-control-mode", "explicit"], 0, id="exact-value-in-next-arg"),
    pytest.param(["--log-verbose=1", "--strict-r=false"], 1, id="strict-readiness-abbreviated"),
    pytest.param(["--exit-on=false"], 0, id="exit-on-error-abbreviated"),
    pytest.param(["--model-rep=/x"], 0, id="model-repository-abbreviated"),
    pytest.param(["--model-s=/x"], 0, id="model-store-abbreviated"),
    pytest.param(["--load-m=*"], 0, id="load-model-abbreviated"),
    pytest.param(["--http-p=9000"], 0, id="http-port-abbreviated"),
    pytest.param(["--grpc-addr", "0.0.0.0"], 0, id="grpc-address-abbreviated-next-arg"),
    pytest.param(["--metrics-a=0.0.0.0"], 0, id="metrics-address-abbreviated"),
    pytest.param(["--http-restricted=model-repository:k=v"], 0, id="http-restricted-api-abbreviated"),
    pytest.param(["--grpc-r=trace:k=v"], 0, id="grpc-restricted-protocol-abbreviated"),
    pytest.param(["--allow-grpc=false"], 0, id="allow-exact"),
    pytest.param(["--allow-g=false"], 0, id="allow-abbreviated"),
    pytest.param(["--allow=false"], 0, id="allow-family-prefix"),
    pytest.param(["--allow-future-endpoint=true"], 0, id="allow-unknown-future"),
    pytest.param(["-model-repository=/x"], 0, id="one-dash"),
    pytest.param(["-strict-r", "false"], 0, id="one-dash-abbreviated"),
    pytest.param(["--model-repository="], 0, id="empty-value"),
    pytest.param(["--log-info=true", "--m"], 1, id="shortest-prefix"),
    pytest.param(["--log-file", "/tmp/l", "--e", "false"], 2, id="one-letter-prefix-next-arg"),
]


@pytest.mark.parametrize(("args", "index"), RESERVED_ARGS)
def test_a_flag_the_operator_owns_is_refused_however_spelled(args: list[str], index: int) -> None:
    assert is_reserved_flag(args[index])
    assert _args_problems(args) == [f"spec.runtime.args[{index}]: {RESERVED_FLAG_MESSAGE}"]


ALLOWED_ARGS = [
    pytest.param(["--log-verbose=1"], id="other-flag"),
    pytest.param(["--model-load-thread-count=8"], id="model-prefixed-other-flag"),
    pytest.param(["--model-config-name=prod"], id="model-config-name"),
    pytest.param(["--http-thread-count", "8"], id="http-prefixed-other-flag-next-arg"),
    pytest.param(["--grpc-infer-thread-count=4"], id="grpc-prefixed-other-flag"),
    pytest.param(["--metrics-config=summary_latencies=true"], id="value-with-equals"),
    pytest.param(
        ["--backend-config=python,shm-default-byte-size=--model-repository"], id="reserved-in-value"
    ),
    pytest.param(["--id", "model-repository"], id="reserved-name-as-next-arg-value"),
    pytest.param(["--log-file", "/var/log/model-control-mode"], id="value-without-dash"),
    pytest.param(["--"], id="end-of-options"),
    pytest.param(["--exit-timeout-secs=5"], id="exit-prefixed-other-flag"),
    pytest.param(["--strict-model-config=false"], id="strict-prefixed-other-flag"),
]


@pytest.mark.parametrize("args", ALLOWED_ARGS)
def test_other_flags_are_accepted(args: list[str]) -> None:
    assert _args_problems(args) == []


# A model of glibc's getopt_long (posix/getopt.c, process_long_option) on tritonserver's options:
# the exact name wins; else the options the name abbreviates, ambiguous only when they differ in
# option id or in taking a value.
def _getopt_long(name: str) -> str | None:
    """The option id `--name` selects, or None when tritonserver rejects it (unknown or ambiguous)."""
    for option, option_id, _ in TRITON_LONG_OPTIONS:
        if option == name:
            return option_id
    found = {
        (option_id, takes) for option, option_id, takes in TRITON_LONG_OPTIONS if option.startswith(name)
    }
    return next(iter(found))[0] if len(found) == 1 else None


RESERVED_IDS = {
    i
    for option, i, _ in TRITON_LONG_OPTIONS
    if option in RESERVED_TRITON_FLAGS or option.startswith("allow-")
}


def test_the_reserved_flags_are_tritonservers() -> None:
    names = {option for option, _, _ in TRITON_LONG_OPTIONS}
    assert len(names) == len(TRITON_LONG_OPTIONS)
    assert set(RESERVED_TRITON_FLAGS) <= names
    assert any(name.startswith(RESERVED_FLAG_FAMILY) for name in names)


def test_every_spelling_getopt_long_reads_as_a_reserved_flag_is_refused() -> None:
    """Every prefix of every option name, in every form: refused exactly when tritonserver would read
    it as a flag we own, or when it is a prefix of one that tritonserver rejects (ambiguous)."""
    prefixes = {option[:n] for option, _, _ in TRITON_LONG_OPTIONS for n in range(1, len(option) + 1)}
    for name in sorted(prefixes):
        selected = _getopt_long(name)
        refused = is_reserved_flag(f"--{name}")
        for form in (f"--{name}=v", f"-{name}", f"-{name}=v"):
            assert is_reserved_flag(form) == refused, form
        if selected in RESERVED_IDS:
            assert refused, f"--{name} sets a reserved flag and passes"
        elif selected is not None:
            assert not refused, f"--{name} is tritonserver's {selected}, not ours, and is refused"


# ------------------------------------------------------------------------ bounds that cross


def _metric(**fields: Any) -> dict[str, Any]:
    return spec_with(rollout={"analysis": {"metrics": [{"name": "m", "template": "successRate", **fields}]}})


AT = "spec.rollout.analysis.metrics[0]"
CROSSED_BOUNDS = [
    pytest.param(_metric(min=0.99, max=0.5), f"{AT}.min", "min", "max", id="min-above-max"),
    pytest.param(_metric(min=1, max=0), f"{AT}.min", "min", "max", id="min-above-max-integers"),
    pytest.param(
        _metric(relativeToPrimary={"minRatio": 1.2, "maxRatio": 1.1}),
        f"{AT}.relativeToPrimary.minRatio",
        "minRatio",
        "maxRatio",
        id="min-ratio-above-max-ratio",
    ),
    pytest.param(
        _metric(relativeToPrimary={"minDelta": 0, "maxDelta": -0.5}),
        f"{AT}.relativeToPrimary.minDelta",
        "minDelta",
        "maxDelta",
        id="min-delta-above-max-delta",
    ),
]


@pytest.mark.parametrize(("raw", "field", "low", "high"), CROSSED_BOUNDS)
def test_a_lower_bound_above_its_upper_bound_is_refused(
    raw: dict[str, Any], field: str, low: str, high: str
) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(raw)
    assert caught.value.problems == [f"{field}: {inverted_bounds_message(low, high)}"]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(_metric(min=0.5, max=0.5), id="min-equals-max"),
        pytest.param(_metric(min=0.5, max=0.9), id="min-below-max"),
        pytest.param(_metric(min=2), id="min-alone"),
        pytest.param(_metric(relativeToPrimary={"minRatio": 1, "maxRatio": 1}), id="ratios-equal"),
        pytest.param(_metric(relativeToPrimary={"minRatio": 5}), id="min-ratio-alone"),
        pytest.param(_metric(relativeToPrimary={"minDelta": -1, "maxDelta": 1}), id="deltas-around-zero"),
    ],
)
def test_bounds_that_leave_room_are_accepted(raw: dict[str, Any]) -> None:
    parse_spec(raw)


# ------------------------------------------------------------------------ free-form nesting


def _nested(levels: int, with_lists: bool = False) -> dict[str, Any]:
    """A mapping `levels` deep (the outer mapping is level 1); lists count as levels too."""
    value: Any = 1
    for level in range(levels - 1):
        value = [value] if with_lists and level % 2 else {"a": value}
    return {"a": value}


FREE_FORM_FIELDS = [
    pytest.param("runtime", "affinity", {}, id="affinity"),
    pytest.param("scaling", "behavior", {"maxReplicas": 2}, id="behavior"),
]


@pytest.mark.parametrize(
    ("levels", "with_lists", "accepted"),
    [
        pytest.param(FREE_FORM_MAX_DEPTH, False, True, id="at-the-bound"),
        pytest.param(FREE_FORM_MAX_DEPTH + 1, False, False, id="one-past"),
        pytest.param(FREE_FORM_MAX_DEPTH + 1, True, False, id="one-past-through-lists"),
        pytest.param(5000, False, False, id="past-the-recursion-limit"),
    ],
)
@pytest.mark.parametrize(("section", "field", "extra"), FREE_FORM_FIELDS)
def test_free_form_fields_are_bounded_in_depth(
    section: str, field: str, extra: dict[str, Any], levels: int, with_lists: bool, accepted: bool
) -> None:
    raw = spec_with(**{section: {**extra, field: _nested(levels, with_lists)}})
    if accepted:
        parse_spec(raw)
        return
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(raw)
    assert caught.value.problems == [f"spec.{section}.{field}: {FREE_FORM_DEPTH_MESSAGE}"]


def test_a_raw_metric_is_bounded_in_depth() -> None:
    raw = spec_with(scaling={"maxReplicas": 2, "metrics": [{"raw": _nested(FREE_FORM_MAX_DEPTH + 1)}]})
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(raw)
    assert caught.value.problems == [f"spec.scaling.metrics[0].raw: {FREE_FORM_DEPTH_MESSAGE}"]
