"""metav1.Condition helpers: set a condition without moving its transition time needlessly."""

from __future__ import annotations

from collections.abc import Sequence

from modeldeploy.api.status import Condition, ConditionStatus


def set_condition(
    conditions: Sequence[Condition],
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: str,
    observed_generation: int | None,
) -> list[Condition]:
    """A copy of `conditions` with `type` set; lastTransitionTime moves only when the status does."""
    previous = find_condition(conditions, type)
    since = previous.last_transition_time if previous is not None and previous.status == status else now
    updated = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=observed_generation,
    )
    out = [c for c in conditions if c.type != type]
    out.append(updated)
    return sorted(out, key=lambda c: c.type)


def find_condition(conditions: Sequence[Condition], type: str) -> Condition | None:
    return next((c for c in conditions if c.type == type), None)
