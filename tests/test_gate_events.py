"""Gate Events (one on each transition of a run) and how `modeldeploy status` shows a gate."""

from __future__ import annotations

from typing import Any

import pytest

from modeldeploy.api.status import GateCheck, GateRun, GateStage, GateState, ModelDeploymentStatus, Verdict
from modeldeploy.cli import format_status
from modeldeploy.rollout.events import gate_events, transition_events

ACCURACY = GateCheck(
    name="accuracy", value=0.6667, threshold=0.92, verdict=Verdict.FAIL, message="accuracy 0.6667 < min 0.92"
)
RUNNING = GateRun(revision="r2", started_at="t1")
FAILED = RUNNING.model_copy(
    update={
        "finished_at": "t2",
        "state": GateState.FAILED,
        "verdict": Verdict.FAIL,
        "message": "accuracy: accuracy 0.6667 < min 0.92",
        "checks": [ACCURACY],
    }
)
PASSED = RUNNING.model_copy(
    update={
        "finished_at": "t2",
        "state": GateState.PASSED,
        "verdict": Verdict.PASS,
        "message": "all 1 passed",
    }
)
AGAIN = GateRun(revision="r2", started_at="t3")

CASES: dict[str, tuple[GateRun | None, GateRun | None, list[tuple[str, str]]]] = {
    "no gate: nothing": (None, None, []),
    "a run starts": (None, RUNNING, [("Normal", "GateStarted")]),
    "a run still running: nothing": (RUNNING, RUNNING, []),
    "a run fails": (RUNNING, FAILED, [("Warning", "GateFailed")]),
    "a run passes": (RUNNING, PASSED, [("Normal", "GatePassed")]),
    "a finished run seen again: nothing": (FAILED, FAILED, []),
    "a new run after an inconclusive one": (FAILED, AGAIN, [("Normal", "GateStarted")]),
    "started and finished between two passes": (
        None,
        PASSED,
        [("Normal", "GateStarted"), ("Normal", "GatePassed")],
    ),
    "the gate cleared at promotion: nothing": (PASSED, None, []),
}


@pytest.mark.parametrize(("old", "new", "expected"), list(CASES.values()), ids=list(CASES))
def test_gate_events(old: GateRun | None, new: GateRun | None, expected: list[tuple[str, str]]) -> None:
    assert [(e.type, e.reason) for e in gate_events(old, new)] == expected


def test_a_failed_gate_event_names_each_check_with_value_and_threshold() -> None:
    (event,) = gate_events(RUNNING, FAILED)
    assert event.message == "revision r2: gate failed: accuracy Fail: accuracy 0.6667 < min 0.92"


def test_a_mirrored_phase_gate_says_so() -> None:
    run = RUNNING.model_copy(update={"stage": GateStage.MIRROR})
    (event,) = gate_events(None, run)
    assert event.message == "revision r2: mirrored-phase gate started"


def test_gate_events_come_with_the_status_transition() -> None:
    old = ModelDeploymentStatus(gate=RUNNING)
    new = ModelDeploymentStatus(gate=FAILED)
    assert "GateFailed" in [e.reason for e in transition_events(old, new)]


def test_modeldeploy_status_shows_each_check() -> None:
    status: dict[str, Any] = ModelDeploymentStatus(gate=FAILED).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    shown = format_status({"metadata": {"name": "iris", "namespace": "ml"}, "spec": {}, "status": status})
    assert "  gate:      Failed (before traffic, revision r2)" in shown
    assert "    check accuracy = 0.6667 (threshold 0.92): Fail accuracy 0.6667 < min 0.92" in shown
