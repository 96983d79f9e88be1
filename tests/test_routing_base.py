"""The Split value, the shared header helpers and the registry (modeldeploy.routing)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.routing import STEADY, Split, router_for
from modeldeploy.routing.base import escape_regex, prefix_regex

MODEL = {"name": "fraud_scorer", "version": "7", "storageUri": "s3://models/fraud_scorer/7"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"canary_weight": -1}, "0 to 100", id="negative"),
        pytest.param({"canary_weight": 101}, "0 to 100", id="over-100"),
        pytest.param({"canary_weight": True}, "0 to 100", id="bool"),
        pytest.param({"canary_weight": 12.5}, "0 to 100", id="float"),
        pytest.param({"canary_weight": 10, "mirror": True}, "mirrored split", id="mirror-with-live-traffic"),
    ],
)
def test_invalid_splits_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Split(**kwargs)


@pytest.mark.parametrize(
    ("split", "steady", "primary"),
    [
        pytest.param(STEADY, True, 100, id="steady"),
        pytest.param(Split(30), False, 70, id="weighted"),
        pytest.param(Split(100), False, 0, id="switched"),
        pytest.param(Split(0, mirror=True), False, 100, id="shadow"),
    ],
)
def test_split_properties(split: Split, steady: bool, primary: int) -> None:
    assert (split.steady, split.primary_weight) == (steady, primary)


@pytest.mark.parametrize(
    "literal",
    ["plain", "a.b", "1+1=2", "(x|y)", "[v]{2}", "^$", "back\\slash", "sp ace", "tab\there", "ünï", ""],
)
def test_escaped_literals_match_only_themselves(literal: str) -> None:
    escaped = escape_regex(literal)
    assert re.fullmatch(escaped, literal)
    assert " " not in literal or "\\ " not in escaped  # RE2 rejects an escaped space
    assert re.fullmatch(prefix_regex(literal), literal + "-tail")  # Envoy matches the whole value


@pytest.mark.parametrize(
    ("traffic", "router"),
    [
        pytest.param({}, "replicaRatio", id="none"),
        pytest.param({"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}, "gatewayAPI", id="gateway-api"),
        pytest.param({"istio": {}}, "istio", id="istio"),
    ],
)
def test_router_for(traffic: dict[str, Any], router: str) -> None:
    spec = ModelDeploymentSpec.model_validate({"model": MODEL, "traffic": traffic})
    assert router_for(spec).name == router
