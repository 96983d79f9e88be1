"""What the reconciler saw of the children, reduced to the facts decisions need (pure parsing)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modeldeploy.render.names import REVISION_LABEL


@dataclass(frozen=True)
class DeploymentState:
    desired: int
    replicas: int
    ready: int
    updated: int
    available: int
    up_to_date: bool  # the Deployment controller has seen the latest spec
    deadline_exceeded: bool
    revision: str | None

    @property
    def rolled_out(self) -> bool:
        return self.up_to_date and self.updated >= self.desired and self.ready >= self.desired


def deployment_state(obj: Mapping[str, Any]) -> DeploymentState:
    spec, status, meta = obj.get("spec", {}), obj.get("status", {}) or {}, obj.get("metadata", {})
    conditions = status.get("conditions") or []
    deadline = any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded" for c in conditions
    )
    return DeploymentState(
        desired=int(spec.get("replicas", 1)),
        replicas=int(status.get("replicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        up_to_date=int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0),
        deadline_exceeded=deadline,
        revision=(meta.get("labels") or {}).get(REVISION_LABEL),
    )


@dataclass(frozen=True)
class Observations:
    primary: DeploymentState | None = None
    # Children the API server refused, each "Kind/name: reason"; they make the object Degraded.
    apply_errors: list[str] = field(default_factory=list)
