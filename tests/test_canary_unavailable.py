"""A canary that stops serving mid-step, on the real API server with the operator as a process
(issue 16, item 1): its pods crash, its Deployment is deleted by hand, or it is scaled to zero by
hand. For each strategy (Canary by router and by replica ratio, BlueGreen, Shadow, A/B match) the
canary's share, cohort and mirror come off in the pass that sees it (the route or Service is
written before the status that records the outage), it is rolled back with CanaryUnavailable
within `interval x failureThreshold + interval` of that, and it is never promoted.

One rollout per strategy walks the three faults in turn (`modeldeploy retry` between them). The
step pauses for 10 minutes and no metric is set, so nothing but the fault ends the step; the
resync is longer than the test, so the rollback comes from the operator's own timer (a canary whose
new pods stay Pending sends no event at all). The kubelet stand-in plays the pods. Times are printed;
docs/faults.md has them.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from conftest import Policies
from modeldeploy.api.base import RETRY_ANNOTATION
from modeldeploy.render.names import TRACK_LABEL
from modeldeploy.rollout import clock
from operator_bed import MD, OperatorBed
from testbed.kubelet import PodReport, PodState, pod_status

pytestmark = pytest.mark.integration

NAME, MODEL = "scorer", "scorer"
PRIMARY, CANARY = f"{NAME}-primary", f"{NAME}-canary"
INTERVAL, THRESHOLD = 2, 2
BOUND = INTERVAL * THRESHOLD + INTERVAL  # the bound, from the outage the operator saw
HTTP_ROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute")
RESYNC = 600.0  # longer than the test: the rollback must come from the operator's own requeue
GATEWAY = {"gatewayAPI": {"parentRefs": [{"name": "inference", "namespace": "gateway"}]}}
COHORT = [{"headers": {"x-cohort": {"exact": "beta"}}}]


def manifest(version: str, traffic: Mapping[str, Any], **rollout: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"name": MODEL, "version": version, "storageUri": f"s3://models/{MODEL}/{version}"},
            "scaling": {"minReplicas": 2, "maxReplicas": 2},
            "traffic": dict(traffic),
            "rollout": {
                "steps": [{"weight": 50, "pause": "10m"}],
                "interval": f"{INTERVAL}s",
                "failureThreshold": THRESHOLD,
                "progressDeadline": "120s",
                "canaryReplicas": 2,
                **rollout,
            },
        },
    }


# ------------------------------------------------------------------ what the canary receives


def _route(bed: OperatorBed) -> dict[str, Any]:
    route = bed.child(*HTTP_ROUTE, NAME)
    assert route is not None, "no HTTPRoute"
    return route


def routed_share(bed: OperatorBed) -> dict[str, Any]:
    """What the HTTPRoute sends the canary: weight, mirror, cohort."""
    rules = _route(bed)["spec"]["rules"]
    weights = {ref["name"]: ref.get("weight", 1) for ref in rules[-1]["backendRefs"]}
    mirrors = [
        f["requestMirror"]["backendRef"]["name"]
        for f in rules[-1].get("filters") or []
        if f["type"] == "RequestMirror"
    ]
    return {"weight": weights.get(CANARY, 0), "mirror": CANARY in mirrors, "cohort": len(rules) > 1}


def ratio_share(bed: OperatorBed) -> dict[str, Any]:
    """The replica-ratio split: does the main Service select the canary's pods too?"""
    service = bed.child("v1", "Service", NAME)
    assert service is not None
    selector = service["spec"].get("selector") or {}
    return {"both tracks": TRACK_LABEL not in selector, "track": selector.get(TRACK_LABEL)}


NOTHING_ROUTED = {"weight": 0, "mirror": False, "cohort": False}

