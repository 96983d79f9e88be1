"""Discovery declarations for the resources that the operator, kopf and the demo touch."""

from __future__ import annotations

import dataclasses

DEFAULT_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


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
        "apps", "v1", "deployments", "Deployment", subresources=("status",), short_names=("deploy",)
    ),
    ResourceSpec(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        subresources=("status",),
        short_names=("hpa",),
    ),
    ResourceSpec("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short_names=("netpol",)),
    ResourceSpec("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceSpec("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", namespaced=False),
    ResourceSpec("monitoring.coreos.com", "v1", "podmonitors", "PodMonitor", short_names=("pmon",)),
    ResourceSpec("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor", short_names=("smon",)),
    ResourceSpec(
        "monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule", short_names=("promrule",)
    ),
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
