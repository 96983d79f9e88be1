"""Istio router cases beyond the contract suite (tests/test_routers.py)."""

from __future__ import annotations

from typing import Any

import pytest

from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import Match, ModelDeploymentSpec, StringMatch
from modeldeploy.routing import Split
from modeldeploy.routing.istio import IstioRouter, header_match

PARENT = ObjectRef(name="fraud-scorer", namespace="ml", uid="uid-1")
MODEL = {"name": "fraud_scorer", "version": "7", "storageUri": "s3://models/fraud_scorer/7"}
ROUTER = IstioRouter()
INGRESS = "istio-system/ingress"


def spec(**istio: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({"model": MODEL, "traffic": {"istio": istio}})


def virtual_service(split: Split, **istio: Any) -> dict[str, Any]:
    (obj,) = ROUTER.routes(PARENT, spec(**istio), split)
    return obj


def routes_by_name(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {route["name"]: route for route in obj["spec"]["http"]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(StringMatch(exact="always"), {"exact": "always"}, id="exact"),
        # Istio reads an empty exact value as "header present": "present and empty" is a regex.
        pytest.param(StringMatch(exact=""), {"regex": "^$"}, id="exact-empty"),
        pytest.param(StringMatch(prefix="acme."), {"prefix": "acme."}, id="prefix-native"),
        pytest.param(StringMatch(prefix=""), {"prefix": ""}, id="prefix-empty-is-presence"),
        pytest.param(StringMatch(regex="^v[0-9]+$"), {"regex": "^v[0-9]+$"}, id="regex"),
    ],
)
def test_header_match_translation(value: StringMatch, expected: dict[str, str]) -> None:
    assert header_match(value) == expected


@pytest.mark.parametrize(
    ("istio", "hosts", "gateways"),
    [
        pytest.param({}, ["fraud-scorer"], None, id="mesh-only"),
        pytest.param(
            {"hosts": ["fraud.example.com"]}, ["fraud.example.com", "fraud-scorer"], None, id="extra-host"
        ),
        pytest.param(
            {"hosts": ["fraud-scorer", "a.example"]}, ["fraud-scorer", "a.example"], None, id="host-once"
        ),
        pytest.param({"gateways": [INGRESS]}, ["fraud-scorer"], [INGRESS, "mesh"], id="gateway-plus-mesh"),
        pytest.param({"gateways": ["mesh", INGRESS]}, ["fraud-scorer"], ["mesh", INGRESS], id="mesh-once"),
        pytest.param({"gateways": ["mesh"]}, ["fraud-scorer"], ["mesh"], id="mesh-named"),
    ],
)
def test_hosts_and_gateways(istio: dict[str, Any], hosts: list[str], gateways: list[str] | None) -> None:
    obj = virtual_service(Split(10), **istio)
    assert obj["metadata"]["name"] == "fraud-scorer"
    assert obj["spec"]["hosts"] == hosts
    assert obj["spec"].get("gateways") == gateways


@pytest.mark.parametrize(
    ("istio", "lanes"),
    [
        # name: (gateways the route is bound to, headers it needs, destination port)
        pytest.param({}, {"mesh-split": (None, None, None)}, id="mesh-only-no-conditions"),
        pytest.param({"gateways": ["mesh"]}, {"mesh-split": (None, None, None)}, id="mesh-named-same"),
        pytest.param(
            {"gateways": [INGRESS]},
            {
                "mesh-split": (["mesh"], None, None),
                "gateway-grpc-split": ([INGRESS], {"content-type": {"prefix": "application/grpc"}}, 8001),
                "gateway-http-split": ([INGRESS], None, 8000),
            },
            id="gateway-lanes-name-their-port",
        ),
    ],
)
def test_lanes(istio: dict[str, Any], lanes: dict[str, tuple[Any, Any, int | None]]) -> None:
    routes = routes_by_name(virtual_service(Split(10), **istio))
    assert list(routes) == list(lanes)
    for name, (gateways, headers, port) in lanes.items():
        (match,) = routes[name].get("match", [{}])
        assert (match.get("gateways"), match.get("headers")) == (gateways, headers)
        for item in routes[name]["route"]:
            assert item["destination"].get("port") == (None if port is None else {"number": port})


STRIP = {"request": {"remove": ["modeldeploy-admin-key"]}}


def test_every_route_strips_the_triton_admin_header() -> None:
    cohort = (Match(headers={"x-canary": StringMatch(exact="1")}),)
    for split in (Split(0), Split(30, match=cohort), Split(0, mirror=True)):
        for gateways in ([], [INGRESS]):
            routes = virtual_service(split, gateways=gateways)["spec"]["http"]
            assert all(route["headers"] == STRIP for route in routes), (split, gateways)


def test_mirror_route_shape() -> None:
    routes = routes_by_name(virtual_service(Split(0, mirror=True), gateways=[INGRESS]))
    assert {k: v for k, v in routes["mesh-split"].items() if k != "match"} == {
        "name": "mesh-split",
        "headers": STRIP,
        "route": [{"destination": {"host": "fraud-scorer-primary"}, "weight": 100}],
        "mirror": {"host": "fraud-scorer-canary"},
        "mirrorPercentage": {"value": 100.0},
    }
    assert routes["gateway-http-split"]["mirror"] == {"host": "fraud-scorer-canary", "port": {"number": 8000}}
    assert routes["gateway-grpc-split"]["mirror"] == {"host": "fraud-scorer-canary", "port": {"number": 8001}}


def test_cohort_routes_come_before_each_lane_s_split() -> None:
    cohort = (
        Match(headers={"X-Canary": StringMatch(exact="1")}),
        Match(headers={"x-tenant": StringMatch(prefix="acme")}),
    )
    obj = virtual_service(Split(5, match=cohort), gateways=[INGRESS])
    assert [r["name"] for r in obj["spec"]["http"]] == [
        "mesh-cohort",
        "mesh-split",
        "gateway-grpc-cohort",
        "gateway-grpc-split",
        "gateway-http-cohort",
        "gateway-http-split",
    ]
    routes = routes_by_name(obj)
    assert routes["mesh-cohort"] == {
        "name": "mesh-cohort",
        "match": [
            {"headers": {"x-canary": {"exact": "1"}}, "gateways": ["mesh"]},
            {"headers": {"x-tenant": {"prefix": "acme"}}, "gateways": ["mesh"]},
        ],
        "headers": STRIP,
        "route": [{"destination": {"host": "fraud-scorer-canary"}, "weight": 100}],
    }
    grpc_headers = [m["headers"] for m in routes["gateway-grpc-cohort"]["match"]]
    assert grpc_headers == [
        {"x-canary": {"exact": "1"}, "content-type": {"prefix": "application/grpc"}},
        {"x-tenant": {"prefix": "acme"}, "content-type": {"prefix": "application/grpc"}},
    ]


def test_content_type_cannot_pin_a_cohort_through_gateways() -> None:
    split = Split(0, match=(Match(headers={"Content-Type": StringMatch(exact="application/json")}),))
    with pytest.raises(ValueError, match=r"rollout\.match\[0\]\.headers: content-type"):
        virtual_service(split, gateways=[INGRESS])
    virtual_service(split)  # inside the mesh alone it is just another header


def test_needs_an_istio_spec() -> None:
    plain = ModelDeploymentSpec.model_validate({"model": MODEL})
    with pytest.raises(ValueError, match=r"traffic\.istio is not set"):
        ROUTER.routes(PARENT, plain, Split(0))
