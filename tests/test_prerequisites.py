"""What the cluster lacks for a spec (rollout/prerequisites.py): named cases, then the condition the
machine sets from it. The same condition on the real API server, with the operator as a process:
tests/test_quickstart.py."""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any

import pytest

from modeldeploy.api.conditions import find_condition
from modeldeploy.api.resource import ObjectRef, parse_spec
from modeldeploy.api.status import ModelDeploymentStatus
from modeldeploy.render.kinds import OPTIONAL_CRDS
from modeldeploy.rollout.machine import decide
from modeldeploy.rollout.observe import DeploymentState, Observations, PodsSummary
from modeldeploy.rollout.prerequisites import (
    GUIDE,
    missing_prerequisites,
    prerequisites_condition,
    unschedulable_resource,
)

ALL = dict.fromkeys(OPTIONAL_CRDS, ("v1",))
NONE: dict[str, tuple[str, ...] | None] = dict.fromkeys(OPTIONAL_CRDS)
NO_GPU = "pod s-primary-1: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
NO_MIG = "pod s-primary-1: 0/2 nodes are available: 2 Insufficient nvidia.com/mig-1g.10gb."
NO_CPU = "pod s-primary-1: 0/1 nodes are available: 1 Insufficient cpu."
PARENT = ObjectRef(name="s", namespace="ml", uid="u-1", generation=1)
NOW = datetime.datetime(2026, 12, 7, 8, 0, tzinfo=datetime.UTC)


def spec(**fields: Any) -> Any:
    raw: dict[str, Any] = {
        "model": {"name": "m", "version": "1", "storageUri": "https://h/m.tar.gz"},
        "runtime": {"gpus": 0},
        "scaling": {"minReplicas": 1, "maxReplicas": 1},
    }
    raw.update(fields)
    return parse_spec(raw)


GATEWAY = {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}
GATEWAY_GRPC = {"gatewayAPI": {"parentRefs": [{"name": "gw"}], "grpc": {"hostnames": ["g.example.com"]}}}
ISTIO = {"istio": {"hosts": ["m.example.com"]}}


@pytest.mark.parametrize(
    ("the_spec", "installed", "primary_unschedulable", "reasons", "words"),
    [
        pytest.param(spec(), NONE, None, [], [], id="cpu-only-plain-cluster-needs-nothing"),
        pytest.param(spec(traffic=GATEWAY), ALL, None, [], [], id="gateway-api-installed"),
        pytest.param(
            spec(traffic=GATEWAY),
            NONE,
            None,
            ["GatewayAPIMissing"],
            [
                "traffic.gatewayAPI needs Gateway API",
                "HTTPRoute CRD (gateway.networking.k8s.io/v1) is not installed",
            ],
            id="gateway-api-absent",
        ),
        pytest.param(
            spec(traffic=GATEWAY_GRPC),
            {**ALL, "grpcroutes.gateway.networking.k8s.io": None},
            None,
            ["GatewayAPIMissing"],
            ["GRPCRoute CRD"],
            id="grpc-route-crd-absent",
        ),
        pytest.param(
            spec(traffic=GATEWAY),
            {**ALL, "httproutes.gateway.networking.k8s.io": ("v1beta1",)},
            None,
            ["GatewayAPIMissing"],
            ["serves gateway.networking.k8s.io v1beta1 only"],
            id="gateway-api-too-old",
        ),
        pytest.param(
            spec(traffic=ISTIO),
            NONE,
            None,
            ["IstioMissing"],
            ["traffic.istio needs Istio"],
            id="istio-absent",
        ),
        pytest.param(spec(), NONE, None, [], [], id="default-alerts-unasked-are-not-reported"),
        pytest.param(spec(alerts={}), NONE, None, [], [], id="default-alerts-filled-in"),
        pytest.param(
            spec(alerts={"labels": {"team": "a"}}),
            NONE,
            None,
            ["PrometheusOperatorMissing"],
            ["alerts needs the Prometheus Operator", "PrometheusRule CRD", "no alerts are created"],
            id="alerts-asked-prometheus-operator-absent",
        ),
        pytest.param(spec(alerts={"enabled": False}), NONE, None, [], [], id="alerts-turned-off"),
        pytest.param(
            spec(alerts={"labels": {"team": "a"}}), ALL, None, [], [], id="alerts-with-the-operator"
        ),
        pytest.param(
            spec(runtime={"gpus": 1}),
            ALL,
            NO_GPU,
            ["GPUResourceUnavailable"],
            [
                "needs nvidia.com/gpu",
                "3 Insufficient nvidia.com/gpu",
                "device plugin or the GPU Operator",
                GUIDE,
            ],
            id="no-node-with-a-gpu",
        ),
        pytest.param(
            spec(runtime={"gpus": 1, "gpuResource": "nvidia.com/mig-1g.10gb"}),
            ALL,
            NO_MIG,
            ["MIGResourceUnavailable"],
            ["needs nvidia.com/mig-1g.10gb", "mixed MIG strategy", "1g.10gb instances"],
            id="no-node-with-the-mig-profile",
        ),
        pytest.param(
            spec(runtime={"gpus": 1}), ALL, NO_CPU, [], [], id="short-of-cpu-is-not-a-gpu-prerequisite"
        ),
        pytest.param(spec(runtime={"gpus": 1}), ALL, None, [], [], id="gpu-pods-scheduled"),
        pytest.param(
            spec(traffic=ISTIO, runtime={"gpus": 2}, alerts={"window": "10m"}),
            NONE,
            NO_GPU,
            ["IstioMissing", "PrometheusOperatorMissing", "GPUResourceUnavailable"],
            [],
            id="several-missing-all-named-router-first",
        ),
    ],
)
def test_what_is_missing(
    the_spec: Any,
    installed: dict[str, tuple[str, ...] | None],
    primary_unschedulable: str | None,
    reasons: list[str],
    words: list[str],
) -> None:
    seen = Observations(installed=installed, primary_pods=PodsSummary(unschedulable=primary_unschedulable))
    found = missing_prerequisites(the_spec, seen)
    assert [m.reason for m in found] == reasons
    text = "; ".join(m.message for m in found)
    for word in words:
        assert word in text, text
    condition = prerequisites_condition(the_spec, seen, has_condition=False)
    if reasons:
        assert condition == ("False", reasons[0], text)
    else:
        assert condition is None, "a spec with all it needs carries no Prerequisites condition"


