"""Kubernetes Events are posted on transitions only: derived from the old and new status."""

from __future__ import annotations

from dataclasses import dataclass

from modeldeploy.api.conditions import find_condition
from modeldeploy.api.status import ConditionType, GateRun, GateStage, GateState, ModelDeploymentStatus, Phase

_WARNING_PHASES = {Phase.FAILED, Phase.ROLLED_BACK, Phase.BLOCKED}
_WARNING_RESULTS = {"RolledBack"}


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


def transition_events(old: ModelDeploymentStatus, new: ModelDeploymentStatus) -> list[Event]:
    events: list[Event] = []
    # An outcome (Promoted, RolledBack, Superseded) is the most telling event of all.
    if new.history and (not old.history or new.history[0] != old.history[0]):
        entry = new.history[0]
        kind = "Warning" if entry.result in _WARNING_RESULTS else "Normal"
        events.append(Event(kind, entry.result, f"revision {entry.revision}: {entry.reason}"))
    degraded_old = find_condition(old.conditions, ConditionType.DEGRADED.value)
    degraded_new = find_condition(new.conditions, ConditionType.DEGRADED.value)
    if degraded_new is not None and degraded_new.status == "True":
        before = (degraded_old.status, degraded_old.reason) if degraded_old is not None else None
        if before != ("True", degraded_new.reason) and not events:
            events.append(Event("Warning", degraded_new.reason, degraded_new.message))
    if new.phase != old.phase and new.phase is not None and not events:
        phase = Phase(new.phase)
        kind = "Warning" if phase in _WARNING_PHASES else "Normal"
        events.append(Event(kind, phase.value, new.message or ""))
    if (
        new.phase == Phase.PROGRESSING
        and new.canary_weight != old.canary_weight
        and new.canary_weight is not None
        and (old.canary_weight is not None or new.canary_weight > 0)
    ):
        events.append(Event("Normal", "TrafficShifted", f"{new.canary_weight}% of traffic to the canary"))
    return events + gate_events(old.gate, new.gate)


_GATE_EVENTS = {
    GateState.PASSED: ("Normal", "GatePassed"),
    GateState.FAILED: ("Warning", "GateFailed"),
    GateState.INCONCLUSIVE: ("Warning", "GateInconclusive"),
    GateState.CANCELLED: ("Normal", "GateCancelled"),
}


def gate_events(old: GateRun | None, new: GateRun | None) -> list[Event]:
    """A run started, and a run ended: each check with its value, threshold and verdict."""
    if new is None:
        return []
    same_run = old is not None and (old.revision, old.started_at) == (new.revision, new.started_at)
    events = []
    stage = "mirrored-phase gate" if new.stage == GateStage.MIRROR else "gate"
    if not same_run:
        events.append(Event("Normal", "GateStarted", f"revision {new.revision}: {stage} started"))
    if new.finished_at is not None and not (same_run and old is not None and old.finished_at is not None):
        kind, reason = _GATE_EVENTS[GateState(new.state)]
        checks = "; ".join(f"{c.name} {c.verdict}: {c.message}" for c in new.checks) or new.message
        events.append(Event(kind, reason, f"revision {new.revision}: {stage} {new.state.lower()}: {checks}"))
    return events
