"""Generate the CustomResourceDefinition from the pydantic models.

pydantic emits JSON Schema 2020-12 with `$ref`s and `anyOf: [T, null]`; a CRD needs a
*structural* OpenAPI v3.0 schema: every node typed, no `$ref`, no `additionalProperties`
beside `properties`, defaults that the API server can apply. This module does that conversion,
so the models stay the single source of truth and `crds/` can be checked for drift.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from modeldeploy.api.base import (
    API_VERSION,
    CEL_KEY,
    GROUP,
    KIND,
    MATCHES_KEY,
    MAX_NAME_LENGTH,
    PLURAL,
    PRESERVE_KEY,
    RESERVED_SUFFIX_MESSAGE,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    Matches,
)
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ModelDeploymentStatus

CRD_NAME = f"{PLURAL}.{GROUP}"
# Two ModelDeployments must never render the same child: `scorer-primary`'s Service would be the
# Service `scorer` routes its primary track to (docs/security.md, "Only what is ours").
NAME_RULE = {
    "rule": "!self.metadata.name.endsWith('-primary') && !self.metadata.name.endsWith('-canary')",
    "message": RESERVED_SUFFIX_MESSAGE,
    "fieldPath": ".metadata.name",
    "reason": "FieldValueInvalid",
}
CRD_FILENAME = f"{GROUP}_{PLURAL}.yaml"
INT_OR_STRING = "x-kubernetes-int-or-string"

_DROP = {"title", "$defs"}
_INT_OR_STRING_KEEP = ("description", "maxLength", CEL_KEY)


def _deref(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_deref(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _deref(merged, defs)
    return {k: _deref(v, defs) for k, v in node.items() if k not in _DROP}


def _structural(node: Any) -> Any:
    """Rewrite one (dereferenced) JSON Schema node into a structural OpenAPI v3.0 node."""
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if node.get(INT_OR_STRING):
        # A quantity: the int-or-string shape, a length bound, and the CEL rule that parses it.
        return {INT_OR_STRING: True, **{k: node[k] for k in _INT_OR_STRING_KEEP if k in node}}
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) == 1:
            node = {**branches[0], **node}
        else:
            raise ValueError(f"cannot make a structural schema of a union: {branches}")
        if node.get(INT_OR_STRING):
            return _structural(node)
    if node.get("default", 0) is None:
        del node["default"]
    if MATCHES_KEY in node:
        # Not a schema `pattern`: the API server would answer with the regular expression. A CEL rule
        # answers with the words (api/base.py Matches), first, before the field's other rules.
        matches = node.pop(MATCHES_KEY)
        node[CEL_KEY] = [Matches(**matches).rule(), *node.get(CEL_KEY, [])]
    if "exclusiveMinimum" in node:
        node["minimum"] = node.pop("exclusiveMinimum")
        node["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node:
        node["maximum"] = node.pop("exclusiveMaximum")
        node["exclusiveMaximum"] = True
    if node.get(PRESERVE_KEY):
        node.pop("additionalProperties", None)
        node.setdefault("type", "object")
    if "patternProperties" in node:
        # A CRD cannot constrain map keys (the API server forbids patternProperties): the value schema
        # becomes additionalProperties, and the key pattern stays with the operator's own validation.
        (value_schema,) = node.pop("patternProperties").values()
        node["additionalProperties"] = value_schema
    if "properties" in node:
        node.pop("additionalProperties", None)
        node["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _structural(node[key])
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    return node


def _add_factory_defaults(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Objects and lists built by default_factory get a schema default, so that the API server
    defaults nested fields and CEL rules can rely on them (`self.rollout.match` always exists)."""
    props = schema.get("properties", {})
    for name, field in model.model_fields.items():
        key = field.alias or name
        prop = props.get(key)
        if prop is None:
            continue
        if field.default_factory is not None and "default" not in prop:
            prop["default"] = _factory_default(field)
        sub = _model_of(field)
        if sub is not None:
            _add_factory_defaults(prop, sub)
            if prop.get("type") == "array":
                _add_factory_defaults(prop.get("items", {}), sub)


def _factory_default(field: FieldInfo) -> Any:
    factory: Callable[[], Any] = field.default_factory  # type: ignore[assignment]
    value = factory()
    # Written out in full: the API server checks a default as written (CEL rules included)
    # before it fills in the defaults nested inside it.
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [
            v.model_dump(mode="json", by_alias=True, exclude_none=True) if isinstance(v, BaseModel) else v
            for v in value
        ]
    return value


def _model_of(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    candidates: list[Any] = [annotation, *getattr(annotation, "__args__", ())]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
        for arg in getattr(candidate, "__args__", ()):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return None


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _structural(_deref(raw, raw.get("$defs", {})))
    _add_factory_defaults(schema, model)
    return schema


def crd() -> dict[str, Any]:
    spec_schema = openapi_schema(ModelDeploymentSpec)
    status_schema = openapi_schema(ModelDeploymentStatus)
    status_schema.pop("description", None)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "modeldeploy", "app.kubernetes.io/part-of": "modeldeploy"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["ml", "modeldeploy"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "description": f"{KIND} ({API_VERSION}) serves one model on NVIDIA Triton and "
                            "rolls out new versions behind metric-gated canaries.",
                            "type": "object",
                            "required": ["spec"],
                            # metadata.name is the one part of metadata a rule may read.
                            CEL_KEY: [NAME_RULE],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                # name is the one part of metadata a CRD may constrain.
                                "metadata": {
                                    "type": "object",
                                    "properties": {"name": {"type": "string", "maxLength": MAX_NAME_LENGTH}},
                                },
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
    {"name": "Version", "type": "string", "jsonPath": ".spec.model.version"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight", "priority": 1},
    # Running while a model-quality gate judges the canary, then its outcome (docs/gates.md).
    {"name": "Gate", "type": "string", "jsonPath": ".status.gate.state"},
    {"name": "URL", "type": "string", "jsonPath": ".status.url"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd_yaml() -> str:
    header = "# Generated by `modeldeploy crd` from operator/modeldeploy/api/. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)


def cel_rules(schema: dict[str, Any], path: str = "spec") -> list[tuple[str, dict[str, Any]]]:
    """Every (schema path, rule) pair in a generated schema; the tests evaluate them."""
    found: list[tuple[str, dict[str, Any]]] = [(path, rule) for rule in schema.get(CEL_KEY, [])]
    for key, sub in schema.get("properties", {}).items():
        found += cel_rules(sub, f"{path}.{key}")
    if "items" in schema:
        found += cel_rules(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += cel_rules(schema["additionalProperties"], f"{path}{{}}")
    return found
