"""The one table of the kinds a ModelDeployment owns: what the shell watches and caches, what a pass
lists and prunes, what the adapter maps to API paths, and what the test bed and the bench read.

An optional kind exists only where another project's CRD is installed. It is watched, listed and
pruned only where that CRD serves the version rendered here. An older version is not used even
where its schema would do (Istio's v1beta1, Gateway API's v1beta1 HTTPRoute): only the version we
render is tested, and the object that needs it says so in its status while every other object
reconciles as usual.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from modeldeploy.api.base import GROUP, PLURAL, VERSION


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def collection(self, namespace: str | None) -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"


class Propagation(Enum):
    """How a child no longer wanted is deleted (the DELETE's propagationPolicy). Background: the
    child goes at once and the garbage collector removes what it owns (a Deployment's ReplicaSets
    and pods) after it, so a prune never waits on pods draining."""

    BACKGROUND = "Background"


@dataclass(frozen=True)
class ChildKind:
    kind: Kind
    crd: str | None = None  # optional: the CRD (plural.group) that must serve kind.version
    prune: Propagation = Propagation.BACKGROUND

    @property
    def optional(self) -> bool:
        return self.crd is not None


def _child(api_version: str, kind: str, plural: str, optional: bool = False) -> ChildKind:
    found = Kind(api_version, kind, plural)
    return ChildKind(found, f"{plural}.{found.group}" if optional else None)


CHILD_KINDS: tuple[ChildKind, ...] = (
    _child("apps/v1", "Deployment", "deployments"),
    _child("v1", "Service", "services"),
    _child("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    _child("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    _child("monitoring.coreos.com/v1", "PodMonitor", "podmonitors", optional=True),
    _child("monitoring.coreos.com/v1", "PrometheusRule", "prometheusrules", optional=True),
    _child("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes", optional=True),
    _child("gateway.networking.k8s.io/v1", "GRPCRoute", "grpcroutes", optional=True),
    _child("networking.istio.io/v1", "VirtualService", "virtualservices", optional=True),
)
REQUIRED_KINDS: tuple[Kind, ...] = tuple(child.kind for child in CHILD_KINDS if child.crd is None)
OPTIONAL_CRDS: tuple[str, ...] = tuple(child.crd for child in CHILD_KINDS if child.crd is not None)
MODEL_DEPLOYMENT = Kind(f"{GROUP}/{VERSION}", "ModelDeployment", PLURAL)
PODS = Kind("v1", "Pod", "pods")  # not a child: read to tell a crashing canary from a slow one, and by gates
CRD = Kind("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False)

ServedVersions = Mapping[str, tuple[str, ...] | None]  # CRD name -> versions it serves (None: absent)


def child_kind(api_version: str, kind: str) -> ChildKind | None:
    return next((c for c in CHILD_KINDS if (c.kind.api_version, c.kind.kind) == (api_version, kind)), None)


def served_versions(crd: Mapping[str, Any]) -> tuple[str, ...]:
    """The versions a CustomResourceDefinition object serves."""
    versions = (crd.get("spec") or {}).get("versions") or []
    return tuple(str(v["name"]) for v in versions if v.get("served") and v.get("name"))


def served_optional_kinds(installed: ServedVersions) -> list[Kind]:
    """The optional child kinds whose CRD serves the version rendered here: listed, applied and
    pruned beside REQUIRED_KINDS."""
    return [
        child.kind
        for child in CHILD_KINDS
        if child.crd and child.kind.version in (installed.get(child.crd) or ())
    ]


def unserved_message(api_version: str, kind: str, installed: ServedVersions) -> str:
    """Why a child of an optional kind cannot be applied here, for the object's status."""
    group, _, version = api_version.rpartition("/")
    child = child_kind(api_version, kind)
    crd = (child.crd if child is not None else None) or ""
    served = installed.get(crd)
    if not served:
        return f"the {kind} CRD ({api_version}) is not installed"
    return (
        f"needs {kind} {api_version}, but the cluster serves {group} {', '.join(served)} only:"
        f" upgrade the {crd} CRD to one that serves {version}"
    )
