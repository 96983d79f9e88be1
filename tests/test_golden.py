"""Golden manifests: what `modeldeploy render -f examples/<each>.yaml` prints, reviewed in git.

A change to any renderer shows up here as a diff of real manifests, the way a GitOps reviewer sees it.
Regenerate after an intended change with `make golden` (UPDATE_GOLDEN=1 pytest tests/test_golden.py),
then read the diff before committing it.

Every rendered object is also validated: sent to the real API server as a server-side apply dry
run (dryRun=All, strict field validation, so admission and every schema and CEL rule run and
nothing is stored), and offline, built-in kinds against the official schemas (strict) of the oldest
Kubernetes the chart installs on, of the control plane's minor and of the newest that
kubernetes-validate knows (validation.SCHEMA_VERSIONS), custom resources (PodMonitor, HTTPRoute, ...)
against their upstream CRDs in ../shared/third-party-crds/.
"""

from __future__ import annotations

import copy
import difflib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.cli import RENDER_HEADER, main, render_document
from modeldeploy.render.names import FIELD_MANAGER
from modeldeploy.render.options import RenderOptions
from testbed.controlplane import ControlPlane
from testbed.kubeapi import ApiError, KubeApi
from validation import (
    REPO_ROOT,
    SCHEMA_VERSIONS,
    is_third_party,
    validate_k8s,
    validate_third_party,
)

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
GOLDEN_DIR = Path(__file__).with_name("golden")
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
REGENERATE = "make golden   (or: UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/test_golden.py)"


