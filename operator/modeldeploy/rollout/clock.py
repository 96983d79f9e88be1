"""Timestamps in status are RFC 3339 strings; the state machine does its arithmetic here."""

from __future__ import annotations

import datetime


def parse(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def iso(moment: datetime.datetime) -> str:
    """Whole seconds, as metav1.Time: for conditions and history, which people read."""
    return moment.astimezone(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def iso_ms(moment: datetime.datetime) -> str:
    """Milliseconds, for the rollout's own timers: intervals of a few seconds must not drift by one."""
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def since(start: str | None, now: datetime.datetime) -> float:
    """Seconds from `start` to `now`; 0 when `start` is unknown."""
    if start is None:
        return 0.0
    return (now - parse(start)).total_seconds()
