"""Gateway API router cases beyond the contract suite (tests/test_routers.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import Match, ModelDeploymentSpec, StringMatch
from modeldeploy.routing import Split
from modeldeploy.routing.gateway_api import GatewayAPIRouter, header_match

PARENT = ObjectRef(name="fraud-scorer", namespace="ml", uid="uid-1")
MODEL = {"name": "fraud_scorer", "version": "7", "storageUri": "s3://models/fraud_scorer/7"}
ROUTER = GatewayAPIRouter()


def spec(grpc: bool = True, **gateway: Any) -> ModelDeploymentSpec:
    config = {"parentRefs": [{"name": "inference", "namespace": "gateway"}], **gateway}
    if grpc:
        # gRPC needs hostnames of its own: Gateway API rejects a GRPCRoute sharing one with an HTTPRoute.
        config["grpc"] = {"hostnames": ["grpc.models.example.com"]}
    return ModelDeploymentSpec.model_validate({"model": MODEL, "traffic": {"gatewayAPI": config}})


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(StringMatch(exact="always"), {"type": "Exact", "value": "always"}, id="exact"),
        # Gateway API forbids empty values; "present and empty" is a regex.
        pytest.param(StringMatch(exact=""), {"type": "RegularExpression", "value": "^$"}, id="exact-empty"),
        pytest.param(
            StringMatch(prefix="acme"), {"type": "RegularExpression", "value": "^acme.*"}, id="prefix"
        ),
        pytest.param(
            StringMatch(prefix="a.b+c (x)"),
            {"type": "RegularExpression", "value": r"^a\.b\+c \(x\).*"},
            id="prefix-metacharacters-escaped-space-not",
        ),
        pytest.param(
            StringMatch(prefix=""), {"type": "RegularExpression", "value": "^.*"}, id="prefix-empty"
        ),
        pytest.param(
            StringMatch(regex="^v[0-9]+$"), {"type": "RegularExpression", "value": "^v[0-9]+$"}, id="regex"
        ),
    ],
)
def test_header_match_translation(value: StringMatch, expected: dict[str, str]) -> None:
    assert header_match("x-h", value) == {"name": "x-h", **expected}


@pytest.mark.parametrize(
    ("prefix", "matching", "not_matching"),
    [
        pytest.param("acme.", ["acme.", "acme.io"], ["acmex", "xacme.", ""], id="dot-is-literal"),
        pytest.param("a+b", ["a+b", "a+bc"], ["aab", "ab"], id="plus-is-literal"),
        pytest.param("[v1]", ["[v1]-x"], ["v", "1"], id="brackets-are-literal"),
        pytest.param("", ["", "anything"], [], id="empty-matches-any-value"),
    ],
)
def test_prefix_regex_means_the_prefix(prefix: str, matching: list[str], not_matching: list[str]) -> None:
    pattern = header_match("x", StringMatch(prefix=prefix))["value"]
    for value in matching:  # Envoy matches the whole value; others search: both must agree
        assert re.fullmatch(pattern, value), value
        assert re.search(pattern, value), value
    for value in not_matching:
        assert not re.fullmatch(pattern, value), value
        assert not re.search(pattern, value), value


@pytest.mark.parametrize(
    ("config", "parent_refs", "hostnames"),
    [
        pytest.param(
            {"parentRefs": [{"name": "gw"}]}, [{"name": "gw"}], None, id="name-only-no-hostnames-key"
        ),
        pytest.param(
            {
                "parentRefs": [{"name": "gw", "namespace": "edge", "sectionName": "https", "port": 443}],
                "hostnames": ["fraud.example.com", "*.example.com"],
            },
            [{"name": "gw", "namespace": "edge", "sectionName": "https", "port": 443}],
            ["fraud.example.com", "*.example.com"],
            id="every-field",
        ),
        pytest.param(
            {"parentRefs": [{"name": "a", "sectionName": "x"}, {"name": "a", "sectionName": "y"}]},
            [{"name": "a", "sectionName": "x"}, {"name": "a", "sectionName": "y"}],
            None,
            id="two-listeners-in-order",
        ),
    ],
)
def test_parent_refs_and_hostnames_pass_through(
    config: dict[str, Any], parent_refs: list[dict[str, Any]], hostnames: list[str] | None
) -> None:
    http, grpc = ROUTER.routes(PARENT, spec(**config), Split(10))
    assert http["spec"]["parentRefs"] == parent_refs
    assert http["spec"].get("hostnames") == hostnames
    # The GRPCRoute shares the parents unless told otherwise, but never the HTTP hostnames.
    assert grpc["spec"]["parentRefs"] == parent_refs
    assert grpc["spec"]["hostnames"] == ["grpc.models.example.com"]


def test_grpc_can_attach_to_a_listener_of_its_own() -> None:
    own = {"parentRefs": [{"name": "gw", "sectionName": "grpc"}], "hostnames": ["g.example.com"]}
    target = ModelDeploymentSpec.model_validate(
        {"model": MODEL, "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}], "grpc": own}}}
    )
    http, grpc = ROUTER.routes(PARENT, target, Split(10))
    assert http["spec"]["parentRefs"] == [{"name": "gw"}]
    assert grpc["spec"]["parentRefs"] == [{"name": "gw", "sectionName": "grpc"}]
    assert grpc["spec"]["hostnames"] == ["g.example.com"]


@pytest.mark.parametrize(
    ("grpc", "expected"),
    [
        pytest.param(
            True, {"HTTPRoute": ("fraud-scorer", 8000), "GRPCRoute": ("fraud-scorer-grpc", 8001)}, id="on"
        ),
        pytest.param(False, {"HTTPRoute": ("fraud-scorer", 8000)}, id="off"),
    ],
)
def test_grpc_route_and_ports(grpc: bool, expected: dict[str, tuple[str, int]]) -> None:
    split = Split(20, match=(Match(headers={"x-a": StringMatch(exact="1")}),))
    objects = by_kind(ROUTER.routes(PARENT, spec(grpc=grpc), split))
    assert {kind: obj["metadata"]["name"] for kind, obj in objects.items()} == {
        kind: name for kind, (name, _) in expected.items()
    }
    for kind, (_, port) in expected.items():
        refs = [ref for rule in objects[kind]["spec"]["rules"] for ref in rule["backendRefs"]]
        assert {ref["port"] for ref in refs} == {port}


STRIP = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["modeldeploy-admin-key"]}}


@pytest.mark.parametrize("kind", ["HTTPRoute", "GRPCRoute"])
def test_every_rule_strips_the_triton_admin_header(kind: str) -> None:
    cohort = (Match(headers={"x-canary": StringMatch(exact="1")}),)
    for split in (Split(0), Split(30, match=cohort), Split(0, mirror=True)):
        obj = by_kind(ROUTER.routes(PARENT, spec(), split))[kind]
        assert all(rule["filters"][0] == STRIP for rule in obj["spec"]["rules"]), split


@pytest.mark.parametrize("kind", ["HTTPRoute", "GRPCRoute"])
def test_mirror_rule_shape(kind: str) -> None:
    port = 8000 if kind == "HTTPRoute" else 8001
    obj = by_kind(ROUTER.routes(PARENT, spec(), Split(0, mirror=True)))[kind]
    assert obj["spec"]["rules"] == [
        {
            "backendRefs": [{"name": "fraud-scorer-primary", "port": port, "weight": 100}],
            "filters": [
                STRIP,
                {
                    "type": "RequestMirror",
                    "requestMirror": {"backendRef": {"name": "fraud-scorer-canary", "port": port}},
                },
            ],
        }
    ]


def test_cohort_rule_comes_first_with_one_match_per_match() -> None:
    cohort = (
        Match(headers={"X-Canary": StringMatch(exact="1")}),
        Match(headers={"x-tenant": StringMatch(prefix="acme"), "x-beta": StringMatch(exact="yes")}),
    )
    (http, _) = ROUTER.routes(PARENT, spec(), Split(0, match=cohort))
    first, split_rule = http["spec"]["rules"]
    assert first == {
        "filters": [STRIP],
        "matches": [
            {"headers": [{"name": "x-canary", "type": "Exact", "value": "1"}]},
            {
                "headers": [
                    {"name": "x-tenant", "type": "RegularExpression", "value": "^acme.*"},
                    {"name": "x-beta", "type": "Exact", "value": "yes"},
                ]
            },
        ],
        "backendRefs": [{"name": "fraud-scorer-canary", "port": 8000, "weight": 100}],
    }
    assert split_rule == {
        "filters": [STRIP],
        "backendRefs": [{"name": "fraud-scorer-primary", "port": 8000, "weight": 100}],
    }


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param(
            {"x canary": StringMatch(exact="1")}, r"rollout\.match\[0\]\.headers.*'x canary'", id="space"
        ),
        pytest.param(
            {":authority": StringMatch(exact="a")}, r"not a valid HTTP header name", id="pseudo-header"
        ),
        pytest.param(
            {"X-A": StringMatch(exact="1"), "x-a": StringMatch(exact="2")},
            r"'x-a' is given twice",
            id="case-twin",
        ),
        # Validation rejects these too; the router still refuses what slipped past it.
        pytest.param({"x-a": StringMatch.model_construct(regex="")}, r"empty regex", id="empty-regex"),
    ],
)
def test_unusable_headers_are_rejected_naming_the_field(
    headers: dict[str, StringMatch], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ROUTER.routes(PARENT, spec(), Split(0, match=(Match.model_construct(headers=headers),)))


def test_needs_a_gateway_api_spec() -> None:
    plain = ModelDeploymentSpec.model_validate({"model": MODEL})
    with pytest.raises(ValueError, match=r"traffic\.gatewayAPI is not set"):
        ROUTER.routes(PARENT, plain, Split(0))
