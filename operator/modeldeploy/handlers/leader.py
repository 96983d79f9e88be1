"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules and timings.

Every replica watches and fills its cache; only the holder of the Lease reconciles. A holder
renews every `retry_period`; a candidate takes the Lease over only once it has seen the same
record, unchanged, for a whole `duration` by its own clock (never by comparing timestamps written
by another machine, whose clock may differ). A holder that cannot renew within `renew_deadline`
(shorter than `duration`) stops writing before anyone may take over, and goes back to standby
with its cache still warm. A replica that stops cleanly releases the Lease, so that a rolling
update hands over at once instead of after a whole `duration`.

Fencing by time: a write is sent only while the last renewal is younger than `renew_deadline`
(judged at the moment of sending, each attempt of each write), and each attempt must be over
before the last renewal is a whole `duration` old (`write_window`), the earliest moment another
replica may take the Lease. Stepping down (a lost renewal, or `stop`) first waits for the passes
in flight to end (`on_stopped`), and only then releases the Lease (docs/faults.md).

kopf's peering is not this: it pauses operators by priority and writes to a shared object on
every change, with no fencing by time.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from modeldeploy.adapters.kube import KubeClient, KubeError

log = logging.getLogger("modeldeploy.leader")


@dataclass(frozen=True)
class Timings:
    """Shorter than client-go's 15/10/2 s, so that a takeover (the duration, a retry period and one
    pass) stays within 15 s; a leader still rides out 7 s of an unreachable API server."""

    duration: float = 10.0
    renew_deadline: float = 7.0
    retry_period: float = 2.0

    def problem(self) -> str | None:
        if not self.retry_period < self.renew_deadline < self.duration:
            return (
                "leader election needs --retry-period < --renew-deadline < --lease-duration, got"
                f" {self.retry_period:g} < {self.renew_deadline:g} < {self.duration:g}"
            )
        return None


@dataclass(frozen=True)
class Record:
    """What a Lease says, as far as the election cares."""

    holder: str
    duration: float | None
    version: str  # resourceVersion: any change of the record changes it
    transitions: int = 0
    acquired: str | None = None

    @staticmethod
    def of(lease: dict[str, Any]) -> Record:
        spec = lease.get("spec") or {}
        duration = spec.get("leaseDurationSeconds")
        return Record(
            holder=str(spec.get("holderIdentity") or ""),
            duration=float(duration) if duration else None,
            version=str((lease.get("metadata") or {}).get("resourceVersion") or ""),
            transitions=int(spec.get("leaseTransitions") or 0),
            acquired=spec.get("acquireTime"),
        )


class Action(Enum):
    CREATE = "create"  # no Lease yet
    RENEW = "renew"  # ours
    ACQUIRE = "acquire"  # released, or not renewed for a whole duration
    WAIT = "wait"  # another replica holds it


def next_action(
    record: Record | None, identity: str, unchanged_since: float | None, now: float, duration: float
) -> Action:
    """What a candidate does with the Lease as it read it. `unchanged_since` is when this replica
    first saw `record` as it is now (its own monotonic clock)."""
    if record is None:
        return Action.CREATE
    if record.holder == identity:
        return Action.RENEW
    if not record.holder:
        return Action.ACQUIRE
    held_for = record.duration or duration
    if unchanged_since is not None and now - unchanged_since >= held_for:
        return Action.ACQUIRE
    return Action.WAIT


