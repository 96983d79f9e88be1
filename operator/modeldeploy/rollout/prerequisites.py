"""What the cluster lacks for the features a spec uses, where the operator can tell (pure).

docs/install.md lists, per feature, what a cluster needs. Of those, the operator can see:
- a missing (or too old) CRD: Gateway API for `traffic.gatewayAPI`, Istio for `traffic.istio`, the
  Prometheus Operator's PrometheusRule for alerts set up beyond the defaults (the default alerts,
  which every object has, are created where the CRD exists and quietly skipped where not);
- pods the scheduler cannot place for want of the GPU resource: the scheduler's own message
  ("0/3 nodes are available: 3 Insufficient nvidia.com/gpu.") on the pods of our Deployments, which
  the operator reads anyway while they are not ready. It does not tell "no node has this resource"
  from "every one is in use", so the message names both; reading Nodes would tell them apart at the
  price of a cluster-wide grant and a watch on every Node (docs/install.md, "What the operator reports").

It cannot see prometheus-adapter (the HPA reports a missing metric itself: `kubectl describe hpa`).

The result becomes the `Prerequisites` condition: False, with the first missing thing as reason and
all of them in the message, when anything is missing; True again once it is installed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from modeldeploy.api.spec import Alerts, ModelDeploymentSpec
from modeldeploy.api.status import ConditionStatus
from modeldeploy.render.kinds import ServedVersions, child_kind, unserved_message
from modeldeploy.rollout.observe import Observations, PodsSummary

GUIDE = "docs/install.md#what-the-cluster-needs"
# The NodeResourcesFit plugin's words for a resource no node has enough of (or has at all).
_INSUFFICIENT = re.compile(r"Insufficient ([A-Za-z0-9][A-Za-z0-9_.\-/]*[A-Za-z0-9])")
GPU_VENDOR_PREFIX = "nvidia.com/"
MET_REASON = "Met"
_DEFAULT_ALERTS = Alerts().model_dump()


@dataclass(frozen=True)
class Missing:
    reason: str  # the condition's reason: CamelCase, names what is missing
    message: str


def _crd_missing(
    installed: ServedVersions, api_version: str, kind: str, feature: str, install: str, reason: str
) -> Missing | None:
    child = child_kind(api_version, kind)
    if child is None or child.crd is None:
        return None
    if child.kind.version in (installed.get(child.crd) or ()):
        return None
    why = unserved_message(api_version, kind, installed)
    return Missing(reason, f"{feature} needs {install}: {why} ({GUIDE})")


def _router(spec: ModelDeploymentSpec, installed: ServedVersions) -> list[Missing]:
    traffic = spec.traffic
    found: list[Missing] = []
    if traffic.gateway_api is not None:
        kinds = ["HTTPRoute"] + (["GRPCRoute"] if traffic.gateway_api.grpc is not None else [])
        for kind in kinds:
            missing = _crd_missing(
                installed,
                "gateway.networking.k8s.io/v1",
                kind,
                "traffic.gatewayAPI",
                "Gateway API (its CRDs and a Gateway controller)",
                "GatewayAPIMissing",
            )
            if missing is not None:
                found.append(missing)
    if traffic.istio is not None:
        missing = _crd_missing(
            installed, "networking.istio.io/v1", "VirtualService", "traffic.istio", "Istio", "IstioMissing"
        )
        if missing is not None:
            found.append(missing)
    return found


def _alerts(spec: ModelDeploymentSpec, installed: ServedVersions) -> Missing | None:
    # Only alerts set up beyond the defaults (labels, a latency SLA, other thresholds): the default
    # alerts, which the API server fills in for every object, apply quietly where the CRD is absent.
    if not spec.alerts.enabled or spec.alerts.model_dump() == _DEFAULT_ALERTS:
        return None
    missing = _crd_missing(
        installed,
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        "alerts",
        "the Prometheus Operator",
        "PrometheusOperatorMissing",
    )
    if missing is None:
        return None
    return Missing(missing.reason, f"{missing.message}; no alerts are created (or set alerts.enabled: false)")


def unschedulable_resource(message: str | None) -> str | None:
    """The extended resource a scheduler message says no node has enough of, if a GPU one."""
    for found in _INSUFFICIENT.findall(message or ""):
        if found.startswith(GPU_VENDOR_PREFIX):
            return str(found)
    return None


def _gpu(spec: ModelDeploymentSpec, seen: Observations) -> Missing | None:
    for pods in (seen.primary_pods or PodsSummary(), seen.canary_pods):
        resource = unschedulable_resource(pods.unschedulable)
        if resource is None:
            continue
        if "/mig-" in resource:
            what = (
                f"a MIG profile: the GPU Operator (or NVIDIA's device plugin) with the mixed MIG strategy, "
                f"on GPUs partitioned into {resource.removeprefix('nvidia.com/mig-')} instances"
            )
            reason = "MIGResourceUnavailable"
        else:
            what = "NVIDIA's device plugin or the GPU Operator on the GPU nodes"
            reason = "GPUResourceUnavailable"
        return Missing(
            reason,
            f"runtime.gpus needs {resource} on a node: {pods.unschedulable}; no node has a free"
            f" {resource}: if none advertises it at all (kubectl describe nodes), install {what};"
            f" on a cluster without GPUs set runtime.gpus: 0 ({GUIDE})",
        )
    return None


def missing_prerequisites(spec: ModelDeploymentSpec, seen: Observations) -> list[Missing]:
    """Everything missing that this spec needs, in a fixed order; [] when nothing is (or when the
    installed CRDs are not known this pass: nothing is claimed missing on no evidence)."""
    found: list[Missing] = []
    installed: Mapping[str, tuple[str, ...] | None] | None = seen.installed
    if installed is not None:
        found += _router(spec, installed)
        alerts = _alerts(spec, installed)
        if alerts is not None:
            found.append(alerts)
    gpu = _gpu(spec, seen)
    if gpu is not None:
        found.append(gpu)
    return found


def prerequisites_condition(
    spec: ModelDeploymentSpec, seen: Observations, has_condition: bool
) -> tuple[ConditionStatus, str, str] | None:
    """(status, reason, message) of the Prerequisites condition; None: leave it out (nothing is
    missing and it was never set, so objects on a complete cluster do not carry it at all)."""
    missing = missing_prerequisites(spec, seen)
    if missing:
        return "False", missing[0].reason, "; ".join(m.message for m in missing)
    if seen.primary is not None and not seen.primary.rolled_out and seen.primary_pods is None:
        # Its pods were not read this pass (handlers/reconciler.py reads them once the primary has
        # been unavailable a while): what they said last stands.
        return None
    if has_condition:
        return "True", MET_REASON, "the cluster has what this spec uses"
    return None
