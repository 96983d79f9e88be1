"""Control-plane faults mid-rollout, on a real control plane of their own (issue 9): the API server
restarted (every connection and watch dropped), etcd restarted, and watches expired (etcd compacted
under them, so resuming them is answered 410 Gone and kopf lists again).

The operator runs as a process with a resync period far longer than the test, so every recovery
is the watches' and the timers', never the resync's. Each case ends converged: the rollout promoted
without going back a step, its timers and history kept, one of each child, and a child deleted by
hand after the fault put back from a watch event. The recovery time is printed; docs/faults.md
has the whole matrix.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import new_namespace, real_control_plane, start_operator
from modeldeploy.rollout import clock
from operator_bed import OperatorBed
from testbed.controlplane import ControlPlane
from testbed.kubelet import Kubelet, always_ready

pytestmark = [pytest.mark.integration, pytest.mark.real_api]

NAME = "faulty"
RESYNC = 600.0  # longer than any test here: nothing below may rely on the resync


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of this module's own: the faults below would disturb every other test."""
    with real_control_plane(tmp_path_factory.mktemp("faults")) as cp, Kubelet(cp.admin, always_ready):
        yield cp


@pytest.fixture
def bed(plane: ControlPlane, tmp_path: Path) -> Iterator[OperatorBed]:
    namespace = new_namespace(plane.admin)
    started = start_operator(plane, namespace, tmp_path, resync_seconds=RESYNC)
    yield started
    started.process.stop()
    plane.admin.delete("v1", "Namespace", None, namespace)


def manifest(version: str) -> dict[str, Any]:
    """A canary by replica ratio (no router), judged by no metric: the steps and their pauses are
    the whole rollout, so its timing is known."""
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"name": "scorer", "version": version, "storageUri": f"s3://models/scorer/{version}"},
            "scaling": {"minReplicas": 2, "maxReplicas": 2},
            "rollout": {
                "steps": [{"weight": 50, "pause": "8s"}],
                "interval": "1s",
                "progressDeadline": "120s",
            },
        },
    }


def promoted_to(version: str) -> Callable[[dict[str, Any]], bool]:
    def check(status: dict[str, Any]) -> bool:
        history = status.get("history") or []
        return (
            status.get("phase") == "Stable"
            and status.get("stableModelVersion") == version
            and bool(history)
            and history[0].get("result") == "Promoted"
        )

    return check


def restart_apiserver(cp: ControlPlane) -> None:
    cp.restart_apiserver(down=2.0)


def restart_etcd(cp: ControlPlane) -> None:
    cp.restart_etcd(down=2.0)


def expire_watches(cp: ControlPlane) -> None:
    # Compacted first: the restarted API server's watch cache starts after every resourceVersion
    # the operator's watches hold, so each resumption is answered 410 Gone.
    cp.compact_etcd()
    cp.restart_apiserver()


def children(bed: OperatorBed) -> list[str]:
    return sorted(f"{c['kind']}/{c['metadata']['name']}" for c in bed.children(NAME))


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(restart_apiserver, id="apiserver-restarted"),
        pytest.param(restart_etcd, id="etcd-restarted"),
        pytest.param(expire_watches, id="watches-expired-410"),
    ],
)
def test_a_rollout_survives_the_fault_and_converges(
    plane: ControlPlane, bed: OperatorBed, fault: Callable[[ControlPlane], None]
) -> None:
    bed.apply(manifest("1"))
    bed.wait_phase(NAME, "Stable", timeout=90)
    bed.apply(manifest("2"))
    under_way = bed.wait(
        lambda: (s := bed.status(NAME)).get("step") == 0 and s.get("weightSetAt") and s, 60, "the first step"
    )
    before = children(bed)

    mark = plane.audit_position()
    fault(plane)
    back = datetime.datetime.now(datetime.UTC)

    # The operator's first request that the server answered after the fault: its recovery.
    def first_answered() -> datetime.datetime | None:
        answered = [
            clock.parse(e["requestReceivedTimestamp"])
            for e in bed.audit(mark)
            if e["verb"] != "watch" and 200 <= (e.get("responseStatus") or {}).get("code", 0) < 300
        ]
        later = [t for t in answered if t >= back]
        return min(later) if later else None

    # Not restarted: the step and its timer are the ones it had before the fault.
    now_status = bed.status(NAME)
    if not promoted_to("2")(now_status):
        assert (now_status.get("step"), now_status.get("weightSetAt")) == (0, under_way["weightSetAt"])
    final = bed.wait(lambda: promoted_to("2")(s := bed.status(NAME)) and s, 120, "promotion after the fault")
    recovered = first_answered()
    assert recovered is not None
    took = (recovered - back).total_seconds()
    done = (datetime.datetime.now(datetime.UTC) - back).total_seconds()
    print(
        f"\n{fault.__name__}: first answered request {took:.1f}s after the server was back;"
        f" promoted {done:.1f}s after"
    )

    assert [h.get("result") for h in final["history"]][:1] == ["Promoted"]
    after = children(bed)
    assert len(after) == len(set(after)), f"duplicate children: {after}"
    assert set(after) <= set(before)

    # The watches work again: a child deleted by hand comes back from its DELETED event, with the
    # resync ten minutes away.
    service = next(c for c in bed.children(NAME) if c["kind"] == "Service")
    name = service["metadata"]["name"]
    deleted = time.monotonic()
    assert bed.api.delete("v1", "Service", bed.namespace, name)
    uid = service["metadata"]["uid"]
    bed.wait(
        lambda: (s := bed.child("v1", "Service", name)) is not None and s["metadata"]["uid"] != uid,
        30,
        f"Service {name} put back",
    )
    print(f"a hand-deleted Service was back {time.monotonic() - deleted:.1f}s later, from its watch event")
