"""Kubernetes Events are posted on transitions only: derived from the old and new status."""

from __future__ import annotations

from dataclasses import dataclass

from modeldeploy.api.conditions import find_condition
from modeldeploy.api.status import ConditionType, ModelDeploymentStatus, Phase

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
    return events
