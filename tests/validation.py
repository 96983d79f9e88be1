"""Validate rendered objects offline, for the pure tests that run without an API server.

Our own CRD is not judged here: the ModelDeployment schema, defaults and CEL rules are checked by
the real kube-apiserver (tests/test_crd.py, tests/test_invalid_specs.py), and the golden manifests
are dry-run there too (tests/test_golden.py). What stays, for the fast table-driven render tests:

- `validate_k8s(obj)`: a built-in kind (Deployment, Service, ...) against the official OpenAPI schemas of
  the newest Kubernetes version the installed kubernetes-validate knows, in strict mode (unknown fields
  are errors, as with `kubectl apply`'s strict field validation). SCHEMA_VERSIONS are the versions the
  golden manifests are checked against: the oldest the chart installs on (its kubeVersion), the test
  control plane's minor, and that newest one (kubernetes-validate 1.37.0 carries 1.37, a minor past
  the control plane: its schemas come out with each Kubernetes release, the envtest archive later).
- `validate_third_party(obj)`: a custom resource (PodMonitor, HTTPRoute, VirtualService, ...) against the
  upstream CRD kept in ../shared/third-party-crds/, found by API group, version and kind: defaulting,
  structural schema, list-type keys, and the CEL rules (x-kubernetes-validations) evaluated with the
  `cel` library (PyPI: common-expression-language).
- `crd_jsonschema(openapi_schema)`: a CRD's OpenAPI v3.0 schema as JSON Schema for `jsonschema`.

Where these differ from a real API server (a short list, kept honest):
- CEL rules that use Kubernetes' CEL extensions (strings ext, lists, quantity, url, ip/cidr, format,
  semver, optionals) cannot be evaluated: the cel library lacks them. `CelUnsupportedError` says so
  instead of reporting a false pass or fail. Transition rules (those reading `oldSelf`) are skipped.
- CEL cost estimation and `format` checks (date-time, int32...) are not done.
- `metadata` is not validated beyond being an object: the API server checks ObjectMeta itself.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import cel
import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from assets import KUBERNETES, THIRD_PARTY_CRDS

REPO_ROOT = Path(__file__).resolve().parent.parent
# The upstream CRDs are large: libyaml reads them ten times faster than the pure-Python loader.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# The newest Kubernetes whose schemas the installed kubernetes-validate carries.
K8S_VERSION = latest_version()


def _chart_floor() -> str:
    """The oldest Kubernetes the chart installs on, from its Chart.yaml kubeVersion (">=1.29.0-0")."""
    chart = yaml.safe_load((REPO_ROOT / "charts" / "modeldeploy" / "Chart.yaml").read_text())
    found = re.fullmatch(r">=\s*([0-9]+)\.([0-9]+)\..*", str(chart["kubeVersion"]))
    assert found, f"Chart.yaml kubeVersion {chart['kubeVersion']!r} is not a lower bound"
    return f"{found[1]}.{found[2]}.0"


def _minor(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    return f"{major}.{minor}.0"


# Oldest supported, the control plane's (also dry-run there, tests/test_golden.py), newest known.
SCHEMA_VERSIONS = tuple(dict.fromkeys([_chart_floor(), _minor(KUBERNETES), K8S_VERSION]))

CEL_KEY = "x-kubernetes-validations"
INT_OR_STRING = "x-kubernetes-int-or-string"
PRESERVE = "x-kubernetes-preserve-unknown-fields"
EMBEDDED = "x-kubernetes-embedded-resource"

PathParts = Sequence[str | int]


def format_path(parts: Iterable[str | int]) -> str:
    """("spec", "metrics", 0, "cpu") -> "spec.metrics[0].cpu", the way the operator names fields."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class Violation:
    """One reason the API server would reject an object: where, what, and which check said so."""

    path: str
    message: str
    layer: str  # "schema" | "cel" | "list-type"
    rule: str = ""

    def __str__(self) -> str:
        rule = f" (rule: {self.rule})" if self.rule else ""
        return f"[{self.layer}] {self.path}: {self.message}{rule}"


