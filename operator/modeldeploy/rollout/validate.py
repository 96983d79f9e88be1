"""Everything the operator checks before acting on a ModelDeployment, shared by the reconciler
and `modeldeploy render`, so that an offline render rejects exactly what the operator would.

The API server already refuses most of this (the CRD's schema and CEL rules, with the same
messages); the operator checks again for objects stored before a rule existed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modeldeploy.analysis.templates import TemplateError, check_custom
from modeldeploy.api.base import MAX_NAME_LENGTH, RESERVED_NAME_SUFFIXES, RESERVED_SUFFIX_MESSAGE
from modeldeploy.api.resource import InvalidSpecError, parse_spec
from modeldeploy.api.spec import ModelDeploymentSpec

NAME_TOO_LONG = f"at most {MAX_NAME_LENGTH} characters (children append -primary)"


def validate(body: Mapping[str, Any]) -> ModelDeploymentSpec:
    """The parsed spec, or InvalidSpecError listing every problem, each naming its field."""
    name = str((body.get("metadata") or {}).get("name") or "")
    problems: list[str] = []
    if not name:
        problems.append("metadata.name: required")
    elif len(name) > MAX_NAME_LENGTH:
        problems.append(f"metadata.name: {NAME_TOO_LONG}")
    elif name.endswith(RESERVED_NAME_SUFFIXES):
        # The CRD's rule, for an object stored before it: its children are left as they are.
        problems.append(f"metadata.name: {RESERVED_SUFFIX_MESSAGE}")
    try:
        spec = parse_spec(body.get("spec"))
    except InvalidSpecError as error:
        raise InvalidSpecError(problems + error.problems) from None
    for index, metric in enumerate(spec.rollout.analysis.metrics):
        try:
            check_custom(metric)
        except TemplateError as error:
            # The path names the metric already; the rest is what the CEL twin (if any) says.
            message = str(error).removeprefix(f"analysis metric {error.metric!r}: ")
            problems.append(f"spec.rollout.analysis.metrics[{index}].query: {message}")
    if problems:
        raise InvalidSpecError(problems)
    return spec