def test_unknown_crds_claim_nothing_missing() -> None:
    """A pass that could not read the CRDs says nothing about them, rather than something false."""
    seen = Observations(installed=None)
    assert missing_prerequisites(spec(traffic=GATEWAY, alerts={"window": "10m"}), seen) == []


def test_a_canary_short_of_gpus_is_reported_too() -> None:
    seen = Observations(installed=ALL, canary_pods=PodsSummary(unschedulable=NO_GPU))
    assert [m.reason for m in missing_prerequisites(spec(runtime={"gpus": 1}), seen)] == [
        "GPUResourceUnavailable"
    ]


@pytest.mark.parametrize(
    ("message", "resource"),
    [
        pytest.param(NO_GPU, "nvidia.com/gpu", id="gpu"),
        pytest.param(NO_MIG, "nvidia.com/mig-1g.10gb", id="mig"),
        pytest.param(
            "0/4 nodes are available: 1 Insufficient cpu, 3 Insufficient nvidia.com/gpu.",
            "nvidia.com/gpu",
            id="mixed",
        ),
        pytest.param(NO_CPU, None, id="cpu-only"),
        pytest.param("0/1 nodes are available: 1 node(s) had untolerated taint.", None, id="taint"),
        pytest.param(None, None, id="none"),
    ],
)
def test_the_gpu_resource_in_a_scheduler_message(message: str | None, resource: str | None) -> None:
    assert unschedulable_resource(message) == resource


def _loading(unschedulable: str | None) -> Observations:
    primary = DeploymentState(
        desired=1,
        replicas=1,
        ready=0,
        updated=1,
        available=0,
        up_to_date=True,
        deadline_exceeded=False,
        revision=None,
    )
    return Observations(primary=primary, installed=ALL, primary_pods=PodsSummary(unschedulable=unschedulable))


def test_the_machine_sets_the_condition_and_says_why_the_primary_waits_then_clears_it() -> None:
    gpu = spec(runtime={"gpus": 1})
    first = decide(gpu, PARENT, ModelDeploymentStatus(), _loading(NO_GPU), NOW).status
    cond = find_condition(first.conditions, "Prerequisites")
    assert cond is not None and (cond.status, cond.reason) == ("False", "GPUResourceUnavailable")
    assert first.message == f"0/1 replicas ready: {NO_GPU}"
    ready = find_condition(first.conditions, "Ready")
    assert ready is not None and ready.reason == "Unschedulable"
    again = decide(gpu, PARENT, first, _loading(NO_GPU), NOW + datetime.timedelta(seconds=30)).status
    assert again == first, "an unchanged world yields an equal status: nothing to write"
    # The device plugin is installed: the pods are scheduled and load the model.
    fixed = decide(gpu, PARENT, first, replace(_loading(None)), NOW).status
    cond = find_condition(fixed.conditions, "Prerequisites")
    assert cond is not None and (cond.status, cond.reason) == ("True", "Met")
    assert "loading m version 1" in (fixed.message or "")


def test_a_complete_cluster_adds_no_condition() -> None:
    status = decide(spec(), PARENT, ModelDeploymentStatus(), _loading(None), NOW).status
    assert find_condition(status.conditions, "Prerequisites") is None


def test_a_pass_that_did_not_read_the_pods_leaves_the_condition_as_it_was() -> None:
    # The reconciler reads the primary's pods only once it has been unavailable a while: a pass
    # before that knows nothing new about scheduling and must not call the GPU found.
    gpu = spec(runtime={"gpus": 1})
    first = decide(gpu, PARENT, ModelDeploymentStatus(), _loading(NO_GPU), NOW).status
    unread = replace(_loading(None), primary_pods=None)
    later = decide(gpu, PARENT, first, unread, NOW + datetime.timedelta(seconds=5)).status
    assert find_condition(later.conditions, "Prerequisites") == find_condition(
        first.conditions, "Prerequisites"
    )
    fresh = decide(gpu, PARENT, ModelDeploymentStatus(), unread, NOW).status
    assert find_condition(fresh.conditions, "Prerequisites") is None
