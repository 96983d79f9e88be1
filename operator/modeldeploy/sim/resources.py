"""Discovery declarations for the resources that the operator and kopf touch."""

from __future__ import annotations

import dataclasses

# API groups served by the API server itself. Everything else is a custom resource,
# which matters: strategic merge patch is rejected for custom resources (415).
BUILTIN_GROUPS = frozenset(
    {
        "",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "apps",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
    }
)

DEFAULT_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

# Field selectors that the API server accepts beyond metadata.name and metadata.namespace.
# Other fields are rejected with 400 "field label not supported", as a real server does.
EXTRA_FIELD_SELECTORS: dict[tuple[str, str], frozenset[str]] = {
    ("", "pods"): frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    ("", "events"): frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    ("", "secrets"): frozenset({"type"}),
    ("", "namespaces"): frozenset({"status.phase"}),
}


@dataclasses.dataclass(frozen=True)
class ResourceSpec:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    singular: str | None = None


BUILTIN_RESOURCES: tuple[ResourceSpec, ...] = (
    ResourceSpec(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        subresources=("status",),
        short_names=("crd", "crds"),
    ),
    ResourceSpec(
        "",
        "v1",
        "namespaces",
        "Namespace",
        namespaced=False,
        subresources=("status", "finalize"),
        short_names=("ns",),
    ),
    ResourceSpec("", "v1", "events", "Event", short_names=("ev",)),
    ResourceSpec("events.k8s.io", "v1", "events", "Event", short_names=("ev",)),
    ResourceSpec("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    ResourceSpec("", "v1", "services", "Service", subresources=("status",), short_names=("svc",)),
    ResourceSpec("", "v1", "secrets", "Secret"),
    ResourceSpec("", "v1", "pods", "Pod", subresources=("status",), short_names=("po",)),
    ResourceSpec("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    ResourceSpec(
        "apps", "v1", "deployments", "Deployment", subresources=("status", "scale"), short_names=("deploy",)
    ),
    ResourceSpec(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        subresources=("status",),
        short_names=("hpa",),
    ),
    ResourceSpec("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceSpec("monitoring.coreos.com", "v1", "podmonitors", "PodMonitor", short_names=("pmon",)),
    ResourceSpec("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor", short_names=("smon",)),
    ResourceSpec("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", subresources=("status",)),
    ResourceSpec("gateway.networking.k8s.io", "v1", "grpcroutes", "GRPCRoute", subresources=("status",)),
    ResourceSpec(
        "networking.istio.io",
        "v1",
        "virtualservices",
        "VirtualService",
        subresources=("status",),
        short_names=("vs",),
    ),
    ResourceSpec(
        "modeldeploy.io",
        "v1alpha1",
        "modeldeployments",
        "ModelDeployment",
        subresources=("status",),
        short_names=("mdep",),
    ),
)
