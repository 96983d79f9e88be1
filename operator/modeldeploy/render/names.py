"""Names, labels and ownership shared by every child object."""

from __future__ import annotations

from typing import Any

from modeldeploy.api.base import API_VERSION, KIND
from modeldeploy.api.base import Track as Track  # the one definition, re-exported for render/
from modeldeploy.api.resource import ObjectRef

MANAGED_BY = "modeldeploy"
FIELD_MANAGER = "modeldeploy"
NAME_LABEL = "modeldeploy.io/name"
TRACK_LABEL = "modeldeploy.io/track"
REVISION_LABEL = "modeldeploy.io/revision"


def deployment_name(parent: ObjectRef, track: Track) -> str:
    return f"{parent.name}-{track.value}"


def service_name(parent: ObjectRef) -> str:
    return parent.name


def track_service_name(parent: ObjectRef, track: Track) -> str:
    """The per-track Service a traffic router sends its weighted share to."""
    return f"{parent.name}-{track.value}"


def url(parent: ObjectRef) -> str:
    return f"http://{parent.name}.{parent.namespace}.svc:8000"


def common_labels(parent: ObjectRef) -> dict[str, str]:
    # Deliberately built from scratch: copying the parent's labels would copy GitOps tracking labels
    # (argocd.argoproj.io/instance), and Argo CD would then prune the children as its own.
    return {
        "app.kubernetes.io/name": "triton-inference-server",
        "app.kubernetes.io/component": "inference-server",
        "app.kubernetes.io/part-of": "modeldeploy",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        NAME_LABEL: parent.name,
    }


def selector_labels(parent: ObjectRef, track: Track | None = None) -> dict[str, str]:
    labels = {NAME_LABEL: parent.name}
    if track is not None:
        labels[TRACK_LABEL] = track.value
    return labels


def owner_reference(parent: ObjectRef) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": parent.name,
        "uid": parent.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(parent: ObjectRef, name: str, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": parent.namespace,
        "labels": {**common_labels(parent), **(extra_labels or {})},
        "ownerReferences": [owner_reference(parent)],
    }