# strategy id -> (traffic, rollout extras, the share read, the share while serving, the share when down)
Strategy = tuple[
    dict[str, Any], dict[str, Any], Callable[[OperatorBed], dict[str, Any]], dict[str, Any], dict[str, Any]
]
STRATEGIES: dict[str, Strategy] = {
    "canary-gateway": (
        GATEWAY,
        {},
        routed_share,
        {"weight": 50, "mirror": False, "cohort": False},
        NOTHING_ROUTED,
    ),
    "canary-replica-ratio": (
        {},
        {},
        ratio_share,
        {"both tracks": True, "track": None},
        {"both tracks": False, "track": "primary"},
    ),
    "blue-green": (GATEWAY, {"strategy": "BlueGreen"}, routed_share, NOTHING_ROUTED, NOTHING_ROUTED),
    "shadow": (
        GATEWAY,
        {"strategy": "Shadow"},
        routed_share,
        {**NOTHING_ROUTED, "mirror": True},
        NOTHING_ROUTED,
    ),
    "a-b-match": (
        GATEWAY,
        {"match": COHORT},
        routed_share,
        {"weight": 50, "mirror": False, "cohort": True},
        NOTHING_ROUTED,
    ),
}


# ------------------------------------------------------------------------------ the faults


class CanaryPods:
    """The kubelet's policy for this namespace: primary pods Ready, canary pods as `state` says."""

    def __init__(self) -> None:
        self.state = PodState.READY
        self._lock = threading.Lock()

    def __call__(self, pod: Mapping[str, Any]) -> PodReport:
        labels = pod.get("metadata", {}).get("labels") or {}
        with self._lock:
            state = self.state if labels.get(TRACK_LABEL) == "canary" else PodState.READY
        return PodReport(state)


def crash(bed: OperatorBed, pods: CanaryPods) -> str:
    """The running canary pods crash-loop (as the kubelet reports CrashLoopBackOff, 4 restarts)."""
    pods.state = PodState.CRASH_LOOP
    for pod in bed.api.list("v1", "Pod", bed.namespace, f"{TRACK_LABEL}=canary"):
        status = pod_status(pod, PodReport(PodState.CRASH_LOOP))
        bed.api.patch(
            "v1", "Pod", bed.namespace, pod["metadata"]["name"], {"status": status}, subresource="status"
        )
    return "CrashLoopBackOff"


def delete(bed: OperatorBed, pods: CanaryPods) -> str:
    """`kubectl delete deployment scorer-canary`; the pods put back stay Pending (no GPU left)."""
    pods.state = PodState.PENDING
    assert bed.api.delete("apps/v1", "Deployment", bed.namespace, CANARY)
    return "canary pods ready"


def scale_to_zero(bed: OperatorBed, pods: CanaryPods) -> str:
    """`kubectl scale deployment scorer-canary --replicas=0`; the pods put back stay Pending.

    Its pods are deleted too, as the ReplicaSet controller does: the operator scales the canary
    back up in the pass that sees it at zero, often before that controller has removed a pod, and
    a canary whose pods never stopped is serving again (rightly: its traffic comes back)."""
    pods.state = PodState.PENDING
    running = bed.api.list("v1", "Pod", bed.namespace, f"{TRACK_LABEL}=canary")
    bed.api.patch(
        "apps/v1", "Deployment", bed.namespace, CANARY, {"spec": {"replicas": 0}}, subresource="scale"
    )
    for pod in running:
        bed.api.delete("v1", "Pod", bed.namespace, pod["metadata"]["name"])
    return "canary pods ready"


FAULTS: list[tuple[str, Callable[[OperatorBed, CanaryPods], str]]] = [
    ("pods crash mid-step", crash),
    ("Deployment deleted by hand", delete),
    ("scaled to zero by hand", scale_to_zero),
]


# ------------------------------------------------------------------------------------- test


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _degraded(status: Mapping[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == "Degraded"), {})


