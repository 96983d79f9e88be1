"""The NetworkPolicy around a ModelDeployment's Triton pods (both tracks).

Ingress only, and only:
- HTTP 8000 and gRPC 8001 from pods of the same namespace, from the namespaces of the gateways the
  routes attach to (Gateway API parentRefs, Istio `<namespace>/<gateway>`) and from
  spec.networkPolicy.ingressNamespaces;
- metrics 8002 from the namespaces spec.networkPolicy.metricsNamespaceSelector picks (Prometheus);
- HTTP 8000 from the operator's namespace when spec.rollout.gates is set: the gate worker asks the
  canary and the primary pods directly (docs/gates.md).
Kubelet probes come from the node, which NetworkPolicy implementations let through. Egress is left
open: the model puller fetches from object stores outside the cluster, whose addresses no policy
can name.
"""

from __future__ import annotations

from typing import Any

from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.render.deployment import GRPC_PORT, HTTP_PORT, METRICS_PORT
from modeldeploy.render.names import metadata, selector_labels

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server


def gateway_namespaces(parent: ObjectRef, spec: ModelDeploymentSpec) -> list[str]:
    """Namespaces other than the parent's that the routes bring traffic from, sorted."""
    found: set[str] = set(spec.network_policy.ingress_namespaces)
    gateway = spec.traffic.gateway_api
    if gateway is not None:
        refs = [*gateway.parent_refs, *(gateway.grpc.parent_refs if gateway.grpc else [])]
        found.update(ref.namespace for ref in refs if ref.namespace)
    if spec.traffic.istio is not None:
        # Istio names a gateway "<namespace>/<name>"; a bare name is in the VirtualService's namespace.
        found.update(g.split("/", 1)[0] for g in spec.traffic.istio.gateways if "/" in g)
    found.discard(parent.namespace)
    return sorted(found)


def _ports(*numbers: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": number} for number in numbers]


def network_policy(
    parent: ObjectRef, spec: ModelDeploymentSpec, operator_namespace: str | None = None
) -> dict[str, Any] | None:
    if not spec.network_policy.enabled:
        return None
    callers: list[dict[str, Any]] = [{"podSelector": {}}]
    callers += [
        {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}
        for namespace in gateway_namespaces(parent, spec)
    ]
    selector = dict(spec.network_policy.metrics_namespace_selector)
    scrapers = [{"namespaceSelector": {"matchLabels": selector} if selector else {}}]
    rules = [
        {"from": callers, "ports": _ports(HTTP_PORT, GRPC_PORT)},
        {"from": scrapers, "ports": _ports(METRICS_PORT)},
    ]
    gated = spec.rollout.gates is not None
    if (
        gated
        and operator_namespace
        and operator_namespace not in (parent.namespace, *gateway_namespaces(parent, spec))
    ):
        operator = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: operator_namespace}}}
        rules.append({"from": [operator], "ports": _ports(HTTP_PORT)})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(parent, parent.name),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(parent)},
            "policyTypes": ["Ingress"],
            "ingress": rules,
        },
    }
