"""Kubernetes Events are posted on transitions only: derived from the old and new status."""

from __future__ import annotations

from dataclasses import dataclass

from modeldeploy.api.conditions import find_condition
from modeldeploy.api.status import ConditionType, ModelDeploymentStatus, Phase

_WARNING_PHASES = {Phase.FAILED, Phase.ROLLED_BACK, Phase.BLOCKED}


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


def transition_events(old: ModelDeploymentStatus, new: ModelDeploymentStatus) -> list[Event]:
    events: list[Event] = []
    degraded_old = find_condition(old.conditions, ConditionType.DEGRADED.value)
    degraded_new = find_condition(new.conditions, ConditionType.DEGRADED.value)
    if degraded_new is not None and degraded_new.status == "True":
        before = (degraded_old.status, degraded_old.reason) if degraded_old is not None else None
        if before != ("True", degraded_new.reason):
            events.append(Event("Warning", degraded_new.reason, degraded_new.message))
    if new.phase != old.phase and new.phase is not None:
        phase = Phase(new.phase)
        kind = "Warning" if phase in _WARNING_PHASES else "Normal"
        if not (kind == "Warning" and events):  # the Degraded event already says why
            events.append(Event(kind, phase.value, new.message or ""))
    return events
