"""The whole ModelDeployment object as the operator reads it from the API server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modeldeploy.api.errors import describe
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ModelDeploymentStatus


class InvalidSpecError(ValueError):
    """The spec failed validation; `problems` each name a field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ObjectRef:
    """Identity of the parent, which every child's ownerReference and labels need."""

    name: str
    namespace: str
    uid: str
    generation: int = 0


def parse_spec(raw: Mapping[str, Any] | None) -> ModelDeploymentSpec:
    if not raw:
        raise InvalidSpecError(["spec: required"])
    try:
        return ModelDeploymentSpec.model_validate(dict(raw))
    except ValidationError as error:
        raise InvalidSpecError(describe(error, model=ModelDeploymentSpec)) from None


def parse_status(raw: Mapping[str, Any] | None) -> ModelDeploymentStatus:
    """A status we cannot read is treated as empty: the operator rebuilds it from the children."""
    try:
        return ModelDeploymentStatus.model_validate(dict(raw or {}))
    except ValidationError:
        return ModelDeploymentStatus()


def object_ref(body: Mapping[str, Any]) -> ObjectRef:
    meta = body.get("metadata", {})
    return ObjectRef(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
    )