class CelUnsupportedError(AssertionError):
    """A CEL rule uses a function the `cel` library does not implement (a Kubernetes CEL extension)."""


# ------------------------------------------------------------------------- OpenAPI -> JSON Schema


def crd_jsonschema(
    openapi_schema: Mapping[str, Any], *, strict: bool = True, resource_root: bool = True
) -> dict[str, Any]:
    """Convert a CRD's OpenAPI v3.0 schema (openAPIV3Schema) to JSON Schema (draft 2020-12).

    - `nullable: true` admits null;
    - boolean `exclusiveMinimum`/`exclusiveMaximum` become the numeric JSON Schema form;
    - `x-kubernetes-int-or-string` admits an integer or a string;
    - `x-kubernetes-preserve-unknown-fields` keeps an object open;
    - `x-kubernetes-embedded-resource` admits apiVersion, kind and metadata;
    - with `strict`, every other object rejects fields its schema does not declare, as the API
      server's strict field validation does (`kubectl apply` reports them as unknown fields).
      The root's `metadata` stays open: the API server validates ObjectMeta on its own.
    - with `resource_root` (the schema is a whole object's), `apiVersion`, `kind` and `metadata` are
      admitted at the root, as the API server does; pass False to convert a sub-schema.
    """
    converted = _convert(openapi_schema, strict=strict)
    # The API server implies these at the root of every custom resource, declared or not (Istio's
    # CRDs declare only spec and status).
    if resource_root:
        root = converted.setdefault("properties", {})
        root.setdefault("apiVersion", {"type": "string"})
        root.setdefault("kind", {"type": "string"})
        root["metadata"] = {"type": "object"}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **converted}


_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SUBSCHEMA_MAPS = ("properties", "patternProperties")


def _convert(node: Mapping[str, Any], *, strict: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SUBSCHEMA_MAPS:
            out[key] = {name: _convert(sub, strict=strict) for name, sub in value.items()}
        elif key in _SUBSCHEMA_LISTS:
            out[key] = [_convert(sub, strict=strict) for sub in value]
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = _convert(value, strict=strict)
        elif key in ("exclusiveMinimum", "exclusiveMaximum", "nullable", "default", "example"):
            continue  # handled below; defaults are applied separately, never validated here
        elif key.startswith("x-kubernetes-") or key in ("description", "externalDocs"):
            continue
        else:
            out[key] = value
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if node.get(exclusive) is True and bound in out:
            out[exclusive] = out.pop(bound)
    if node.get(INT_OR_STRING):
        # The structural shape is anyOf [integer, string]; any other keyword (a pattern) applies to
        # strings only, exactly as jsonschema applies `pattern` only to strings.
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get(EMBEDDED):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if (
        strict
        and out.get("type") == "object"
        and "additionalProperties" not in out
        and not node.get(PRESERVE)
    ):
        out["additionalProperties"] = False
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def schema_violations(
    instance: Any, openapi_schema: Mapping[str, Any], *, strict: bool = True
) -> list[Violation]:
    """Every structural-schema error, with the path of the field at fault.

    A missing required field is reported at the field (`spec.model.name`), an unknown field at the
    field (`spec.runtime.gpu`), as `kubectl` shows them; other errors at the value.
    """
    found: list[Violation] = []
    for error in _validator(openapi_schema, strict).iter_errors(instance):
        base = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, Mapping):
            for name in error.validator_value:
                if name not in error.instance:
                    found.append(Violation(format_path([*base, name]), "Required value", "schema"))
        elif error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
            declared = error.schema.get("properties", {})
            for name in error.instance:
                if name not in declared:
                    found.append(Violation(format_path([*base, name]), "unknown field", "schema"))
        else:
            found.append(Violation(format_path(base), error.message, "schema"))
    return found


