"""The generated CustomResourceDefinition: committed, structural, and acceptable to a real API server.

A real API server refuses a CRD whose schema is not structural, whose defaults do not validate, whose
CEL rules do not compile or whose fieldPaths name no field. None runs here, so these tests walk the
schema and check each of those rules themselves.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cel
import jsonschema
import pytest
import yaml

from modeldeploy.api.crd import CRD_FILENAME, crd_yaml
from modeldeploy.api.resource import parse_spec
from validation import (
    REPO_ROOT,
    apply_defaults,
    cel_violations,
    crd_jsonschema,
    validate_k8s,
)

CRD_PATH = REPO_ROOT / "crds" / CRD_FILENAME
REGENERATE = "make crd   (or: .venv/bin/modeldeploy crd --output crds/)"

CEL_KEY = "x-kubernetes-validations"
INT_OR_STRING = "x-kubernetes-int-or-string"
PRESERVE = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]

# Functions the `cel` library implements (probed: size, matches, the string predicates, conversions,
# timestamps and durations, and the macros has/all/exists/exists_one/map/filter, which never appear in
# Program.functions()). Kubernetes adds more (strings ext: lowerAscii, split, ...; lists: isSorted, sum;
# quantity; url; ip/cidr; format; semver; optionals) that the library lacks: a rule using one of them
# cannot be tested here, and must be called out, not silently skipped.
CEL_LIBRARY_FUNCTIONS = {
    "size",
    "matches",
    "startsWith",
    "endsWith",
    "contains",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "type",
    "dyn",
    "duration",
    "timestamp",
}


def schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with a readable path: properties, items, additionalProperties, and also the
    keywords a CRD must not use (patternProperties, anyOf...), so that the checks below see them."""
    yield path or "<root>", node
    for name, sub in node.get("properties", {}).items():
        yield from schema_nodes(sub, f"{path}.{name}")
    for pattern, sub in node.get("patternProperties", {}).items():
        yield from schema_nodes(sub, f"{path}{{{pattern}}}")
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            yield from schema_nodes(node[key], f"{path}[]" if key == "items" else f"{path}.<{key}>")
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(node.get(key, [])):
            yield from schema_nodes(sub, f"{path}.<{key}[{i}]>")


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


@pytest.fixture(scope="module")
def version(committed: dict[str, Any]) -> dict[str, Any]:
    (only,) = committed["spec"]["versions"]
    return dict(only)


@pytest.fixture(scope="module")
def schema(version: dict[str, Any]) -> dict[str, Any]:
    return dict(version["schema"]["openAPIV3Schema"])


@pytest.fixture(scope="module")
def all_nodes(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return list(schema_nodes(schema))


# --------------------------------------------------------------------------------------- drift


def test_committed_crd_matches_the_models() -> None:
    committed, generated = CRD_PATH.read_text(), crd_yaml()
    if committed != generated:
        diff = difflib.unified_diff(
            committed.splitlines(), generated.splitlines(), "committed", "generated", lineterm="", n=2
        )
        shown = "\n".join(list(diff)[:60])
        pytest.fail(
            f"{CRD_PATH.relative_to(REPO_ROOT)} is out of date with operator/modeldeploy/api/; "
            f"regenerate it:\n    {REGENERATE}\n{shown}",
            pytrace=False,
        )


def test_cli_prints_the_generated_crd(capsys: pytest.CaptureFixture[str]) -> None:
    from modeldeploy.cli import main

    assert main(["crd"]) == 0
    assert capsys.readouterr().out == crd_yaml()


def test_cli_writes_the_crd_into_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from modeldeploy.cli import main

    assert main(["crd", "--output", f"{tmp_path}/"]) == 0
    assert (tmp_path / CRD_FILENAME).read_text() == crd_yaml()
    assert CRD_FILENAME in capsys.readouterr().err


# ------------------------------------------------------------------------------ the CRD object


def test_crd_is_a_valid_apiextensions_object(committed: dict[str, Any]) -> None:
    validate_k8s(committed)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("group", "modeldeploy.io"),
        ("scope", "Namespaced"),
        ("kind", "ModelDeployment"),
        ("plural", "modeldeployments"),
        ("singular", "modeldeployment"),
        ("shortNames", ["mdep"]),
    ],
    ids=["group", "scope", "kind", "plural", "singular", "short-name-mdep"],
)
def test_names(committed: dict[str, Any], field: str, expected: Any) -> None:
    spec = committed["spec"]
    assert spec.get(field, spec["names"].get(field)) == expected
    assert committed["metadata"]["name"] == "modeldeployments.modeldeploy.io"