def render(example: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(example.read_text()):
        # Only ModelDeployments render; a ConfigMap beside one (a golden set) is the user's own.
        if doc and doc.get("kind") == "ModelDeployment":
            out += render_document(doc, RenderOptions())
    return out


def rendered_text(example: Path) -> str:
    # What `modeldeploy render -f` prints after its two-line "do not apply" comment (RENDER_HEADER).
    return yaml.safe_dump_all(render(example), sort_keys=False)


def golden_path(example: Path) -> Path:
    return GOLDEN_DIR / example.name


def rendered_objects() -> list[Any]:
    params = []
    for example in EXAMPLES:
        for obj in render(example):
            name = f"{example.stem}:{obj['kind']}/{obj['metadata']['name']}"
            params.append(pytest.param(obj, id=name))
    return params


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_render_matches_golden(example: Path) -> None:
    text = rendered_text(example)
    golden = golden_path(example)
    if UPDATE:
        GOLDEN_DIR.mkdir(exist_ok=True)
        golden.write_text(text)
        return
    assert golden.exists(), f"no golden file for {example.name}; create it with:\n    {REGENERATE}"
    expected = golden.read_text()
    if text != expected:
        diff = difflib.unified_diff(
            expected.splitlines(), text.splitlines(), f"golden/{golden.name}", "rendered", lineterm="", n=3
        )
        shown = "\n".join(list(diff)[:80])
        pytest.fail(
            f"rendering examples/{example.name} changed; if intended, regenerate and review the diff:\n"
            f"    {REGENERATE}\n{shown}",
            pytrace=False,
        )


def test_every_golden_file_has_an_example() -> None:
    stale = sorted(
        p.name for p in GOLDEN_DIR.glob("*.yaml") if not (REPO_ROOT / "examples" / p.name).exists()
    )
    if UPDATE:
        for name in stale:
            (GOLDEN_DIR / name).unlink()
        return
    assert not stale, f"golden files without an example: {stale}; regenerate with:\n    {REGENERATE}"


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_cli_render_prints_the_golden(
    example: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    source = f"examples/{example.name}"
    assert main(["render", "-f", source]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    # The golden, each document opened by `---` and its file, as `helm template` marks them.
    marker = f"---\n# Source: {source}\n"
    assert captured.out.count(marker) == len(render(example))
    assert captured.out == RENDER_HEADER + marker + rendered_text(example).replace("---\n", marker)


def test_examples_render_the_expected_kinds() -> None:
    kinds = {obj["kind"] for example in EXAMPLES for obj in render(example)}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodMonitor",
        "PrometheusRule",
    } <= kinds
    # The model config rides in the pod template: the operator writes no ConfigMap at all.
    assert "ConfigMap" not in kinds


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> KubeApi:
    return control_plane.admin


@pytest.fixture(scope="module")
def dry_run_namespace(api: KubeApi) -> Iterator[str]:
    # Admission refuses objects in a namespace that does not exist, even in a dry run.
    name = f"golden-{uuid.uuid4().hex[:8]}"
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    api.delete("v1", "Namespace", None, name)


@pytest.mark.parametrize("obj", rendered_objects())
def test_api_server_accepts_the_rendered_object(
    obj: dict[str, Any], api: KubeApi, dry_run_namespace: str
) -> None:
    """A server-side apply as the operator sends it (its field manager, strict), as a dry run."""
    sent = copy.deepcopy(obj)
    sent["metadata"]["namespace"] = dry_run_namespace
    answer = api.apply(sent, manager=FIELD_MANAGER, dry_run=True)
    assert (answer["kind"], answer["metadata"]["name"]) == (obj["kind"], obj["metadata"]["name"])
    # Nothing was stored.
    assert api.get(obj["apiVersion"], obj["kind"], dry_run_namespace, obj["metadata"]["name"]) is None


def test_the_dry_run_can_fail(api: KubeApi, dry_run_namespace: str) -> None:
    # A dry run that accepted anything would prove nothing: a bad port is refused like a real apply.
    (service,) = [o for o in render(REPO_ROOT / "examples" / "fraud-scorer.yaml") if o["kind"] == "Service"]
    sent = copy.deepcopy(service)
    sent["metadata"]["namespace"] = dry_run_namespace
    sent["spec"]["ports"][0]["port"] = 70000
    with pytest.raises(ApiError) as caught:
        api.apply(sent, manager=FIELD_MANAGER, dry_run=True)
    assert caught.value.status == 422
    assert "spec.ports[0].port" in caught.value.message


@pytest.mark.parametrize("obj", rendered_objects())
def test_rendered_object_is_valid(obj: dict[str, Any]) -> None:
    if is_third_party(obj):
        validate_third_party(obj)
    else:
        for version in SCHEMA_VERSIONS:
            validate_k8s(obj, version)


def test_validation_catches_a_broken_deployment() -> None:
    # The validators must be able to fail: an unknown field and a wrong type are both caught.
    (deployment,) = [
        o for o in render(REPO_ROOT / "examples" / "fraud-scorer.yaml") if o["kind"] == "Deployment"
    ]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(AssertionError, match="gpus"):
        validate_k8s(broken)
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(AssertionError, match="replicas"):
        validate_k8s(broken)


def test_the_oldest_schemas_refuse_a_newer_field() -> None:
    # The chart's floor is checked for real: pod-level resources (Kubernetes 1.32) are unknown to 1.29.
    assert SCHEMA_VERSIONS[0] == "1.29.0"
    (deployment,) = [
        o for o in render(REPO_ROOT / "examples" / "fraud-scorer.yaml") if o["kind"] == "Deployment"
    ]
    newer = yaml.safe_load(yaml.safe_dump(deployment))
    newer["spec"]["template"]["spec"]["resources"] = {"limits": {"cpu": "1"}}
    with pytest.raises(AssertionError, match=r"Kubernetes 1\.29\.0: spec\.template\.spec: .*'resources'"):
        validate_k8s(newer, SCHEMA_VERSIONS[0])
    for version in SCHEMA_VERSIONS[1:]:
        validate_k8s(newer, version)


def test_validation_catches_a_broken_pod_monitor() -> None:
    (monitor,) = [
        o for o in render(REPO_ROOT / "examples" / "fraud-scorer.yaml") if o["kind"] == "PodMonitor"
    ]
    broken = yaml.safe_load(yaml.safe_dump(monitor))
    broken["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["action"] = "rename"
    with pytest.raises(AssertionError, match="action"):
        validate_third_party(broken)
    broken = yaml.safe_load(yaml.safe_dump(monitor))
    broken["spec"]["podMetricsEndpoint"] = broken["spec"].pop("podMetricsEndpoints")
    with pytest.raises(AssertionError, match="podMetricsEndpoint: unknown field"):
        validate_third_party(broken)


def test_the_api_server_refuses_a_broken_prometheus_rule(api: KubeApi, dry_run_namespace: str) -> None:
    # The upstream CRD's schema judges the golden PrometheusRules: a `for` it cannot parse is refused.
    (rule,) = [
        o for o in render(REPO_ROOT / "examples" / "fraud-scorer.yaml") if o["kind"] == "PrometheusRule"
    ]
    sent = copy.deepcopy(rule)
    sent["metadata"]["namespace"] = dry_run_namespace
    sent["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    with pytest.raises(ApiError) as caught:
        api.apply(sent, manager=FIELD_MANAGER, dry_run=True)
    assert caught.value.status == 422
    assert "spec.groups[0].rules[0].for" in caught.value.message


@pytest.mark.parametrize(
    ("namespaces", "valid"),
    [(("a", "b"), True), (("a", "a"), False)],
    ids=["same-name-two-namespaces", "same-parent-twice"],
)
def test_cel_rules_see_escaped_property_names(namespaces: tuple[str, str], valid: bool) -> None:
    # Gateway API's parentRefs rules read p.__namespace__ (namespace is a CEL reserved word): only with
    # Kubernetes' property-name escaping do two Gateways of the same name in two namespaces differ.
    (route,) = [o for o in render(REPO_ROOT / "examples" / "gateway-canary.yaml") if o["kind"] == "HTTPRoute"]
    route = yaml.safe_load(yaml.safe_dump(route))
    route["spec"]["parentRefs"] = [{"name": "gw", "namespace": ns} for ns in namespaces]
    if valid:
        validate_third_party(route)
    else:
        with pytest.raises(AssertionError, match=r"\[cel\] spec"):
            validate_third_party(route)