# Converted schemas by the identity of the source schema, which is kept alive beside its entry.
_VALIDATORS: dict[tuple[int, bool], tuple[Mapping[str, Any], jsonschema.protocols.Validator]] = {}


def _validator(openapi_schema: Mapping[str, Any], strict: bool) -> jsonschema.protocols.Validator:
    key = (id(openapi_schema), strict)
    cached = _VALIDATORS.get(key)
    if cached is None or cached[0] is not openapi_schema:
        validator = jsonschema.validators.Draft202012Validator(crd_jsonschema(openapi_schema, strict=strict))
        cached = _VALIDATORS[key] = (openapi_schema, validator)
    return cached[1]


# ----------------------------------------------------------------------------------- defaulting


def apply_defaults(instance: Any, openapi_schema: Mapping[str, Any]) -> Any:
    """A copy of `instance` with the schema's defaults applied, as the API server does on every
    request and every read: top-down, a missing (or null, non-nullable) property gets a deep copy
    of its default, then the walk continues into it, so defaults nest."""
    out = copy.deepcopy(instance)
    _default(out, openapi_schema)
    return out


def _default(value: Any, schema: Mapping[str, Any] | None) -> None:
    if not schema:
        return
    if isinstance(value, dict):
        props: Mapping[str, Any] = schema.get("properties", {})
        for name, prop in props.items():
            if "default" in prop and (
                name not in value or (value[name] is None and not prop.get("nullable"))
            ):
                value[name] = copy.deepcopy(prop["default"])
        extra = schema.get("additionalProperties")
        for name, sub in value.items():
            if name in props:
                _default(sub, props[name])
            elif isinstance(extra, Mapping):
                _default(sub, extra)
    elif isinstance(value, list):
        for item in value:
            _default(item, schema.get("items"))


# ------------------------------------------------------------------------- list-type semantics


def list_type_violations(
    instance: Any, openapi_schema: Mapping[str, Any], path: PathParts = ()
) -> list[Violation]:
    """`x-kubernetes-list-type: set` items must be unique; `map` items unique by their map keys."""
    found: list[Violation] = []
    schema = openapi_schema
    if isinstance(instance, list):
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            seen: list[Any] = []
            for i, item in enumerate(instance):
                if item in seen:
                    found.append(
                        Violation(format_path([*path, i]), f"Duplicate value: {item!r}", "list-type")
                    )
                seen.append(item)
        elif list_type == "map":
            keys = schema.get("x-kubernetes-list-map-keys", [])
            seen_keys: list[tuple[Any, ...]] = []
            for i, item in enumerate(instance):
                if isinstance(item, Mapping):
                    key = tuple(item.get(k) for k in keys)
                    if key in seen_keys:
                        message = f"Duplicate value: {dict(zip(keys, key, strict=True))!r}"
                        found.append(Violation(format_path([*path, i]), message, "list-type"))
                    seen_keys.append(key)
        for i, item in enumerate(instance):
            found += list_type_violations(item, schema.get("items") or {}, [*path, i])
    elif isinstance(instance, Mapping):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, sub in instance.items():
            sub_schema = props.get(name) or (extra if isinstance(extra, Mapping) else None)
            if sub_schema:
                found += list_type_violations(sub, sub_schema, [*path, name])
    return found


# ------------------------------------------------------------------------------------ CEL rules


@functools.lru_cache(maxsize=1024)
def compile_rule(rule: str) -> cel.Program:
    return cel.compile(rule)


def cel_violations(instance: Any, openapi_schema: Mapping[str, Any], path: PathParts = ()) -> list[Violation]:
    """Evaluate every x-kubernetes-validations rule at every node present in `instance`.

    Pass the *defaulted* object (apply_defaults): the API server evaluates rules after defaulting,
    and rules may rely on fields that have a default. A rule that
    evaluates to false is reported at its node plus its `fieldPath`, with its `message`; a rule that
    errors (no such key) is reported too, as the API server rejects the object then as well.
    """
    found: list[Violation] = []
    _walk_cel(instance, openapi_schema, list(path), found)
    return found