def micro_time(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """One replica's campaign, in a thread: `on_started` when it becomes the leader, `on_stopped`
    when it stops being one (a lost renewal, or `stop`). `on_stopped` returns once the writes of
    the lost term have stopped (False: some may still run); `stop` releases the Lease only after
    it returned True."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        timings: Timings,
        on_started: Callable[[], None],
        on_stopped: Callable[[], bool],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._client, self.namespace, self.name, self.identity = client, namespace, name, identity
        self._timings = timings
        self._on_started, self._on_stopped = on_started, on_stopped
        self._monotonic, self._wall = monotonic, wall
        self._seen: tuple[Record, float] | None = None  # the record last read, and since when
        self._renewed_at: float | None = None  # last successful write of ours (monotonic)
        self.term = 0  # counts the times this replica became the leader
        self._leading = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    def still_leading(self, term: int | None = None) -> bool:
        """Leading (in `term`, if given), and the last renewal is recent enough that nobody else
        may have taken over: checked before each write, so a pass that outlives a lost renewal
        does not write."""
        return self.write_window(term) is not None

    def write_window(self, term: int | None = None) -> float | None:
        """None when this replica may not write now: not leading, leading in another term than
        `term`, or not renewed for `renew_deadline`. Else the seconds left before another replica
        may take the Lease (the last renewal was sent no earlier than that, and a standby waits a
        whole `duration` from when it saw it): a write must be over by then."""
        renewed, now = self._renewed_at, self._monotonic()
        if not self._leading.is_set() or renewed is None or (term is not None and term != self.term):
            return None
        if now - renewed >= self._timings.renew_deadline:
            return None
        return renewed + self._timings.duration - now

    def start(self) -> None:
        self._thread.start()

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._timings.retry_period + 10)
        # Writes first: the passes in flight are cancelled and awaited while the Lease is still
        # ours, so that no write of this term can land after the next leader has begun.
        was_leading = self._leading.is_set()
        drained = self._step_down()
        if release and was_leading:
            if drained:
                self._release()
            else:
                log.warning(
                    "passes still running: the Lease %s/%s is left to expire, not released",
                    self.namespace,
                    self.name,
                )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._attempt()
            except KubeError as error:
                log.warning("leader election: %s", error)
            if self._leading.is_set() and not self.still_leading():
                log.warning(
                    "lost the Lease %s/%s: not renewed for %.0fs; standing by",
                    self.namespace,
                    self.name,
                    self._timings.renew_deadline,
                )
                self._step_down()
            self._stop.wait(self._timings.retry_period)

    def _deadline(self) -> float:
        """When this round of the campaign must be over: a leader's renewal is no use after its
        renew deadline (it steps down then), a candidate's round within one renew deadline."""
        renewed = self._renewed_at
        if self._leading.is_set() and renewed is not None:
            return max(renewed + self._timings.renew_deadline, self._monotonic() + 0.5)
        return self._monotonic() + self._timings.renew_deadline

    def _attempt(self) -> None:
        deadline = self._deadline()
        lease = self._client.get_lease(self.namespace, self.name, deadline=deadline)
        record = Record.of(lease) if lease is not None else None
        now = self._monotonic()
        if record is not None and (self._seen is None or self._seen[0] != record):
            self._seen = (record, now)
        since = self._seen[1] if self._seen is not None and record is not None else None
        action = next_action(record, self.identity, since, now, self._timings.duration)
        if action is Action.WAIT:
            if self._leading.is_set():
                log.warning(
                    "the Lease %s/%s is held by %s now", self.namespace, self.name, record and record.holder
                )
                self._step_down()
            return
        stamp = micro_time(self._wall())
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self._timings.duration),
            "renewTime": stamp,
        }
        if action is Action.CREATE:
            spec.update(acquireTime=stamp, leaseTransitions=0)
            written = self._client.create_lease(self.namespace, self.name, spec, deadline=deadline)
        else:
            assert record is not None
            if action is Action.ACQUIRE:
                spec.update(acquireTime=stamp, leaseTransitions=record.transitions + 1)
            else:
                spec.update(acquireTime=record.acquired or stamp, leaseTransitions=record.transitions)
            # With the version read: if another replica wrote in between, the server refuses ours.
            written = self._client.replace_lease(
                self.namespace, self.name, spec, record.version, deadline=deadline
            )
        if written is None:
            return  # lost the race: another replica created or took it first
        self._renewed_at = now
        self._seen = (Record.of(written), now)
        if not self._leading.is_set():
            log.info("leading: holds the Lease %s/%s as %s", self.namespace, self.name, self.identity)
            self.term += 1
            self._leading.set()
            self._on_started()

    def _release(self) -> None:
        seen = self._seen
        if seen is None:
            return
        spec = {"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": micro_time(self._wall())}
        try:
            deadline = self._monotonic() + self._timings.renew_deadline
            self._client.replace_lease(self.namespace, self.name, spec, seen[0].version, deadline=deadline)
            log.info("released the Lease %s/%s", self.namespace, self.name)
        except KubeError as error:
            log.warning("could not release the Lease %s/%s: %s", self.namespace, self.name, error)

    def _step_down(self) -> bool:
        """Stop leading; True once the writes of the term have stopped."""
        if not self._leading.is_set():
            return True
        self._leading.clear()  # from here every write of the term is refused
        self._renewed_at = None
        return self._on_stopped()
