"""The generated CustomResourceDefinition: committed, structural, and accepted by a real API server.

The real kube-apiserver is the judge: it refuses a CRD whose schema is not structural, whose
defaults do not validate (CEL rules included), whose CEL rules do not compile, exceed the cost
budget or name no field. The walks over the schema below only say which rule broke, faster.
"""

from __future__ import annotations

import difflib
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.api.base import API_VERSION, KIND, MAX_NAME_LENGTH
from modeldeploy.api.crd import CRD_FILENAME, crd_yaml
from modeldeploy.api.resource import parse_spec
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.rollout.validate import validate
from testbed.controlplane import ADMIN_USER, ControlPlane, Credentials
from testbed.kubeapi import KubeApi
from validation import REPO_ROOT, validate_k8s

CRD_PATH = REPO_ROOT / "crds" / CRD_FILENAME
CHART_CRD_PATH = REPO_ROOT / "charts" / "modeldeploy" / "crds" / CRD_FILENAME
KUBECTL = REPO_ROOT / ".tools" / "bin" / "kubectl"
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
REGENERATE = "make crd   (or: .venv/bin/modeldeploy crd --output crds/)"

CEL_KEY = "x-kubernetes-validations"
INT_OR_STRING = "x-kubernetes-int-or-string"
PRESERVE = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]


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


def test_metadata_constrains_the_name_only(schema: dict[str, Any]) -> None:
    # A CRD may constrain metadata.name and generateName only; the name bounds the children's names.
    assert schema["properties"]["metadata"] == {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": MAX_NAME_LENGTH}},
    }
    assert schema["required"] == ["spec"]


def test_chart_crd_is_the_generated_one() -> None:
    assert CHART_CRD_PATH.read_text() == crd_yaml(), f"copy {CRD_PATH} to {CHART_CRD_PATH.parent}"


def test_defaults_are_written_out_in_full(schema: dict[str, Any]) -> None:
    # Regression: the API server validates a default as written (CEL rules included) without filling
    # in the defaults nested inside it, so `rollout: {}` failed "no such key: strategy".
    spec = schema["properties"]["spec"]["properties"]
    defaults = ModelDeploymentSpec.model_validate(
        {"model": {"name": "m", "version": "1", "storageUri": "s3://bucket/m"}}
    )
    for section in ("runtime", "scaling", "traffic", "rollout"):
        expected = getattr(defaults, section).model_dump(mode="json", by_alias=True, exclude_none=True)
        assert spec[section]["default"] == expected, section
    assert spec["rollout"]["default"]["strategy"] == "Canary"
    assert spec["scaling"]["default"]["minReplicas"] == 1


# ------------------------------------------------------------------------- the real API server


def _kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBECTL), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def admin_kubeconfig(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not KUBECTL.exists():
        pytest.skip(f"{KUBECTL} is missing (make tools)")
    creds = Credentials(user=ADMIN_USER, token=control_plane.admin_token)
    return control_plane.kubeconfig(creds, tmp_path_factory.mktemp("crd") / "kubeconfig")


@pytest.mark.parametrize("path", [CRD_PATH, CHART_CRD_PATH], ids=["crds", "chart-crds"])
def test_kubectl_applies_the_crd(path: Path, admin_kubeconfig: Path) -> None:
    # The session installed this CRD already; applying it again is what a user's upgrade does.
    done = _kubectl(admin_kubeconfig, "apply", "--server-side", "-f", str(path.parent))
    assert done.returncode == 0, done.stderr
    assert "modeldeployments.modeldeploy.io serverside-applied" in done.stdout


@pytest.mark.parametrize("path", [CRD_PATH, CHART_CRD_PATH], ids=["crds", "chart-crds"])
def test_a_fresh_api_server_accepts_the_crd(
    path: Path, admin_kubeconfig: Path, api: KubeApi, tmp_path: Path
) -> None:
    """An update keeps CEL rules that were already there without re-checking their cost, so the proof
    is a create: the same CRD under a group of its own, as a cluster that never had it sees it."""
    group = f"crd-{uuid.uuid4().hex[:8]}.modeldeploy.io"
    text = re.sub(r"\bmodeldeploy\.io\b", group, path.read_text())
    copy = tmp_path / "crd.yaml"
    copy.write_text(text)
    done = _kubectl(admin_kubeconfig, "apply", "--server-side", "-f", str(copy))
    try:
        assert done.returncode == 0, done.stderr
        name = f"modeldeployments.{group}"
        created = api.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name)
        assert created is not None
    finally:
        _kubectl(admin_kubeconfig, "delete", "--ignore-not-found", "-f", str(copy))


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> KubeApi:
    return control_plane.admin


