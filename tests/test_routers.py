"""The contract every traffic router must pass, run over all of them (modeldeploy.routing).

Objects are checked the way an API server would, with the shared helpers in tests/validation.py:
defaulted and validated against the upstream CRDs in ../shared/third-party-crds (strict: unknown
fields are errors), with the CRDs' own x-kubernetes-validations CEL rules evaluated by the `cel`
module (common-expression-language); a rule it cannot evaluate fails the test rather than passing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import Match, ModelDeploymentSpec, StringMatch
from modeldeploy.render.kinds import child_kind
from modeldeploy.render.names import common_labels, owner_reference
from modeldeploy.routing import ROUTERS, STEADY, Router, Split, router_for
from validation import (
    is_third_party,
    validate_third_party,
)

GITOPS_MARKERS = ("argocd.argoproj.io/", "app.kubernetes.io/instance-argocd", "kustomize.toolkit.fluxcd.io/")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
WEIGHTS = [0, 1, 5, 25, 50, 99, 100]

# The parent carries GitOps tracking labels in a real cluster; ObjectRef has none to copy, and the
# ownership test below checks that none appear anyway.
PARENT = ObjectRef(
    name="fraud-scorer", namespace="ml", uid="0f0e0d0c-1111-2222-3333-444455556666", generation=4
)
MODEL = {"name": "fraud_scorer", "version": "7", "storageUri": "s3://models/fraud_scorer/7"}


def make_spec(traffic: dict[str, Any] | None = None) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({"model": MODEL, "traffic": traffic or {}})


# Each router's specs: the plainest one first, then the ones that change the object's shape.
SPECS: dict[str, dict[str, ModelDeploymentSpec]] = {
    "gatewayAPI": {
        "gateway": make_spec(
            {
                "gatewayAPI": {
                    "parentRefs": [{"name": "inference", "namespace": "gateway"}],
                    "grpc": {"hostnames": ["grpc.models.example.com"]},
                }
            }
        ),
        "gateway-grpc-own-listener": make_spec(
            {
                "gatewayAPI": {
                    "parentRefs": [{"name": "inference", "namespace": "gateway", "sectionName": "https"}],
                    "hostnames": ["fraud.example.com"],
                    "grpc": {
                        "parentRefs": [{"name": "inference", "namespace": "gateway", "sectionName": "grpc"}],
                        "hostnames": ["fraud-grpc.example.com"],
                    },
                }
            }
        ),
        "gateway-hostnames-no-grpc": make_spec(
            {
                "gatewayAPI": {
                    "parentRefs": [
                        {"name": "inference", "namespace": "gateway", "sectionName": "https", "port": 443},
                        {"name": "inference", "namespace": "gateway", "sectionName": "http"},
                    ],
                    "hostnames": ["fraud.example.com", "*.models.example.com"],
                }
            }
        ),
    },
    "istio": {
        "mesh": make_spec({"istio": {}}),
        "gateways": make_spec(
            {"istio": {"hosts": ["fraud.example.com"], "gateways": ["istio-system/ingress", "edge"]}}
        ),
    },
    "replicaRatio": {"none": make_spec()},
}
ROUTER_NAMES = list(SPECS)

COHORT = (
    Match(headers={"X-Canary": StringMatch(exact="always"), "x-tenant": StringMatch(prefix="acme.")}),
    Match(headers={"x-user-id": StringMatch(regex="^[0-9]*[02468]$")}),
    Match(headers={"x-debug": StringMatch(exact="")}),
    Match(headers={"x-beta": StringMatch(prefix="")}),
)
SPLITS: dict[str, Split] = {
    "steady": STEADY,
    **{f"weight-{w}": Split(w) for w in WEIGHTS[1:]},
    "shadow": Split(0, mirror=True),
    "ab": Split(0, match=COHORT),
    "ab-weighted": Split(30, match=COHORT[:1]),
    "shadow-ab": Split(0, mirror=True, match=COHORT[1:2]),
}


def supports(router: Router, split: Split) -> bool:
    return (router.supports_mirror or not split.mirror) and (router.supports_match or not split.match)


@dataclass(frozen=True)
class Case:
    router: str
    spec_id: str
    split_id: str

    @property
    def spec(self) -> ModelDeploymentSpec:
        return SPECS[self.router][self.spec_id]

    @property
    def split(self) -> Split:
        return SPLITS[self.split_id]

    def routes(self) -> list[dict[str, Any]]:
        return ROUTERS[self.router].routes(PARENT, self.spec, self.split)


def cases() -> list[Any]:
    return [
        pytest.param(Case(router, spec_id, split_id), id=f"{router}-{spec_id}-{split_id}")
        for router, specs in SPECS.items()
        for spec_id in specs
        for split_id, split in SPLITS.items()
        if supports(ROUTERS[router], split)
    ]


def object_cases() -> list[Any]:
    """The cases of routers that own objects."""
    return [c for c in cases() if ROUTERS[c.values[0].router].kinds]


def first_spec(router: str) -> ModelDeploymentSpec:
    return next(iter(SPECS[router].values()))


# --------------------------------------------------------------- router-agnostic inspection


def weighted_rules(obj: dict[str, Any]) -> list[list[tuple[str, int]]]:
    """(backend Service, weight) for each rule or route of a route object."""
    if obj["kind"] in ("HTTPRoute", "GRPCRoute"):
        return [
            [(ref["name"], ref.get("weight", 1)) for ref in rule["backendRefs"]]
            for rule in obj["spec"]["rules"]
        ]
    if obj["kind"] == "VirtualService":
        return [
            [(d["destination"]["host"], d.get("weight", 100)) for d in r["route"]]
            for r in obj["spec"]["http"]
        ]
    raise AssertionError(f"no inspector for {obj['kind']}")


def mentions(obj: dict[str, Any], text: str) -> bool:
    return text in json.dumps(obj["spec"])


# ------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", ROUTER_NAMES)
def test_registry_picks_the_router_the_spec_names(name: str) -> None:
    for spec in SPECS[name].values():
        router = router_for(spec)
        assert router.name == name == spec.traffic.router


@pytest.mark.parametrize("name", ROUTER_NAMES)
def test_every_route_kind_is_an_optional_child_kind(name: str) -> None:
    # The shell lists and prunes the child-kinds table, so a route kind missing from it would be
    # left behind after a switch of router; each has an upstream CRD to be checked against.
    for api_version, kind in ROUTERS[name].kinds:
        child = child_kind(api_version, kind)
        assert child is not None and child.optional, (api_version, kind)
        assert is_third_party({"apiVersion": api_version, "kind": kind})


@pytest.mark.parametrize("case", cases())
def test_routes_are_deterministic_and_share_nothing(case: Case) -> None:
    first, second = case.routes(), case.routes()
    assert json.dumps(first, sort_keys=False) == json.dumps(second, sort_keys=False)
    for obj in second:
        obj["spec"].clear()
        obj["metadata"]["labels"].clear()
    assert first == case.routes(), "two calls returned shared objects"
    # No object aliased inside a result either (YAML would show an anchor).
    assert "&id" not in yaml.safe_dump(first)


@pytest.mark.parametrize("case", cases())
def test_every_object_is_owned_labelled_and_namespaced(case: Case) -> None:
    for obj in case.routes():
        meta = obj["metadata"]
        assert meta["namespace"] == PARENT.namespace
        assert DNS1123_SUBDOMAIN.fullmatch(meta["name"])
        assert len(meta["name"]) <= 253
        assert meta["name"].startswith(PARENT.name)
        assert meta["ownerReferences"] == [owner_reference(PARENT)]
        assert meta["ownerReferences"][0]["controller"] is True
        assert common_labels(PARENT).items() <= meta["labels"].items()
        carried = [*meta.get("labels", {}), *meta.get("annotations", {})]
        assert not [k for k in carried if k.startswith(GITOPS_MARKERS)]


@pytest.mark.parametrize("case", cases())
def test_kinds_cover_every_object(case: Case) -> None:
    router = ROUTERS[case.router]
    assert {(o["apiVersion"], o["kind"]) for o in case.routes()} <= set(router.kinds)


@pytest.mark.parametrize("name", ROUTER_NAMES)
def test_steady_split_sends_everything_to_the_primary(name: str) -> None:
    router = ROUTERS[name]
    for spec in SPECS[name].values():
        objects = router.routes(PARENT, spec, STEADY)
        assert (objects == []) == (not router.kinds)
        for obj in objects:
            # The canary Service exists only during a rollout: the steady state must not name it.
            assert not mentions(obj, f"{PARENT.name}-canary")
            for rule in weighted_rules(obj):
                assert [svc for svc, _ in rule] == [f"{PARENT.name}-primary"]


@pytest.mark.parametrize("case", cases())
def test_weights_sum_to_100_on_every_rule(case: Case) -> None:
    for obj in case.routes():
        for rule in weighted_rules(obj):
            assert sum(weight for _, weight in rule) == 100, rule


@pytest.mark.parametrize("weight", WEIGHTS)
@pytest.mark.parametrize("name", ROUTER_NAMES)
def test_every_weighted_rule_carries_the_weight_asked(name: str, weight: int) -> None:
    router = ROUTERS[name]
    for spec in SPECS[name].values():
        objects = router.routes(PARENT, spec, Split(weight))
        assert (objects == []) == (not router.kinds)
        want = [(f"{PARENT.name}-primary", 100 - weight)]
        if weight:
            want.append((f"{PARENT.name}-canary", weight))
        for obj in objects:
            assert weighted_rules(obj) and all(rule == want for rule in weighted_rules(obj))


@pytest.mark.parametrize("name", ROUTER_NAMES)
def test_mirror_only_where_supported(name: str) -> None:
    router, spec, shadow = ROUTERS[name], first_spec(name), Split(0, mirror=True)
    if router.supports_mirror:
        # The canary gets no live traffic: only the mirror names it.
        assert any(mentions(obj, f"{PARENT.name}-canary") for obj in router.routes(PARENT, spec, shadow))
    else:
        with pytest.raises(ValueError, match=r"rollout\.strategy"):
            router.routes(PARENT, spec, shadow)


@pytest.mark.parametrize("name", ROUTER_NAMES)
def test_match_only_where_supported(name: str) -> None:
    router, spec = ROUTERS[name], first_spec(name)
    cohort = Split(0, match=(Match(headers={"x-canary": StringMatch(exact="1")}),))
    if router.supports_match:
        assert any(mentions(obj, "x-canary") for obj in router.routes(PARENT, spec, cohort))
    else:
        with pytest.raises(ValueError, match=r"rollout\.match"):
            router.routes(PARENT, spec, cohort)


@pytest.mark.parametrize("case", object_cases())
def test_every_object_is_valid_against_the_upstream_crd_and_its_cel_rules(case: Case) -> None:
    for obj in case.routes():
        validate_third_party(obj)


# The check above must be able to fail: each breakage below is one the API server rejects.
Breakage = Callable[[dict[str, Any]], None]


def _drop_port(obj: dict[str, Any]) -> None:
    del obj["spec"]["rules"][-1]["backendRefs"][0]["port"]


def _mirror_without_body(obj: dict[str, Any]) -> None:
    obj["spec"]["rules"][-1]["filters"] = [{"type": "RequestMirror"}]


def _same_parent_twice(obj: dict[str, Any]) -> None:
    obj["spec"]["parentRefs"] = [{"name": "gw"}, {"name": "gw"}]


def _unknown_field(obj: dict[str, Any]) -> None:
    obj["spec"]["rules"][-1]["weights"] = 3


def _bad_header_type(obj: dict[str, Any]) -> None:
    obj["spec"]["rules"][-1]["matches"] = [{"headers": [{"name": "x", "type": "Prefix", "value": "a"}]}]


def _same_header_twice(obj: dict[str, Any]) -> None:
    header = {"name": "x-a", "value": "1"}
    obj["spec"]["rules"][-1]["matches"] = [{"headers": [header, dict(header)]}]


def _vs_negative_percent(obj: dict[str, Any]) -> None:
    obj["spec"]["http"][-1]["mirrorPercent"] = -1


def _vs_two_string_matches(obj: dict[str, Any]) -> None:
    obj["spec"]["http"][-1]["match"] = [{"headers": {"x": {"exact": "a", "prefix": "b"}}}]


@pytest.mark.parametrize(
    ("router", "break_it", "layer"),
    [
        pytest.param("gatewayAPI", _drop_port, "cel", id="httproute-service-without-port"),
        pytest.param("gatewayAPI", _mirror_without_body, "cel", id="httproute-mirror-filter-without-body"),
        pytest.param("gatewayAPI", _same_parent_twice, "cel", id="httproute-same-parent-twice"),
        pytest.param("gatewayAPI", _unknown_field, "schema", id="httproute-unknown-field"),
        pytest.param("gatewayAPI", _bad_header_type, "schema", id="httproute-prefix-header-type"),
        pytest.param("gatewayAPI", _same_header_twice, "list-type", id="httproute-same-header-twice"),
        pytest.param("istio", _vs_negative_percent, "schema", id="virtualservice-negative-percent"),
        pytest.param("istio", _vs_two_string_matches, "schema", id="virtualservice-two-string-matches"),
    ],
)
def test_the_validator_rejects_a_broken_object(router: str, break_it: Breakage, layer: str) -> None:
    obj = ROUTERS[router].routes(PARENT, first_spec(router), Split(10))[0]
    validate_third_party(obj)
    break_it(obj)
    with pytest.raises(AssertionError, match=rf"\[{layer}\]"):
        validate_third_party(obj)


def test_same_named_gateways_in_two_namespaces_are_valid() -> None:
    spec = make_spec(
        {"gatewayAPI": {"parentRefs": [{"name": "gw", "namespace": "a"}, {"name": "gw", "namespace": "b"}]}}
    )
    for obj in ROUTERS["gatewayAPI"].routes(PARENT, spec, Split(10)):
        validate_third_party(obj)