def test_single_served_storage_version_with_status_subresource(version: dict[str, Any]) -> None:
    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True
    # The operator writes status through /status only, and `kubectl apply` of a spec never clobbers it.
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize(
    ("column", "json_path", "type_"),
    [
        ("Phase", ".status.phase", "string"),
        ("Model", ".spec.model.name", "string"),
        ("Version", ".spec.model.version", "string"),
        ("Ready", ".status.readyReplicas", "integer"),
        ("URL", ".status.url", "string"),
        ("Age", ".metadata.creationTimestamp", "date"),
    ],
    ids=["phase", "model", "version", "ready", "url", "age"],
)
def test_printer_columns(version: dict[str, Any], column: str, json_path: str, type_: str) -> None:
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert column in columns, f"`kubectl get mdep` lacks the {column} column"
    assert columns[column]["jsonPath"] == json_path
    assert columns[column]["type"] == type_
    assert columns[column].get("priority", 0) == 0, "shown by plain `kubectl get`, not only with -o wide"


def test_printer_columns_point_at_declared_fields(version: dict[str, Any], schema: dict[str, Any]) -> None:
    for column in version["additionalPrinterColumns"]:
        parts = column["jsonPath"].lstrip(".").split(".")
        if parts[0] == "metadata":
            continue
        node = schema
        for part in parts:
            assert part in node.get("properties", {}), (
                f"column {column['name']}: {column['jsonPath']} is not declared"
            )
            node = node["properties"][part]
        declared = "integer" if column["type"] == "integer" else "string"
        assert node.get("type") == declared, (
            f"column {column['name']} is typed {column['type']}, field {node}"
        )


# ---------------------------------------------------------------------- structural schema rules


def test_no_ref_and_no_defs(all_nodes: list[tuple[str, dict[str, Any]]]) -> None:
    for path, node in all_nodes:
        assert "$ref" not in node, path
        assert "$defs" not in node, path
        assert "definitions" not in node, path


def test_no_unions_except_int_or_string(all_nodes: list[tuple[str, dict[str, Any]]]) -> None:
    for path, node in all_nodes:
        for key in ("anyOf", "oneOf", "allOf", "not"):
            if key in node:
                assert key == "anyOf", f"{path}: {key} is not structural"
                assert node.get(INT_OR_STRING), f"{path}: anyOf is structural only for int-or-string"
                assert node["anyOf"] == INT_OR_STRING_ANY_OF, f"{path}: anyOf beyond the int-or-string shape"


def test_every_node_has_a_type(all_nodes: list[tuple[str, dict[str, Any]]]) -> None:
    for path, node in all_nodes:
        assert "type" in node or node.get(INT_OR_STRING) or node.get(PRESERVE), f"{path} has no type"
        if node.get(INT_OR_STRING):
            assert "type" not in node, f"{path}: an int-or-string node must not also be typed"


@pytest.mark.parametrize(
    "keyword",
    ["patternProperties", "dependencies", "definitions", "$ref", "$schema", "id", "additionalItems"],
)
def test_no_keyword_a_crd_forbids(all_nodes: list[tuple[str, dict[str, Any]]], keyword: str) -> None:
    # The API server refuses these outright; pydantic emits patternProperties for constrained dict keys.
    for path, node in all_nodes:
        assert keyword not in node, f"{path}: {keyword} is forbidden in a CRD schema"


def test_no_additional_properties_false_and_no_unique_items(
    all_nodes: list[tuple[str, dict[str, Any]]],
) -> None:
    # Both are forbidden in CRDs: unknown fields are pruned (or rejected by strict field validation)
    # anyway, and uniqueItems is quadratic (x-kubernetes-list-type: set is the way).
    for path, node in all_nodes:
        assert node.get("additionalProperties") is not False, f"{path}: additionalProperties: false"
        assert node.get("uniqueItems") is not True, f"{path}: uniqueItems: true"


def test_no_additional_properties_beside_properties(all_nodes: list[tuple[str, dict[str, Any]]]) -> None:
    for path, node in all_nodes:
        assert not ("properties" in node and "additionalProperties" in node), path


def test_no_null_defaults(all_nodes: list[tuple[str, dict[str, Any]]]) -> None:
    for path, node in all_nodes:
        assert not ("default" in node and node["default"] is None), f"{path}: default: null"


def test_only_openapi_v3_0_keywords(all_nodes: list[tuple[str, dict[str, Any]]]) -> None:
    # JSON Schema 2020-12 spellings pydantic emits that a CRD (OpenAPI v3.0) does not accept.
    foreign = {"const", "prefixItems", "examples", "$schema", "title", "discriminator"}
    for path, node in all_nodes:
        assert not foreign & node.keys(), f"{path}: {sorted(foreign & node.keys())}"
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            if bound in node:
                assert isinstance(node[bound], bool), f"{path}: {bound} must be a boolean in OpenAPI v3.0"