@pytest.fixture(scope="module")
def example_namespaces(api: KubeApi) -> Iterator[dict[str, str]]:
    """The examples' namespaces (all `ml`), each as a namespace of this module's own, so that no
    operator another test runs cluster-wide reconciles them."""
    wanted = {doc["metadata"]["namespace"] for path in EXAMPLES for doc in _docs(path)}
    renamed = {ns: f"{ns}-{uuid.uuid4().hex[:8]}" for ns in sorted(wanted)}
    for name in renamed.values():
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield renamed
    for name in renamed.values():
        api.delete("v1", "Namespace", None, name)


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _readme_example() -> str:
    section = (REPO_ROOT / "README.md").read_text().split("## A ModelDeployment", 1)[1]
    found = re.search(r"^```yaml\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert found, "the README's 'A ModelDeployment' section has no YAML"
    return found.group(1)


SOURCES = [pytest.param(p.read_text(), id=p.stem) for p in EXAMPLES] + [
    pytest.param(_readme_example(), id="readme")
]


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize("text", SOURCES)
def test_kubectl_applies_the_example(
    text: str, admin_kubeconfig: Path, api: KubeApi, example_namespaces: dict[str, str], tmp_path: Path
) -> None:
    docs = [d for d in yaml.safe_load_all(text) if d]
    # A ModelDeployment, with what it refers to beside it (the gated example's golden-set ConfigMap).
    assert [(d["apiVersion"], d["kind"]) for d in docs].count((API_VERSION, KIND)) >= 1
    assert {(d["apiVersion"], d["kind"]) for d in docs} <= {(API_VERSION, KIND), ("v1", "ConfigMap")}
    for doc in docs:
        doc["metadata"]["namespace"] = example_namespaces[doc["metadata"]["namespace"]]
    manifest = tmp_path / "example.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    # kubectl's server-side apply asks for strict field validation by default.
    done = _kubectl(admin_kubeconfig, "apply", "--server-side", "-f", str(manifest))
    assert done.returncode == 0, done.stderr
    for doc in docs:
        if doc["kind"] != KIND:
            continue
        meta = doc["metadata"]
        stored = api.get(API_VERSION, KIND, meta["namespace"], meta["name"])
        assert stored is not None
        # The operator reads what the API server stored, defaults included: it must mean the same.
        assert validate(stored) == parse_spec(doc["spec"])
        api.delete(API_VERSION, KIND, meta["namespace"], meta["name"])


def test_api_server_defaults_agree_with_the_operator(
    api: KubeApi, example_namespaces: dict[str, str]
) -> None:
    """A minimal spec as stored (the schema's defaults applied by the API server) is the operator's
    own reading of it, field for field: no default is defined twice with two values."""
    namespace = next(iter(example_namespaces.values()))
    minimal = {"model": {"name": "m", "version": "1", "storageUri": "s3://bucket/m"}}
    obj = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "minimal", "namespace": namespace}}
    stored = api.apply({**obj, "spec": minimal})
    api.delete(API_VERSION, KIND, namespace, "minimal")
    assert stored["spec"] == parse_spec(minimal).model_dump(mode="json", by_alias=True, exclude_none=True)


@pytest.mark.parametrize(
    "gates",
    [
        pytest.param(
            {"goldenSet": {"configMapKeyRef": {"name": "golden", "key": "iris.jsonl"}}, "minAccuracy": 0.92},
            id="minimal",
        ),
        pytest.param({"contract": {"allowContractChange": True}}, id="contract-only"),
        pytest.param(
            {
                "contract": {"enabled": True, "allowContractChange": False},
                "goldenSet": {
                    "storageUri": "https://models.example.com/golden.jsonl",
                    "batchSize": 64,
                    "minAnswered": 200,
                },
                "minAccuracy": 0.92,
                "minAgreement": 0.95,
                "maxPSI": 0.25,
                "maxLatencyP95": "100ms",
                "minDemographicParity": 0.9,
                "predictionOutput": "predict",
                "positiveClass": "fraud",
                "timeout": "10m",
                "onMirror": True,
            },
            id="every-field",
        ),
    ],
)
def test_gates_are_stored_with_the_operators_defaults(
    gates: dict[str, Any], api: KubeApi, example_namespaces: dict[str, str]
) -> None:
    """Valid gates pass the schema and every CEL rule, and the API server's defaults are the operator's."""
    namespace = next(iter(example_namespaces.values()))
    spec = {
        "model": {"name": "m", "version": "1", "storageUri": "s3://bucket/m"},
        "rollout": {"gates": gates},
    }
    obj = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "gated", "namespace": namespace}}
    stored = api.apply({**obj, "spec": spec})
    api.delete(API_VERSION, KIND, namespace, "gated")
    assert stored["spec"] == parse_spec(spec).model_dump(mode="json", by_alias=True, exclude_none=True)


# ------------------------------------------------------------------------------------ the docs


def _rules(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(documented path of the field a rule blames, rule): the docs' `[]`/`{}` path convention."""
    for rule in node.get("x-kubernetes-validations", []):
        yield path + rule.get("fieldPath", ""), rule
    for name, sub in node.get("properties", {}).items():
        yield from _rules(sub, f"{path}.{name}")
    for key, marker in (("items", "[]"), ("additionalProperties", "{}")):
        if isinstance(node.get(key), dict):
            yield from _rules(node[key], path + marker)


def test_every_cel_rule_is_documented_where_it_blames(schema: dict[str, Any]) -> None:
    """docs/reference.md says "CEL" on the line of each field a rule blames (a rule on a list item or
    map value is documented at the list or map), so the docs follow a rule that moves to CEL."""
    lines = (REPO_ROOT / "docs" / "reference.md").read_text().splitlines()
    found = list(_rules(schema["properties"]["spec"], "spec"))
    assert len(found) >= 25
    for path, rule in found:
        documented = path.removesuffix("{}").removesuffix("[]")
        rows = [line for line in lines if f"`{documented}`" in line and "CEL" in line]
        assert rows, (
            f"docs/reference.md: no line documents {documented} as checked by CEL ({rule['message']})"
        )