class Watcher:
    """Polls the ModelDeployment and what the canary receives, keeping every status it saw."""

    def __init__(self, bed: OperatorBed, share: Callable[[OperatorBed], dict[str, Any]]) -> None:
        self.bed, self.share = bed, share
        self.statuses: list[dict[str, Any]] = []

    def status(self) -> dict[str, Any]:
        status = self.bed.status(NAME)
        self.statuses.append(status)
        return status

    def outage_recorded(self) -> tuple[dict[str, Any], dict[str, Any], datetime.datetime] | None:
        """The first status that records the outage, the canary's share right after, and when."""
        status = self.status()
        if not status.get("canaryUnavailableSince"):
            return None
        return status, self.share(self.bed), _now()

    def rolled_back(self) -> tuple[dict[str, Any], datetime.datetime] | None:
        status = self.status()
        return (status, _now()) if status.get("phase") == "RolledBack" else None


def one_fault(
    strategy: str,
    watcher: Watcher,
    pods: CanaryPods,
    what: str,
    fault: Callable[[OperatorBed, CanaryPods], str],
) -> None:
    bed = watcher.bed
    _, _, share, serving, down = STRATEGIES[strategy]
    bed.wait(
        lambda: (
            (s := watcher.status()).get("phase") == "Progressing"
            and s.get("weightSetAt")
            and not s.get("canaryUnavailableSince")
            and share(bed) == serving
        ),
        90,
        f"{strategy}: the canary serving at step 1 ({what})",
    )
    faulted = _now()
    expected = fault(bed, pods)

    # The pass that records the outage has already taken the traffic off: children are written
    # before the status of the same pass, and nothing turns it back on while the canary is down.
    first, off, recorded = bed.wait(watcher.outage_recorded, 60, f"{strategy}: the outage recorded ({what})")
    assert off == down, f"{strategy}/{what}: traffic still on: {off}"
    assert first.get("canaryWeight", 0) == 0
    assert _degraded(first).get("reason") == "CanaryUnavailable"

    final, seen = bed.wait(watcher.rolled_back, 60, f"{strategy}: the rollback ({what})")
    degraded = _degraded(final)
    assert degraded.get("reason") == "CanaryUnavailable", degraded
    assert expected in degraded.get("message", ""), degraded
    entry = final["history"][0]
    assert entry["result"] == "RolledBack" and entry["modelVersion"] == "2"
    assert share(bed) == down
    canary = bed.child("apps/v1", "Deployment", CANARY)
    assert canary is None or canary["spec"]["replicas"] == 0

    since = clock.parse(first["canaryUnavailableSince"])
    took = (clock.parse(entry["at"]) - since).total_seconds()  # the history's time: whole seconds
    print(
        f"\n{strategy}, {what}: traffic off and outage recorded {(recorded - faulted).total_seconds():.1f}s "
        f"after the fault; rolled back {took:.0f}s after the outage began by its history, seen "
        f"{(seen - since).total_seconds():.1f}s after (bound {BOUND}s)"
    )
    assert took <= BOUND, f"rolled back {took}s after the outage began, bound {BOUND}s"


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_a_canary_that_stops_serving_loses_its_traffic_and_is_rolled_back(
    strategy: str,
    namespace: str,
    kubelet_policies: Policies,
    operator: Callable[..., OperatorBed],
) -> None:
    traffic, extras, share, _, _ = STRATEGIES[strategy]
    pods = CanaryPods()
    kubelet_policies.set(namespace, pods)
    bed = operator(resync_seconds=RESYNC)
    bed.apply(manifest("1", traffic, **extras))
    bed.wait_phase(NAME, "Stable", timeout=90)
    bed.apply(manifest("2", traffic, **extras))
    watcher = Watcher(bed, share)

    for round_, (what, fault) in enumerate(FAULTS):
        pods.state = PodState.READY
        if round_:
            retry = {"metadata": {"annotations": {RETRY_ANNOTATION: f"retry-{round_}"}}}
            bed.api.patch(*MD, namespace, NAME, retry)
        one_fault(strategy, watcher, pods, what, fault)

    # Never promoted, nor even on the way to it.
    assert all(s.get("phase") != "Promoting" for s in watcher.statuses)
    status = bed.status(NAME)
    history = status.get("history") or []
    assert not [h for h in history if h["modelVersion"] == "2" and h["result"] == "Promoted"], history
    assert status.get("stableModelVersion") == "1"
