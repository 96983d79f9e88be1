"""Messages for bad spec fields state the rule in words, never as a regular expression.

One table: for each bad input, the line `modeldeploy render` prints, and what the real `kubectl apply`
(.tools/bin/kubectl, client-side apply: kubectl's default, with strict field validation) prints
against the real API server with the CRD from crds/. Both must name the field and say the rule; no
message for a spec field may show a regular expression. Where kubectl cannot say more (an unknown
field is refused by strict decoding before any rule runs, so no "did you mean"), the table shows
what it does print, and the CLI gives the hint.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.api.base import API_VERSION, CEL_KEY, KIND, MATCHES_KEY
from modeldeploy.api.crd import crd
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.cli import main
from testbed.controlplane import ADMIN_USER, ControlPlane, Credentials
from validation import REPO_ROOT

KUBECTL = REPO_ROOT / ".tools" / "bin" / "kubectl"
FILE = "bad.yaml"
MODEL = {"name": "m", "version": "1", "storageUri": "s3://models/m/1"}

# Sequences that occur in regular expressions and in no sentence written for people. Single
# characters are not enough: an HTTP token may contain ^, $ and |, and the message lists them.
REGEX_SEQUENCES = (
    "^[", "^(", "]$", ")$", "[^", "[a-", "[A-", "[0-", "]*", "]+", "]{", ")*", ")+", ")?", "(?",
    "\\s", "\\S", "\\d", "\\.", ".*", "|(", ")|", "{1,", "should match",
)  # fmt: skip


def regex_in(message: str) -> list[str]:
    return [seq for seq in REGEX_SEQUENCES if seq in message]


def spec(**sections: Any) -> dict[str, Any]:
    model = sections.pop("model", {})
    return {"model": {**MODEL, **model}, **sections}


def without(mapping: dict[str, Any], key: str, **extra: Any) -> dict[str, Any]:
    return {**{k: v for k, v in mapping.items() if k != key}, **extra}


STORAGE_URI = (
    "must be s3://<bucket>/<path>, gs://<bucket>/<path>, pvc://<claim>/<path>, or an https:// URL of a "
    ".tar.gz, .tgz or .zip archive; bucket and claim names are lower-case letters, digits, '.', '_' and "
    "'-' (a bucket at least 2 characters), e.g. s3://models/fraud_scorer/7"
)
DURATION = (
    "must be a duration: whole numbers each followed by ms, s, m or h, without spaces, e.g. 90s, 5m or 1h30m"
)
GOLDEN_URI = (
    "must be an https:// URL without spaces or #, e.g. https://models.example.com/golden/fraud.jsonl: the "
    "operator fetches the golden set itself and never reads storage Secrets, so s3://, gs:// and pvc:// "
    "cannot work; for a private bucket use a presigned https URL (its query is never shown)"
)
INVALID = f'The {KIND} "bad" is invalid: '
# What the API server adds when a blocking error (a wrong type, an enum) kept it from running the rules.
NOT_CHECKED = (
    "* <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)

# (spec, the CLI's message after "<file>: document 1: ModelDeployment bad: ", what kubectl prints: a
# line, or its lines)
CASES = [
    pytest.param(
        spec(model={"storageUri": "ftp://x/y"}),
        f"spec.model.storageUri: {STORAGE_URI}",
        f'{INVALID}spec.model.storageUri: Invalid value: "ftp://x/y": {STORAGE_URI}',
        id="storage-uri-ftp",
    ),
    pytest.param(
        spec(rollout={"interval": "5 minutes"}),
        f"spec.rollout.interval: {DURATION}",
        f'{INVALID}spec.rollout.interval: Invalid value: "5 minutes": {DURATION}',
        id="interval-in-words",
    ),
    pytest.param(
        spec(rollout={"gates": {"goldenSet": {"storageUri": "s3://golden/fraud.jsonl"}, "minAccuracy": 0.9}}),
        f"spec.rollout.gates.goldenSet.storageUri: {GOLDEN_URI}",
        f"{INVALID}spec.rollout.gates.goldenSet.storageUri: Invalid value: "
        f'"s3://golden/fraud.jsonl": {GOLDEN_URI}',
        id="golden-set-s3",
    ),
    pytest.param(
        {"model": without(MODEL, "storageUri", storageUrl="s3://models/m/1")},
        "spec.model.storageUrl: unknown field; did you mean storageUri?",
        # Strict decoding refuses the object before any rule runs: no hint is possible (docs/reference.md).
        f'Error from server (BadRequest): error when creating "{FILE}": {KIND} in version "v1alpha1" '
        f'cannot be handled as a {KIND}: strict decoding error: unknown field "spec.model.storageUrl"',
        id="storage-url-typo",
    ),
    pytest.param(
        spec(replicas=3),
        "spec.replicas: unknown field; the fields here are "
        "model, runtime, scaling, traffic, rollout, networkPolicy, alerts",
        f'Error from server (BadRequest): error when creating "{FILE}": {KIND} in version "v1alpha1" '
        f'cannot be handled as a {KIND}: strict decoding error: unknown field "spec.replicas"',
        id="unknown-section",
    ),
    pytest.param(
        spec(model={"version": 7}),
        'spec.model.version: must be a string, and YAML read this as a number: put it in quotes, e.g. "7"',
        # A wrong type stops the API server before any CEL rule: it cannot give the hint.
        [
            INVALID,
            '* spec.model.version: Invalid value: "integer": spec.model.version in body must be of type '
            'string: "integer"',
            NOT_CHECKED,
        ],
        id="version-as-number",
    ),
    pytest.param(
        spec(model={"name": "fraud/scorer"}),
        "spec.model.name: must be a Triton model name: letters, digits, '_', '.' and '-', starting with a "
        "letter or digit (it names a directory in the model repository), e.g. fraud_scorer",
        f'{INVALID}spec.model.name: Invalid value: "fraud/scorer": must be a Triton model name: letters, '
        "digits, '_', '.' and '-', starting with a letter or digit (it names a directory in the model "
        "repository), e.g. fraud_scorer",
        id="model-name-with-slash",
    ),
    pytest.param(
        spec(model={"version": "v 2"}),
        "spec.model.version: must be letters, digits, '_', '.' and '-', starting with a letter or digit, "
        "e.g. 7 or 2024-06-01.rc1",
        f"{INVALID}spec.model.version: Invalid value: \"v 2\": must be letters, digits, '_', '.' and '-', "
        "starting with a letter or digit, e.g. 7 or 2024-06-01.rc1",
        id="version-with-space",
    ),
    pytest.param(
        spec(model={"storageSecretRef": {"name": "Model_Store"}}),
        "spec.model.storageSecretRef.name: must be a Secret name: lower-case letters, digits, '-' and '.', "
        "starting and ending with a letter or digit, e.g. model-store-creds",
        f'{INVALID}spec.model.storageSecretRef.name: Invalid value: "Model_Store": must be a Secret name: '
        "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, "
        "e.g. model-store-creds",
        id="secret-name-not-dns",
    ),
    pytest.param(
        spec(model={"backend": "tensorflw"}),
        "spec.model.backend: must be one of onnxruntime, tensorrt, pytorch, tensorflow, python, openvino, "
        'not "tensorflw"; did you mean tensorflow?',
        [
            INVALID,
            '* spec.model.backend: Unsupported value: "tensorflw": supported values: "onnxruntime", '
            '"tensorrt", "pytorch", "tensorflow", "python", "openvino"',
            NOT_CHECKED,
        ],
        id="backend-enum",
    ),
    pytest.param(
        spec(runtime={"gpuResource": "gpu"}),
        "spec.runtime.gpuResource: must be an extended resource name, <domain>/<name> in lower-case letters, "
        "digits, '-', '.' and '_', e.g. nvidia.com/gpu or nvidia.com/mig-1g.10gb",
        f'{INVALID}spec.runtime.gpuResource: Invalid value: "gpu": must be an extended resource name, '
        "<domain>/<name> in lower-case letters, digits, '-', '.' and '_', e.g. nvidia.com/gpu or "
        "nvidia.com/mig-1g.10gb",
        id="gpu-resource-without-domain",
    ),
    pytest.param(
        spec(runtime={"runtimeClassName": "NVIDIA"}),
        "spec.runtime.runtimeClassName: must be a RuntimeClass name: lower-case letters, digits, '-' and "
        "'.', starting and ending with a letter or digit, e.g. nvidia",
        f'{INVALID}spec.runtime.runtimeClassName: Invalid value: "NVIDIA": must be a RuntimeClass name: '
        "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, e.g. nvidia",
        id="runtime-class-upper-case",
    ),
    pytest.param(
        spec(runtime={"gpus": -1}),
        "spec.runtime.gpus: must be at least 0, not -1",
        f"{INVALID}spec.runtime.gpus: Invalid value: -1: spec.runtime.gpus in body should be greater than or "
        "equal to 0",
        id="gpus-negative",
    ),
    pytest.param(
        spec(runtime={"resources": {"limits": {"cpu": "1 core"}}}),
        "spec.runtime.resources.limits.cpu: must be a Kubernetes quantity, such as 500m, 2, 1.5 or 8Gi",
        f'{INVALID}spec.runtime.resources.limits[cpu]: Invalid value: "1 core": must be a Kubernetes '
        "quantity, such as 500m, 2, 1.5 or 8Gi",
        id="quantity-in-words",
    ),
    pytest.param(
        spec(rollout={"interval": "500ms"}),
        "spec.rollout.interval: must be at least 1s",
        f'{INVALID}spec.rollout.interval: Invalid value: "500ms": must be at least 1s',
        id="interval-too-short",
    ),
    pytest.param(
        spec(rollout={"steps": [{"weight": 50}, {"weight": 101}]}),
        "spec.rollout.steps[1].weight: must be at most 100, not 101",
        f"{INVALID}spec.rollout.steps[1].weight: Invalid value: 101: spec.rollout.steps[1].weight in body "
        "should be less than or equal to 100",
        id="weight-over-100",
    ),
    pytest.param(
        spec(
            rollout={
                "analysis": {"metrics": [{"name": "SuccessRate", "template": "successRate", "min": 0.9}]}
            }
        ),
        "spec.rollout.analysis.metrics[0].name: must be a metric name: lower-case letters, digits and '-', "
        "starting and ending with a letter or digit, e.g. success-rate",
        f"{INVALID}spec.rollout.analysis.metrics[0].name: Invalid value: "
        "\"SuccessRate\": must be a metric name: lower-case letters, digits and '-', starting and ending "
        "with a letter or digit, e.g. success-rate",
        id="metric-name-upper-case",
    ),
    pytest.param(
        spec(rollout={"analysis": {"prometheusUrl": "prometheus:9090"}}),
        "spec.rollout.analysis.prometheusUrl: must be an http:// or https:// URL without spaces, "
        "e.g. http://prometheus.monitoring.svc:9090",
        f'{INVALID}spec.rollout.analysis.prometheusUrl: Invalid value: "prometheus:9090": must be an http:// '
        "or https:// URL without spaces, e.g. http://prometheus.monitoring.svc:9090",
        id="prometheus-url-without-scheme",
    ),
    pytest.param(
        spec(
            rollout={
                "gates": {
                    "goldenSet": {"configMapKeyRef": {"name": "golden", "key": "a/b"}},
                    "minAccuracy": 0.9,
                }
            }
        ),
        "spec.rollout.gates.goldenSet.configMapKeyRef.key: must be a ConfigMap key: letters, digits, '-', "
        "'_' and '.', e.g. fraud.jsonl",
        f'{INVALID}spec.rollout.gates.goldenSet.configMapKeyRef.key: Invalid value: "a/b": must be a '
        "ConfigMap key: letters, digits, '-', '_' and '.', e.g. fraud.jsonl",
        id="configmap-key-with-slash",
    ),
    pytest.param(
        spec(networkPolicy={"ingressNamespaces": ["Istio_System"]}),
        "spec.networkPolicy.ingressNamespaces[0]: must be a namespace name: lower-case letters, digits and "
        "'-', starting and ending with a letter or digit, e.g. istio-system",
        f'{INVALID}spec.networkPolicy.ingressNamespaces[0]: Invalid value: "Istio_System": must be a '
        "namespace name: lower-case letters, digits and '-', starting and ending with a letter or digit, "
        "e.g. istio-system",
        id="ingress-namespace-not-a-name",
    ),
    pytest.param(
        spec(alerts={"errorRate": {"for": "30s5m"}}),
        "spec.alerts.errorRate.for: must be a Prometheus duration: hours, minutes, seconds and milliseconds "
        "(h, m, s, ms) in that order, each at most once, without spaces, e.g. 5m or 1h30m",
        f'{INVALID}spec.alerts.errorRate.for: Invalid value: "30s5m": must be a Prometheus duration: hours, '
        "minutes, seconds and milliseconds (h, m, s, ms) in that order, each at most once, without spaces, "
        "e.g. 5m or 1h30m",
        id="alert-duration-out-of-order",
    ),
    pytest.param(
        spec(alerts={"labels": {"team-name": "payments"}}),
        "spec.alerts.labels: alert label names must be Prometheus label names: letters, digits and '_', "
        "not starting with a digit or with two '_', and none of alertname, namespace and modeldeployment, "
        "e.g. team",
        f"{INVALID}spec.alerts.labels: Invalid value: alert label names must be Prometheus label "
        "names: letters, digits and '_', not starting with a digit or with two '_', and none of alertname, "
        "namespace and modeldeployment, e.g. team",
        id="alert-label-with-dash",
    ),
    pytest.param(
        spec(traffic={"istio": {}}, rollout={"match": [{"headers": {"x cohort": {"exact": "beta"}}}]}),
        "spec.rollout.match[0].headers: header names must be HTTP tokens: 1 to 256 letters, digits or any of "
        "! # $ % & ' * + - . ^ _ ` | ~, and no spaces, e.g. X-Canary",
        f"{INVALID}spec.rollout.match[0].headers: Invalid value: header names must be HTTP tokens: "
        "1 to 256 letters, digits or any of ! # $ % & ' * + - . ^ _ ` | ~, and no spaces, e.g. X-Canary",
        id="header-name-with-space",
    ),
]


@pytest.fixture(scope="module")
def kubeconfig(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} is missing: run `make tools`")
    namespace = f"messages-{uuid.uuid4().hex[:8]}"
    control_plane.admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    creds = Credentials(user=ADMIN_USER, token=control_plane.admin_token)
    yield control_plane.kubeconfig(creds, tmp_path_factory.mktemp("messages") / "kubeconfig", namespace)
    control_plane.admin.delete("v1", "Namespace", None, namespace)


def write(folder: Path, body: dict[str, Any]) -> None:
    doc = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "bad"}, "spec": body}
    (folder / FILE).write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.mark.parametrize(("body", "cli", "kubectl"), CASES)
def test_cli_says_the_rule(
    body: dict[str, Any],
    cli: str,
    kubectl: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(tmp_path, body)
    monkeypatch.chdir(tmp_path)
    assert main(["render", "-f", FILE]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [f"error: {FILE}: document 1: {KIND} bad: {cli}"]
    assert not regex_in(cli), cli


@pytest.mark.parametrize(("body", "cli", "kubectl"), CASES)
def test_kubectl_apply_says_the_rule(
    body: dict[str, Any], cli: str, kubectl: str | list[str], kubeconfig: Path, tmp_path: Path
) -> None:
    write(tmp_path, body)
    done = subprocess.run(
        [str(KUBECTL), f"--kubeconfig={kubeconfig}", "apply", "-f", FILE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done
    assert done.stderr.splitlines() == ([kubectl] if isinstance(kubectl, str) else kubectl)
    assert not regex_in(done.stderr), done.stderr


# ------------------------------------------------------------------ every rule, not only the table


def _nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


SPEC_SCHEMA = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_the_crd_has_no_schema_pattern_for_the_spec() -> None:
    """A schema `pattern` makes the API server answer "should match '^...$'": every one is a CEL rule."""
    assert not [n["pattern"] for n in _nodes(SPEC_SCHEMA) if isinstance(n.get("pattern"), str)]
    assert not [n for n in _nodes(SPEC_SCHEMA) if MATCHES_KEY in n]


def test_no_rule_message_shows_a_regular_expression() -> None:
    messages = {rule["message"] for node in _nodes(SPEC_SCHEMA) for rule in node.get(CEL_KEY, [])}
    assert len(messages) >= 40
    assert not {m: regex_in(m) for m in messages if regex_in(m)}


def test_every_pattern_gives_an_example() -> None:
    matches = [n[MATCHES_KEY] for n in _nodes(ModelDeploymentSpec.model_json_schema()) if MATCHES_KEY in n]
    assert len(matches) >= 15
    assert not [m["message"] for m in matches if "e.g. " not in m["message"]]


def test_the_regex_check_can_fail() -> None:
    assert regex_in("String should match pattern '^([0-9]+(ms|s|m|h))+$'")
    assert regex_in("'^https://[^\\s#]+$'")
    assert not regex_in(DURATION)
