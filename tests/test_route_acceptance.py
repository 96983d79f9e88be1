"""The Gateway accepted the route (issue 16, item 8): the parsing of HTTPRoute/GRPCRoute status as a
table, the rollout's hold as a sequence, and on the real API server with the operator as a process,
the test playing the Gateway controller by writing the route's status subresource."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from modeldeploy.api.conditions import find_condition
from modeldeploy.api.resource import ObjectRef, parse_spec
from modeldeploy.api.status import MetricResult, ModelDeploymentStatus, Phase, Verdict
from modeldeploy.render.revision import revision
from modeldeploy.rollout.machine import Decision, decide, snapshot
from modeldeploy.rollout.observe import AnalysisRound, DeploymentState, Observations
from modeldeploy.routing.base import RouteHold
from modeldeploy.routing.gateway_api import ROUTE_NOT_ACCEPTED, ROUTE_PENDING, route_hold
from operator_bed import OperatorBed
from testbed.kubeapi import ApiError, KubeApi

T0 = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)
PARENT = ObjectRef(name="scorer", namespace="ml", uid="u-1", generation=2)
GATEWAY_CONTROLLER = "example.net/gateway-controller"


def spec(version: str = "2", grpc: bool = False) -> Any:
    gateway: dict[str, Any] = {"parentRefs": [{"name": "gw", "namespace": "infra"}]}
    if grpc:
        gateway["grpc"] = {"hostnames": ["grpc.example.net"], "parentRefs": [{"name": "gw-grpc"}]}
    return parse_spec(
        {
            "model": {"name": "scorer", "version": version, "storageUri": "s3://models/scorer"},
            "scaling": {"minReplicas": 4, "maxReplicas": 4},
            "traffic": {"gatewayAPI": gateway},
            "rollout": {
                "steps": [{"weight": 10}, {"weight": 50}],
                "interval": "1m",
                "analysis": {"metrics": [{"name": "ok", "template": "successRate", "min": 0.99}]},
            },
        }
    )


def condition(
    type_: str, status: str, reason: str, message: str = "", generation: int | None = 3
) -> dict[str, Any]:
    out = {"type": type_, "status": status, "reason": reason, "message": message}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def parent_status(*conditions: dict[str, Any], ref: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "parentRef": ref
        or {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": "infra"},
        "controllerName": GATEWAY_CONTROLLER,
        "conditions": list(conditions),
    }


def route(
    *parents: dict[str, Any], kind: str = "HTTPRoute", name: str = "scorer", generation: int = 3
) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "ml", "generation": generation},
        "spec": {},
        "status": {"parents": list(parents)},
    }


ACCEPTED = condition("Accepted", "True", "Accepted")
RESOLVED = condition("ResolvedRefs", "True", "ResolvedRefs")


@pytest.mark.parametrize(
    ("objects", "reason", "says"),
    [
        pytest.param([], None, None, id="no-route-yet"),
        pytest.param([route()], None, None, id="no-controller-reported"),
        pytest.param([route(parent_status(ACCEPTED, RESOLVED))], None, None, id="accepted"),
        pytest.param(
            [route(parent_status(ACCEPTED, RESOLVED, ref={"name": "gw", "namespace": "infra"}))],
            None,
            None,
            id="accepted-group-and-kind-defaulted",
        ),
        pytest.param(
            [
                route(
                    parent_status(
                        condition(
                            "Accepted", "False", "NotAllowedByListeners", "no listener allows\nroutes from ml"
                        ),
                        RESOLVED,
                    )
                )
            ],
            ROUTE_NOT_ACCEPTED,
            f"Gateway infra/gw does not route HTTPRoute scorer ({GATEWAY_CONTROLLER}): Accepted=False, "
            "NotAllowedByListeners: no listener allows routes from ml",
            id="not-accepted-names-the-gateway-reason",
        ),
        pytest.param(
            [
                route(
                    parent_status(
                        ACCEPTED,
                        condition("ResolvedRefs", "False", "BackendNotFound", "scorer-canary missing"),
                    )
                )
            ],
            ROUTE_NOT_ACCEPTED,
            "ResolvedRefs=False, BackendNotFound: scorer-canary missing",
            id="refs-not-resolved",
        ),
        pytest.param(
            [route(parent_status(condition("Accepted", "True", "Accepted", generation=2), RESOLVED))],
            ROUTE_PENDING,
            "Gateway infra/gw has not accepted generation 3 of HTTPRoute scorer yet "
            "(Accepted=True for generation 2)",
            id="accepted-an-older-generation-only",
        ),
        pytest.param(
            [route(parent_status(condition("Accepted", "False", "NoMatchingParent", generation=2)))],
            ROUTE_PENDING,
            "not accepted generation 3",
            id="refused-an-older-generation-only",
        ),
        pytest.param(
            [route(parent_status(condition("Accepted", "Unknown", "Pending")))],
            ROUTE_PENDING,
            "(Accepted=Unknown for generation 3)",
            id="accepted-unknown",
        ),
        pytest.param(
            [route(parent_status(RESOLVED))],
            ROUTE_PENDING,
            "(no Accepted condition)",
            id="no-accepted-condition",
        ),
        pytest.param(
            [route(parent_status(condition("Accepted", "True", "Accepted", generation=None)))],
            None,
            None,
            id="no-observed-generation-is-current",
        ),
        pytest.param(
            [
                route(
                    parent_status(
                        condition("Accepted", "False", "NotAllowed"),
                        ref={"name": "other-gw", "namespace": "infra"},
                    )
                )
            ],
            None,
            None,
            id="another-parent-is-not-ours",
        ),
        pytest.param(
            [
                route(
                    parent_status(
                        condition("Accepted", "False", "NotAllowed"),
                        ref={"name": "gw", "namespace": "infra", "sectionName": "https"},
                    )
                )
            ],
            None,
            None,
            id="another-listener-of-our-gateway-is-not-our-parentref",
        ),
        pytest.param(
            [
                route(
                    parent_status(ACCEPTED),
                    {
                        **parent_status(condition("Accepted", "False", "UnsupportedValue", "mirror filter")),
                        "controllerName": "other.io/mesh",
                    },
                )
            ],
            ROUTE_NOT_ACCEPTED,
            "(other.io/mesh): Accepted=False, UnsupportedValue: mirror filter",
            id="any-controller-that-refuses-counts",
        ),
    ],
)
def test_route_hold(objects: list[dict[str, Any]], reason: str | None, says: str | None) -> None:
    hold = route_hold(PARENT, spec(), objects)
    if reason is None:
        assert hold is None
        return
    assert hold is not None
    assert hold.reason == reason
    assert says is not None and says in hold.message
    assert "\n" not in hold.message


def test_the_grpc_route_is_judged_against_its_own_parent() -> None:
    grpc_ref = {"name": "gw-grpc", "namespace": "ml"}
    refused = parent_status(condition("Accepted", "False", "NoMatchingListenerHostname"), ref=grpc_ref)
    objects = [route(parent_status(ACCEPTED)), route(refused, kind="GRPCRoute", name="scorer-grpc")]
    hold = route_hold(PARENT, spec(grpc=True), objects)
    assert hold is not None and hold.reason == ROUTE_NOT_ACCEPTED
    assert "Gateway ml/gw-grpc does not route GRPCRoute scorer-grpc" in hold.message
    assert route_hold(PARENT, spec(grpc=False), objects) is None  # no GRPCRoute wanted: not ours to judge


# --------------------------------------------------------------------------- the rollout holds

V1, V2 = spec("1"), spec("2")
NOT_ACCEPTED = RouteHold(
    ROUTE_NOT_ACCEPTED, "Gateway infra/gw does not route HTTPRoute scorer: Accepted=False, X: y"
)
PENDING = RouteHold(ROUTE_PENDING, "Gateway infra/gw has not accepted generation 3 of HTTPRoute scorer yet")


def ready(rev: str) -> DeploymentState:
    return DeploymentState(
        desired=4,
        replicas=4,
        ready=4,
        updated=4,
        available=4,
        up_to_date=True,
        deadline_exceeded=False,
        revision=rev,
    )


class Drive:
    def __init__(self) -> None:
        self.status = ModelDeploymentStatus(
            phase=Phase.STABLE,
            stable_revision=revision(V1),
            stable_model_version="1",
            stable_spec=snapshot(V1),
        )

    def at(self, seconds: float, route: RouteHold | None = None, passing: bool = False) -> Decision:
        seen = Observations(primary=ready(revision(V1)), canary=ready(revision(V2)), route=route)
        now = T0 + datetime.timedelta(seconds=seconds)
        decision = decide(V2, PARENT, self.status, seen, now)
        if decision.analysis is not None and passing:
            result = MetricResult(name="ok", value=1.0, verdict=Verdict.PASS, reason="ok", at="t")
            seen = replace(seen, analysis=AnalysisRound(decision.analysis, [result]))
            decision = decide(V2, PARENT, self.status, seen, now)
        self.status = decision.status
        return decision

    def progressing(self) -> str:
        found = find_condition(self.status.conditions, "Progressing")
        assert found is not None
        return f"{found.reason}: {found.message}"


@pytest.mark.parametrize(
    "hold", [pytest.param(NOT_ACCEPTED, id="not-accepted"), pytest.param(PENDING, id="pending")]
)
def test_a_route_the_gateway_does_not_route_holds_the_step_and_no_round_counts(hold: RouteHold) -> None:
    drive = Drive()
    drive.at(0, hold)  # the rollout starts: the canary is ready, so the step's weight is set at once
    assert drive.status.canary_weight == 10
    before = None
    for seconds in (1, 61, 300, 3600):  # far past the interval: still no analysis round
        decision = drive.at(seconds, hold)
        if before is not None:
            assert drive.status == before  # a held pass has nothing to write
        before = drive.status
        assert decision.analysis is None
        assert drive.status.phase == Phase.PROGRESSING
        assert drive.status.step == 0 and drive.status.canary_weight == 10
        assert drive.progressing() == f"{hold.reason}: holding step 1: {hold.message}"
        assert decision.requeue_after is not None
    assert not drive.status.analysis


def test_once_accepted_the_interval_starts_over_and_the_rollout_proceeds() -> None:
    drive = Drive()
    drive.at(0, NOT_ACCEPTED)
    drive.at(500, NOT_ACCEPTED)
    decision = drive.at(1000)  # the Gateway accepted the route
    assert drive.status.weight_set_at is not None and drive.status.weight_set_at.startswith(
        "2026-12-01T12:16:40"
    )
    assert decision.analysis is None  # a full interval of routed traffic first
    assert drive.progressing().startswith("Canary: step 1/2")
    assert drive.at(1059).analysis is None
    assert drive.at(1061).analysis is not None
    drive.at(1061, passing=True)
    assert drive.status.step == 1  # the round counted: on to the next step


def test_nothing_reported_proceeds_as_before() -> None:
    drive = Drive()
    drive.at(0)
    assert drive.at(61).analysis is not None


# -------------------------------------------------- on the real API server, operator as a process

NAME = "routed"
HTTP_ROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute")
REFUSED = ("NotAllowedByListeners", "no listener of gateway/inference allows routes from this namespace")


def manifest(version: str) -> dict[str, Any]:
    """Judged by readiness alone (no analysis metrics): without this check, each step would pass
    after its interval, whether the Gateway routes the canary or not."""
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"name": "scorer", "version": version, "storageUri": f"s3://models/scorer/{version}"},
            "scaling": {"minReplicas": 2, "maxReplicas": 2},
            "traffic": {"gatewayAPI": {"parentRefs": [{"name": "inference", "namespace": "gateway"}]}},
            "rollout": {
                "steps": [{"weight": 20}, {"weight": 60}],
                "interval": "2s",
                "progressDeadline": "60s",
            },
        },
    }


class GatewayController:
    """Plays the Gateway's controller: for every generation of the route, writes its verdict on the
    route's status subresource, as a conformant implementation does, `accept` or refuse."""

    def __init__(self, api: KubeApi, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.accept = False
        self.written: list[tuple[int, bool]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-controller", daemon=True)

    def __enter__(self) -> GatewayController:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.2):
                found = self.api.get(*HTTP_ROUTE, self.namespace, NAME)
                if found is None:
                    continue
                generation, accept = int(found["metadata"]["generation"]), self.accept
                if self.written and self.written[-1] == (generation, accept):
                    continue
                self.api.patch(
                    *HTTP_ROUTE, self.namespace, NAME, self.status(generation, accept), subresource="status"
                )
                self.written.append((generation, accept))
        except (ApiError, OSError) as error:
            self.error = error

    @staticmethod
    def status(generation: int, accept: bool) -> dict[str, Any]:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        def cond(type_: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
            status = "True" if ok else "False"
            return {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": now,
            }

        conditions = [
            cond("Accepted", accept, "Accepted" if accept else REFUSED[0], "" if accept else REFUSED[1]),
            cond("ResolvedRefs", True, "ResolvedRefs", ""),
        ]
        parent = {
            "parentRef": {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": "inference",
                "namespace": "gateway",
            },
            "controllerName": GATEWAY_CONTROLLER,
            "conditions": conditions,
        }
        return {"status": {"parents": [parent]}}


def progressing(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == "Progressing"), {})


def test_the_rollout_holds_until_the_gateway_accepts_the_route(
    namespace: str, operator: Callable[..., OperatorBed]
) -> None:
    bed = operator(resync_seconds=30)
    bed.apply(manifest("1"))
    bed.wait_phase(NAME, "Stable", timeout=90)
    with GatewayController(bed.api, namespace) as gateway:
        bed.apply(manifest("2"))
        held = bed.wait(
            lambda: (s := bed.status(NAME)) and progressing(s).get("reason") == "RouteNotAccepted" and s,
            timeout=90,
            what="the step held for the route the Gateway refused",
        )
        message = progressing(held)["message"]
        assert f"Accepted=False, {REFUSED[0]}: {REFUSED[1]}" in message, message
        assert "Gateway gateway/inference" in message and GATEWAY_CONTROLLER in message
        # Ten intervals later: still at step 1, weight 20 (the route keeps it), nothing judged.
        start = datetime.datetime.now(datetime.UTC)
        bed.wait(
            lambda: (datetime.datetime.now(datetime.UTC) - start).total_seconds() > 20,
            timeout=30,
            what="20 s",
        )
        status = bed.status(NAME)
        assert (status["phase"], status.get("step"), status.get("canaryWeight")) == ("Progressing", 0, 20)
        assert progressing(status).get("reason") == "RouteNotAccepted"
        assert not status.get("history") or status["history"][0].get("revision") != status.get(
            "canaryRevision"
        )
        assert gateway.error is None

        gateway.accept = True
        accepted_at = time.monotonic()
        promoted = bed.wait(
            lambda: (
                (s := bed.status(NAME)).get("phase") == "Stable" and s.get("stableModelVersion") == "2" and s
            ),
            timeout=120,
            what="the rollout promoted once the Gateway accepted the route",
        )
        assert promoted["history"][0]["result"] == "Promoted"
        # Two steps of a 2 s interval each, every one waiting for the Gateway's word on its weights.
        print(f"\npromoted {time.monotonic() - accepted_at:.1f}s after the Gateway accepted the route")
        assert gateway.error is None
        # The Gateway reported on every generation the operator wrote: step 2's weights included.
        generations = [g for g, ok in gateway.written if ok]
        assert len(set(generations)) >= 2, gateway.written
