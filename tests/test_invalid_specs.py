"""Bad input is rejected at the right layer, and every layer names the field.

Each case of tests/invalid_specs.yaml says which layer of the real API server rejects it: the
structural schema, a CEL rule, or none (only the operator). For every case:
1. the operator's validate (rollout/validate.py) rejects it with a problem that starts with the
   field's path, and for a `cel` case with the rule's own message;
2. `schema` and `cel`: the real kube-apiserver, with the CRD from crds/, refuses it both ways a
   client sends it with strict field validation (server-side apply as `kubectl apply --server-side`
   does, and create), with 422 and a cause at that field; a `cel` case with the rule's message
   and nothing else;
3. `operator`: the real API server stores it, so the operator is the only line of defence, and
   the corpus says so honestly.
And on edge values of the rules both layers check (quantities, duration bounds, step weights), the
API server and the operator accept and refuse the same ones.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.api.base import API_VERSION, CEL_KEY, KIND
from modeldeploy.api.crd import crd
from modeldeploy.api.resource import InvalidSpecError
from modeldeploy.rollout.validate import validate
from testbed.controlplane import ControlPlane
from testbed.kubeapi import ApiError, KubeApi

CORPUS_PATH = Path(__file__).with_name("invalid_specs.yaml")
CORPUS: list[dict[str, Any]] = yaml.safe_load(CORPUS_PATH.read_text())
LAYERS = ("schema", "cel", "operator")
DECODING = ("unknown-field", "wrong-type")
# What the API server adds when schema errors stopped it from evaluating the CEL rules.
NOT_CHECKED = "some validation rules were not checked because the object was invalid"


def _cel_messages(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        found |= {rule["message"] for rule in node.get(CEL_KEY, [])}
        for value in node.values():
            found |= _cel_messages(value)
    elif isinstance(node, list):
        for value in node:
            found |= _cel_messages(value)
    return found


CEL_MESSAGES = _cel_messages(crd())


def manifest(case: dict[str, Any], namespace: str = "ml") -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "bad", "namespace": namespace, **case.get("metadata", {})},
        "spec": case["spec"],
    }


def cases(*layers: str) -> list[Any]:
    chosen = [c for c in CORPUS if not layers or c["kubernetes"] in layers]
    return [pytest.param(c, id=c["name"]) for c in chosen]


def server_field(field: str) -> str:
    """The API server's spelling of a path, in the corpus's: map keys `[key]` become `.key`."""
    return re.sub(r"\[([^\]0-9][^\]]*)\]", r".\1", field)


def causes(error: ApiError) -> list[tuple[str, str]]:
    """(field, message) of each cause, the field in the corpus's spelling."""
    found = error.body.get("details", {}).get("causes", [])
    return [(server_field(str(c.get("field", ""))), str(c.get("message", ""))) for c in found]


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> KubeApi:
    return control_plane.admin


@pytest.fixture(scope="module")
def corpus_namespace(api: KubeApi) -> Iterator[str]:
    # One namespace for the module: a rejected case stores nothing, an accepted one is deleted.
    name = f"corpus-{uuid.uuid4().hex[:8]}"
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    api.delete("v1", "Namespace", None, name)


# --------------------------------------------------------------------------------- the corpus


def test_corpus_shape() -> None:
    names = [c["name"] for c in CORPUS]
    assert len(names) >= 60
    assert len(set(names)) == len(names), "case names must be unique"
    for case in CORPUS:
        assert case["kubernetes"] in LAYERS, case["name"]
        assert case["field"].startswith(("spec", "metadata.name")), case["name"]
        assert ("message" in case) == (case["kubernetes"] == "cel"), (
            f"{case['name']}: message is for cel cases"
        )
        if "decoding" in case:
            assert case["kubernetes"] == "schema" and case["decoding"] in DECODING, case["name"]
        if case["kubernetes"] == "cel":
            assert case["message"] in CEL_MESSAGES, f"{case['name']}: no CEL rule of the CRD says that"
    for layer in ("schema", "cel"):
        assert any(c["kubernetes"] == layer for c in CORPUS), f"no case for the {layer} layer"