def _walk_cel(
    value: Any, schema: Mapping[str, Any] | None, path: list[str | int], out: list[Violation]
) -> None:
    if not schema or value is None:
        return
    for rule in schema.get(CEL_KEY, []):
        expression = rule["rule"]
        if "oldSelf" in expression:
            continue  # a transition rule: evaluated only on update, against the stored object
        program = compile_rule(expression)
        try:
            result = program.execute({"self": cel_value(value, schema)})
        except Exception as error:  # the cel library raises plain KeyError/ValueError/RuntimeError
            text = str(error)
            if "Undefined variable or function" in text:
                raise CelUnsupportedError(
                    f"{format_path(path)}: the cel library cannot evaluate {expression!r}: {text}"
                ) from None
            out.append(Violation(format_path(path), f"rule evaluation error: {text}", "cel", expression))
            continue
        if result is not True:
            where = format_path(path) + _field_path(rule.get("fieldPath", ""))
            message = rule.get("message") or f"failed rule: {expression}"
            out.append(Violation(where, message, "cel", expression))
    if isinstance(value, Mapping):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, sub in value.items():
            sub_schema = props.get(name) or (extra if isinstance(extra, Mapping) else None)
            _walk_cel(sub, sub_schema, [*path, name], out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk_cel(item, schema.get("items"), [*path, i], out)


def _field_path(field_path: str) -> str:
    """A rule's fieldPath (".a.b", ".a['k']", ".a[0]") appended to a formatted path."""
    return field_path.replace("['", ".").replace("']", "")


# Kubernetes hands CEL an object's declared properties under escaped names (apiserver/pkg/cel/escaping.go):
# a CEL reserved word becomes __word__ (`p.__namespace__`), and in other names "__", ".", "-" and "/"
# become __underscores__, __dot__, __dash__ and __slash__. Map keys (additionalProperties) are not escaped.
_CEL_RESERVED = {
    "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if",
    "import", "let", "loop", "package", "namespace", "return", "var", "void", "while",
}  # fmt: skip
_CEL_ESCAPES = (("__", "__underscores__"), (".", "__dot__"), ("-", "__dash__"), ("/", "__slash__"))


def cel_property_name(name: str) -> str:
    """The name under which CEL rules see the declared property `name`."""
    if name in _CEL_RESERVED:
        return f"__{name}__"
    for raw, escaped in _CEL_ESCAPES:
        name = name.replace(raw, escaped)
    return name


def cel_value(value: Any, schema: Mapping[str, Any] | None) -> Any:
    """`value` as Kubernetes hands it to CEL: declared property names escaped (cel_property_name), and
    `type: number` fields as doubles even when the YAML says 2, so that `self.ratio > 1` behaves as on
    the API server."""
    if not schema:
        return value
    if isinstance(value, Mapping):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out = {}
        for key, sub in value.items():
            if key in props:
                out[cel_property_name(key)] = cel_value(sub, props[key])
            else:
                out[key] = cel_value(sub, extra if isinstance(extra, Mapping) else None)
        return out
    if isinstance(value, list):
        return [cel_value(v, schema.get("items")) for v in value]
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# -------------------------------------------------------------------------- whole custom objects


def _check_custom_resource(obj: Mapping[str, Any], openapi_schema: Mapping[str, Any]) -> list[Violation]:
    """Everything the API server checks on a custom resource, after defaulting it.

    CEL rules are evaluated only when the structural schema passes: a rule over a value of the
    wrong type would only add noise (the API server reports the schema errors either way).
    """
    defaulted = apply_defaults(dict(obj), openapi_schema)
    found = schema_violations(defaulted, openapi_schema)
    found += list_type_violations(defaulted, openapi_schema)
    if not found:
        found += cel_violations(defaulted, openapi_schema)
    return found


# ------------------------------------------------------------------------------ built-in kinds


def validate_k8s(obj: Mapping[str, Any], version: str = K8S_VERSION) -> None:
    """Raise AssertionError unless `obj` is valid for a built-in kind in Kubernetes `version`
    (strict: unknown fields are errors)."""
    try:
        kubernetes_validate.validate(dict(obj), version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = format_path(list(error.path))
        raise AssertionError(
            f"{_describe(obj)} is invalid for Kubernetes {version}: {where}: {error.message}"
        ) from None
    except kubernetes_validate.SchemaNotFoundError as error:
        raise AssertionError(f"{_describe(obj)}: no official schema: {error.message}") from None


# --------------------------------------------------------------------------- third-party kinds


def missing_third_party_crds() -> NoReturn:
    """Skip (one summary line for every test that needs them), or fail under CI=true."""
    message = (
        "upstream CRDs: none in $MODELDEPLOY_THIRD_PARTY_CRDS, ../shared/third-party-crds or"
        " .tools/third-party-crds; set MODELDEPLOY_THIRD_PARTY_CRDS to a folder with the Gateway API,"
        " Istio, Prometheus Operator and KEDA CRD YAML files, or run scripts/install-control-plane.py"
        " with network access"
    )
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{message} -- CI=true, so this is a failure, not a skip")
    pytest.skip(message)


@functools.lru_cache(maxsize=1)
def _third_party_crds() -> dict[tuple[str, str], dict[str, Any]]:
    if not THIRD_PARTY_CRDS.is_dir():
        missing_third_party_crds()
    crds: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(THIRD_PARTY_CRDS.glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=_YAML_LOADER):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                crds[(doc["spec"]["group"], doc["spec"]["names"]["kind"])] = doc
    return crds


def third_party_crd(group: str, kind: str) -> dict[str, Any]:
    """The upstream CustomResourceDefinition for `kind` in API `group`."""
    try:
        return _third_party_crds()[(group, kind)]
    except KeyError:
        known = ", ".join(f"{k}.{g}" for g, k in sorted(_third_party_crds()))
        raise AssertionError(f"no CRD for {kind}.{group} in {THIRD_PARTY_CRDS} (have: {known})") from None


def crd_version_schema(crd: Mapping[str, Any], version: str) -> dict[str, Any]:
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            if not entry.get("served", True):
                raise AssertionError(f"{crd['metadata']['name']} version {version} is not served")
            schema: dict[str, Any] = entry["schema"]["openAPIV3Schema"]
            return schema
    served = [v["name"] for v in crd["spec"]["versions"]]
    raise AssertionError(f"{crd['metadata']['name']} has no version {version} (has {served})")


def is_third_party(obj: Mapping[str, Any]) -> bool:
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return (group, obj.get("kind")) in _third_party_crds()


def validate_third_party(obj: Mapping[str, Any], *, cel_rules: bool = True) -> None:
    """Raise AssertionError unless `obj` is valid against its upstream CRD (../shared/third-party-crds),
    found by the group, version and kind in the object: structural schema (strict), list-type keys and,
    with `cel_rules`, the CRD's CEL rules."""
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    schema = crd_version_schema(third_party_crd(group, str(obj.get("kind"))), version)
    if cel_rules:
        problems = _check_custom_resource(obj, schema)
    else:
        defaulted = apply_defaults(dict(obj), schema)
        problems = schema_violations(defaulted, schema) + list_type_violations(defaulted, schema)
    if problems:
        lines = "\n  ".join(map(str, problems))
        raise AssertionError(f"{_describe(obj)} is invalid against its upstream CRD:\n  {lines}")


def _describe(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('apiVersion')} {obj.get('kind')} {meta.get('namespace', '')}/{meta.get('name', '?')}"