def test_enums_match_their_type(all_nodes: list[tuple[str, dict[str, Any]]]) -> None:
    python_type = {"string": str, "integer": int, "number": (int, float), "boolean": bool}
    for path, node in all_nodes:
        if "enum" in node:
            assert all(isinstance(v, python_type[node["type"]]) for v in node["enum"]), path


def test_metadata_is_left_to_the_api_server(schema: dict[str, Any]) -> None:
    # A CRD may not constrain metadata beyond name/generateName; an object type is all it needs.
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["required"] == ["spec"]


def test_defaults_validate_against_their_own_schema(all_nodes: list[tuple[str, dict[str, Any]]]) -> None:
    # The API server rejects a CRD whose defaults would not pass its own schema (after pruning).
    checked = 0
    for path, node in all_nodes:
        if "default" in node:
            try:
                jsonschema.validate(node["default"], crd_jsonschema(node, resource_root=False))
            except jsonschema.ValidationError as error:
                pytest.fail(f"{path}: default {node['default']!r} is invalid: {error.message}")
            checked += 1
    assert checked > 10


def test_spec_sections_are_defaulted_so_cel_rules_can_read_them(schema: dict[str, Any]) -> None:
    # Cross-section rules read self.runtime.gpus and self.rollout.match: the sections must exist.
    spec = schema["properties"]["spec"]["properties"]
    for section in ("runtime", "scaling", "traffic", "rollout"):
        assert spec[section].get("default") == {}, section
    assert spec["rollout"]["properties"]["match"]["default"] == []
    assert spec["runtime"]["properties"]["gpus"]["default"] == 1


def test_api_server_defaults_agree_with_the_operator(schema: dict[str, Any]) -> None:
    """What the API server stores (a minimal spec plus the schema's defaults) means the same to the
    operator as the minimal spec itself: no default is defined twice with two values."""
    minimal = {"model": {"name": "m", "version": "1", "storageUri": "s3://bucket/m"}}
    stored = apply_defaults({"spec": copy.deepcopy(minimal)}, schema)["spec"]
    assert stored != minimal, "the schema declares no defaults at all"
    assert parse_spec(stored) == parse_spec(minimal)


# ------------------------------------------------------------------------------------ CEL rules


def cel_rules(
    all_nodes: list[tuple[str, dict[str, Any]]],
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(path, node, rule) for path, node in all_nodes for rule in node.get(CEL_KEY, [])]


def _resolve(node: dict[str, Any], field_path: str) -> dict[str, Any] | None:
    for part in field_path.lstrip(".").split("."):
        node = node.get("properties", {}).get(part)  # type: ignore[assignment]
        if node is None:
            return None
    return node


def test_cel_rules_exist(all_nodes: list[tuple[str, dict[str, Any]]]) -> None:
    rules = {rule["rule"] for _, _, rule in cel_rules(all_nodes)}
    assert "self.minReplicas <= self.maxReplicas" in rules
    assert "!(has(self.gatewayAPI) && has(self.istio))" in rules
    assert "!has(self.gpuResource) || self.gpus > 0" in rules


def test_every_cel_rule_compiles_and_has_a_message(all_nodes: list[tuple[str, dict[str, Any]]]) -> None:
    for path, _, rule in cel_rules(all_nodes):
        try:
            cel.compile(rule["rule"])
        except ValueError as error:
            pytest.fail(f"{path}: CEL rule does not compile: {rule['rule']!r}: {error}")
        assert rule.get("message"), f"{path}: a rule without a message shows users the raw expression"


def test_every_cel_rule_uses_only_functions_the_cel_library_has(
    all_nodes: list[tuple[str, dict[str, Any]]],
) -> None:
    for path, _, rule in cel_rules(all_nodes):
        used = {f for f in cel.compile(rule["rule"]).functions() if f[0] not in "_!@"}
        missing = used - CEL_LIBRARY_FUNCTIONS
        assert not missing, (
            f"{path}: {rule['rule']!r} uses {sorted(missing)}, a Kubernetes CEL extension the cel library "
            "lacks: the corpus in tests/invalid_specs.yaml cannot exercise this rule"
        )


def test_every_cel_field_path_names_a_declared_field(all_nodes: list[tuple[str, dict[str, Any]]]) -> None:
    # The API server rejects a CRD whose rule fieldPath does not resolve in the schema.
    for path, node, rule in cel_rules(all_nodes):
        if "fieldPath" in rule:
            assert rule["fieldPath"].startswith("."), rule
            assert _resolve(node, rule["fieldPath"]) is not None, f"{path}: fieldPath {rule['fieldPath']}"


def test_cel_rules_hold_on_a_minimal_defaulted_object(schema: dict[str, Any]) -> None:
    # Every rule evaluates cleanly (no "no such key") on the smallest valid object.
    obj = {"spec": {"model": {"name": "m", "version": "1", "storageUri": "s3://bucket/m"}}}
    assert cel_violations(apply_defaults(obj, schema), schema) == []