@pytest.mark.parametrize("case", cases())
def test_operator_rejects_naming_the_field(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        validate(manifest(case))
    problems = caught.value.problems
    assert any(p.startswith(f"{case['field']}: ") for p in problems), (
        f"expected a problem naming {case['field']}, got {problems}"
    )
    if case["kubernetes"] == "cel":
        # The operator and the API server say the same thing, so users see one message wherever it is caught.
        assert f"{case['field']}: {case['message']}" in problems


def _rejected(send: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        send()
    return caught.value


def _check_validation_error(case: dict[str, Any], error: ApiError) -> None:
    assert error.status == 422, error
    assert error.reason == "Invalid", error
    found = causes(error)
    at_field = [message for field, message in found if field == case["field"]]
    assert at_field, f"no cause names {case['field']}: {found}"
    if case["kubernetes"] == "cel":
        # Exactly the one rule the case breaks, and its message as the operator words it.
        assert all(
            field == case["field"] and message.endswith(f": {case['message']}") for field, message in found
        ), found
    else:
        assert not any(m.endswith(tuple(f": {c}" for c in CEL_MESSAGES)) for m in at_field), (
            f"a CEL rule rejects it, not the schema: make it a cel case: {at_field}"
        )
        others = [(f, m) for f, m in found if f != case["field"]]
        assert all(NOT_CHECKED in m for _, m in others), f"the case breaks more than one rule: {others}"


@pytest.mark.parametrize("case", cases("schema", "cel"))
def test_api_server_applies_nothing_and_names_the_field(
    case: dict[str, Any], api: KubeApi, corpus_namespace: str
) -> None:
    """Server-side apply with strict field validation: what `kubectl apply --server-side` sends."""
    error = _rejected(lambda: api.apply(manifest(case, corpus_namespace)))
    if "decoding" in case:
        # Server-side apply builds a typed object first, and answers 500 when it cannot.
        assert error.status == 500, error
        assert "failed to create typed patch object" in error.message
        spelled = "field not declared in schema" if case["decoding"] == "unknown-field" else "expected"
        assert f".{case['field']}: {spelled}" in error.message, error
    else:
        _check_validation_error(case, error)


@pytest.mark.parametrize("case", cases("schema", "cel"))
def test_api_server_creates_nothing_and_names_the_field(
    case: dict[str, Any], api: KubeApi, corpus_namespace: str
) -> None:
    """Create with fieldValidation=Strict, as `kubectl create` sends it."""
    error = _rejected(lambda: api.create(manifest(case, corpus_namespace)))
    if case.get("decoding") == "unknown-field":
        assert error.status == 400, error
        assert f'strict decoding error: unknown field "{case["field"]}"' in error.message, error
    else:
        _check_validation_error(case, error)


@pytest.mark.parametrize("case", cases("operator"))
def test_only_the_operator_rejects(case: dict[str, Any], api: KubeApi, corpus_namespace: str) -> None:
    obj = manifest(case, corpus_namespace)
    stored = api.apply(obj)
    api.delete(API_VERSION, KIND, corpus_namespace, obj["metadata"]["name"])
    assert stored["metadata"]["uid"], "Kubernetes rejects it already: move the case to the layer that does"


# ------------------------------------------------------------------- the two layers agree


def _with(section: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"model": {"name": "m", "version": "1", "storageUri": "s3://models/m/1"}, section: value}


def _limits(memory: Any) -> dict[str, Any]:
    return _with("runtime", {"resources": {"limits": {"memory": memory}}})


# Edge cases on both sides of each rule the operator and CEL both check: the operator's regex and
# arithmetic against the API server's quantity parser and CEL durations.
AGREEMENT = [
    *(
        pytest.param(_limits(v), id=f"quantity-{v!r}")
        for v in (
            "1e3",
            ".5",
            "5.",
            "+1",
            "1Ki",
            "0.5Gi",
            "1n",
            "1e-3",
            "1k",
            "1K",
            "1e",
            "0x10",
            "1Gi ",
            "1e400",
        )
    ),
    pytest.param(_limits("9" * 64), id="quantity-64-characters"),
    pytest.param(_limits("9" * 65), id="quantity-65-characters"),
    *(
        pytest.param(_with("runtime", {"modelLoadTimeout": v}), id=f"load-timeout-{v}")
        for v in ("10s", "9s999ms", "6h", "6h1ms", "359m60s", "1h300m")
    ),
    *(pytest.param(_with("rollout", {"interval": v}), id=f"interval-{v}") for v in ("1s", "999ms", "1000ms")),
    pytest.param(_with("rollout", {"steps": [{"weight": 0}, {"weight": 100}]}), id="steps-0-then-100"),
    pytest.param(_with("rollout", {"steps": [{"weight": 100}]}), id="steps-one"),
    pytest.param(_with("alerts", {}), id="alerts-empty"),
    pytest.param(_with("alerts", {"window": "1h"}), id="alerts-window-equals-baseline"),
    pytest.param(_with("alerts", {"window": "61m"}), id="alerts-window-past-baseline"),
    pytest.param(_with("alerts", {"window": "1h", "queueTime": {"baseline": "168h"}}), id="alerts-longest"),
    *(
        pytest.param(_with("alerts", {"latencyP95": {"max": v}}), id=f"alerts-sla-{v}")
        for v in ("1ms", "999us", "1h", "1h1ms")
    ),
    *(
        pytest.param(_with("alerts", {"errorRate": {"for": v}}), id=f"alerts-for-{v}")
        for v in ("0s", "24h", "24h1s", "1h30m")
    ),
    *(
        pytest.param(_with("alerts", {"labels": {k: "x"}}), id=f"alerts-label-{k}")
        for k in ("team", "_private", "severity", "__x", "alertname", "Team2", "2team")
    ),
    # Flags the operator owns, as getopt_long reads them (api/triton_flags.py), and their neighbours.
    *(
        pytest.param(_with("runtime", {"args": [arg]}), id=f"args-{arg}")
        for arg in (
            "--m",
            "-m",
            "--model-",
            "--model-c=x",
            "--model-co",
            "--model-config-name=x",
            "--model-load-thread-count=2",
            "--strict-readiness",
            "--strict-readiness-x",
            "--strict-m=true",
            "--allow",
            "--allowed=x",
            "--allow-x",
            "-",
            "--",
            "---model-repository",
            "--=x",
            "=--model-repository",
            "--exit-on-error==true",
            "--http-port=8000",
            "--\u00e9=x",
            "--log-verbose=1",
        )
    ),
    pytest.param(
        _with("runtime", {"args": ["--log-file", "--model-repository"]}), id="args-reserved-as-value"
    ),
    pytest.param(_with("runtime", {"args": ["x" * 1024]}), id="args-longest"),
    # Bounds that cross, and those that touch.
    *(
        pytest.param(
            _with("rollout", {"analysis": {"metrics": [{"name": "m", "template": "successRate", **b}]}}),
            id=f"bounds-{i}",
        )
        for i, b in enumerate(
            (
                {"min": 0.5, "max": 0.5},
                {"min": 0.50001, "max": 0.5},
                {"min": 1, "max": 0.999},
                {"min": -1, "max": -2},
                {"relativeToPrimary": {"minRatio": 1, "maxRatio": 1}},
                {"relativeToPrimary": {"minRatio": 1.0000001, "maxRatio": 1}},
                {"relativeToPrimary": {"minDelta": 0, "maxDelta": 0}},
                {"relativeToPrimary": {"minDelta": 0.1, "maxDelta": 0}},
            )
        )
    ),
]


@pytest.mark.parametrize("spec", AGREEMENT)
def test_the_api_server_and_the_operator_agree(
    spec: dict[str, Any], api: KubeApi, corpus_namespace: str
) -> None:
    case = {"spec": spec, "metadata": {"name": "edge"}}
    try:
        validate(manifest(case))
        operator_accepts = True
    except InvalidSpecError:
        operator_accepts = False
    obj = manifest(case, corpus_namespace)
    status = 200
    try:
        api.apply(obj, dry_run=True)
    except ApiError as error:
        status = error.status
    assert status in (200, 422)
    assert (status == 200) == operator_accepts, (
        f"the operator {'accepts' if operator_accepts else 'rejects'} it"
    )
