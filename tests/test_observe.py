"""Reading the children: Deployment readiness, and why a canary's pods are not ready."""

from __future__ import annotations

from typing import Any

import pytest

from modeldeploy.rollout.observe import commands, deployment_state, pods_summary


def pod(
    *containers: dict[str, Any], init: tuple[dict[str, Any], ...] = (), scheduled: bool = True
) -> dict[str, Any]:
    conditions = (
        []
        if scheduled
        else [
            {"type": "PodScheduled", "status": "False", "message": "0/3 nodes: 3 Insufficient nvidia.com/gpu"}
        ]
    )
    return {
        "metadata": {"name": "scorer-canary-x"},
        "status": {
            "conditions": conditions,
            "initContainerStatuses": list(init),
            "containerStatuses": list(containers),
        },
    }


CRASHING = {
    "name": "triton",
    "ready": False,
    "restartCount": 4,
    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
}
CRASHED_ONCE = {**CRASHING, "restartCount": 1}
LOADING = {"name": "triton", "ready": False, "restartCount": 0, "state": {"running": {}}}
PULLING = {"name": "model-puller", "ready": False, "restartCount": 0, "state": {"running": {}}}
PULL_FAILED = {
    "name": "model-puller",
    "ready": False,
    "restartCount": 0,
    "state": {"terminated": {"exitCode": 1, "reason": "Error"}},
}


@pytest.mark.parametrize(
    ("pods", "crashed", "looping", "unschedulable", "loading"),
    [
        pytest.param([pod(LOADING)], None, False, None, "triton still loading the model", id="slow-load"),
        pytest.param([pod(init=(PULLING,))], None, False, None, "still downloading the model", id="pulling"),
        pytest.param(
            [pod(CRASHED_ONCE)],
            "CrashLoopBackOff, 1 restart (last exit 1",
            False,
            None,
            None,
            id="crashed-once",
        ),
        pytest.param([pod(CRASHING)], "CrashLoopBackOff, 4 restarts", True, None, None, id="crash-looping"),
        pytest.param(
            [pod(init=(PULL_FAILED,))], "model-puller exited 1", False, None, None, id="puller-failed"
        ),
        pytest.param([pod(scheduled=False)], None, False, "Insufficient nvidia.com/gpu", None, id="no-gpu"),
        pytest.param([], None, False, None, None, id="no-pods"),
    ],
)
def test_pods_summary_tells_a_crash_from_a_slow_load(
    pods: list[dict[str, Any]],
    crashed: str | None,
    looping: bool,
    unschedulable: str | None,
    loading: str | None,
) -> None:
    summary = pods_summary(pods)
    for got, want in (
        (summary.crashed, crashed),
        (summary.unschedulable, unschedulable),
        (summary.loading, loading),
    ):
        if want is None:
            assert got is None
        else:
            assert got is not None and want in got
    assert summary.crash_looping is looping


@pytest.mark.parametrize(
    ("status", "rolled_out"),
    [
        pytest.param({"observedGeneration": 2, "updatedReplicas": 3, "readyReplicas": 3}, True, id="done"),
        pytest.param({"observedGeneration": 1, "updatedReplicas": 3, "readyReplicas": 3}, False, id="stale"),
        pytest.param(
            {"observedGeneration": 2, "updatedReplicas": 2, "readyReplicas": 3}, False, id="rolling"
        ),
        pytest.param(
            {"observedGeneration": 2, "updatedReplicas": 3, "readyReplicas": 2}, False, id="not-ready"
        ),
        pytest.param(
            {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "readyReplicas": 4},
            False,
            id="an-old-pod-still-running",
        ),
        pytest.param(
            {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3},
            True,
            id="old-pods-gone",
        ),
    ],
)
def test_deployment_rolled_out_only_when_the_controller_caught_up(
    status: dict[str, Any], rolled_out: bool
) -> None:
    obj = {
        "metadata": {"generation": 2, "labels": {"modeldeploy.io/revision": "abc"}},
        "spec": {"replicas": 3},
        "status": status,
    }
    state = deployment_state(obj)
    assert state.rolled_out is rolled_out
    assert state.revision == "abc"


@pytest.mark.parametrize(
    ("annotations", "paused", "promote"),
    [
        pytest.param({}, False, None, id="none"),
        pytest.param({"modeldeploy.io/paused": "true"}, True, None, id="paused"),
        pytest.param({"modeldeploy.io/paused": "false"}, False, None, id="not-paused"),
        pytest.param(
            {"modeldeploy.io/promote": " 2026-11-24T10:00:00Z "}, False, "2026-11-24T10:00:00Z", id="token"
        ),
        pytest.param({"modeldeploy.io/promote": ""}, False, None, id="empty-token"),
    ],
)
def test_commands_from_annotations(annotations: dict[str, str], paused: bool, promote: str | None) -> None:
    found = commands(annotations)
    assert found.paused is paused
    assert found.promote == promote
