"""Bad input is rejected at the right layer, and every layer names the field.

Each case of tests/invalid_specs.yaml says which layer of a real API server rejects it (the structural
schema, a CEL rule, or none: only the operator). For every case:
1. the operator's parse_spec rejects it with a problem that starts with the field's path;
2. `schema`: the CRD's schema (strict, as `kubectl apply` validates) fails at that field;
3. `cel`: the schema accepts it, and after the API server's defaulting a CEL rule evaluates to false at
   that field with the expected message (which the operator repeats);
4. `operator`: the schema and every CEL rule accept it, so the operator is the only line of defence,
   and the corpus says so honestly.
And every example in examples/ passes all three.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.api.base import API_VERSION, KIND
from modeldeploy.api.crd import CRD_FILENAME
from modeldeploy.api.resource import InvalidSpecError, parse_spec
from validation import (
    REPO_ROOT,
    apply_defaults,
    cel_violations,
    check_custom_resource,
    list_type_violations,
    schema_violations,
)

CORPUS_PATH = Path(__file__).with_name("invalid_specs.yaml")
CORPUS: list[dict[str, Any]] = yaml.safe_load(CORPUS_PATH.read_text())
LAYERS = ("schema", "cel", "operator")
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    crd = yaml.safe_load((REPO_ROOT / "crds" / CRD_FILENAME).read_text())
    (version,) = crd["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"])


def manifest(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "bad", "namespace": "ml"},
        "spec": spec,
    }


def cases(layer: str | None = None) -> list[Any]:
    chosen = [c for c in CORPUS if layer is None or c["kubernetes"] == layer]
    return [pytest.param(c, id=c["name"]) for c in chosen]


# --------------------------------------------------------------------------------- the corpus


def test_corpus_shape() -> None:
    names = [c["name"] for c in CORPUS]
    assert len(names) >= 24
    assert len(set(names)) == len(names), "case names must be unique"
    for case in CORPUS:
        assert case["kubernetes"] in LAYERS, case["name"]
        assert case["field"].startswith("spec"), case["name"]
        assert ("message" in case) == (case["kubernetes"] == "cel"), (
            f"{case['name']}: message is for cel cases"
        )
    for layer in LAYERS:
        assert any(c["kubernetes"] == layer for c in CORPUS), f"no case for the {layer} layer"


@pytest.mark.parametrize("case", cases())
def test_operator_rejects_naming_the_field(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(case["spec"])
    problems = caught.value.problems
    assert any(p.startswith(f"{case['field']}: ") for p in problems), (
        f"expected a problem naming {case['field']}, got {problems}"
    )
    if case["kubernetes"] == "cel":
        # The operator and the API server say the same thing, so users see one message wherever it is caught.
        assert f"{case['field']}: {case['message']}" in problems


@pytest.mark.parametrize("case", cases("schema"))
def test_schema_rejects_at_the_field(case: dict[str, Any], schema: dict[str, Any]) -> None:
    defaulted = apply_defaults(manifest(case["spec"]), schema)
    found = schema_violations(defaulted, schema)
    assert found, "the structural schema accepts it: is it really a schema case?"
    assert case["field"] in {v.path for v in found}, f"schema errors name other fields: {found}"


@pytest.mark.parametrize("case", cases("cel"))
def test_cel_rule_rejects_at_the_field(case: dict[str, Any], schema: dict[str, Any]) -> None:
    defaulted = apply_defaults(manifest(case["spec"]), schema)
    assert schema_violations(defaulted, schema) == [], "the schema already rejects it: make it a schema case"
    found = cel_violations(defaulted, schema)
    assert found, "every CEL rule accepts it"
    assert (case["field"], case["message"]) in {(v.path, v.message) for v in found}, found


@pytest.mark.parametrize("case", cases("operator"))
def test_only_the_operator_rejects(case: dict[str, Any], schema: dict[str, Any]) -> None:
    assert check_custom_resource(manifest(case["spec"]), schema) == [], (
        "Kubernetes rejects it already: move the case to the layer that does"
    )


# ------------------------------------------------------------------------------- the examples


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_passes_every_layer(path: Path, schema: dict[str, Any]) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, f"{path.name} is empty"
    for doc in docs:
        assert doc["apiVersion"] == API_VERSION
        assert doc["kind"] == KIND
        assert doc["metadata"]["namespace"] == "ml"
        defaulted = apply_defaults(doc, schema)
        assert schema_violations(defaulted, schema) == []
        assert list_type_violations(defaulted, schema) == []
        assert cel_violations(defaulted, schema) == []
        parse_spec(doc["spec"])
        # The operator reads what the API server stored: the defaulted object must parse the same.
        assert parse_spec(defaulted["spec"]) == parse_spec(doc["spec"])
