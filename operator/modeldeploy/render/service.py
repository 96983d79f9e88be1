"""The Service in front of Triton: HTTP (KServe v2), gRPC and metrics."""

from __future__ import annotations

from typing import Any

from modeldeploy.api.resource import ObjectRef
from modeldeploy.render.deployment import GRPC_PORT, HTTP_PORT, METRICS_PORT
from modeldeploy.render.names import Track, metadata, selector_labels


def service(parent: ObjectRef, name: str, track: Track | None) -> dict[str, Any]:
    """`track` None selects every track: the replica-ratio split realises weights by pod counts."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(parent, name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(parent, track),
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {
                    "name": "grpc",
                    "port": GRPC_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c",
                },
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }
