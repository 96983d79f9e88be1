"""The controller: what runs passes, when, and whether this replica may write at all.

As a controller-runtime manager with one reconciler: kopf's handlers only enqueue keys (and keep
the cache); a Controller owns the work queue (de-duplication, timed passes, per-object retry with
backoff), the leader gate (the Elector, and the write guard on the client), the resync timer, the
cache and the gate runner. A pass reads its object from the cache when it starts, so it acts on the
newest version whatever woke it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from modeldeploy.adapters.kube import KubeClient, KubeError, pod_namespace
from modeldeploy.handlers import metrics
from modeldeploy.handlers.analysis import AnalysisRunner
from modeldeploy.handlers.cache import Cache
from modeldeploy.handlers.config import OperatorConfig
from modeldeploy.handlers.gates import GateRunner
from modeldeploy.handlers.leader import Elector, Timings
from modeldeploy.handlers.reconciler import NotLeader, Reconciler, fetch_parent
from modeldeploy.handlers.workqueue import Key, RateLimiter, WorkQueue
from modeldeploy.render.options import RenderOptions
from modeldeploy.rollout.events import Event

log = logging.getLogger("modeldeploy.operator")

# How long a replica that stops leading waits for its passes in flight (they write nothing more,
# but may be waiting on a read) before it goes on; a stopping one then leaves the Lease to expire.
PASS_GRACE_SECONDS = 30.0
# After a failed pass: 1 s, 2 s, 4 s ... up to 5 minutes, each with jitter (equal jitter).
RETRY_BASE_SECONDS, RETRY_CAP_SECONDS = 1.0, 300.0
_FAILED = ("error", "apply-error")


class Controller:
    def __init__(self, config: OperatorConfig, client: KubeClient) -> None:
        self._config = config
        self.client = client
        self.cache = Cache()
        # Gate runs report back by waking their object: its next pass takes the result into status.
        self.gates = GateRunner(self.enqueue)
        # Analysis rounds too: the pass after a round takes and judges its results.
        self.rounds = AnalysisRunner(self.enqueue)
        self.reconciler = Reconciler(
            client,
            RenderOptions(
                puller_image=config.puller_image,
                pod_monitor_labels=config.pod_monitor_labels,
                operator_namespace=config.operator_namespace or pod_namespace(),
            ),
            self._post_event,
            config.prometheus_url,
            cache=self.cache,
            may_write=self._may_write,
            gates=self.gates,
            prometheus_allow=config.prometheus_allow,
            rounds=self.rounds,
        )
        limiter = RateLimiter(RETRY_BASE_SECONDS, 2.0, RETRY_CAP_SECONDS)
        self.queue = WorkQueue(self._work, config.workers, limiter=limiter)
        self._elector: Elector | None = None
        self._resync: asyncio.Task[None] | None = None
        # The term in which the pass on this thread started: a pass that outlived its term (the
        # Lease lost, then won again) writes nothing more, whatever the new term decides.
        self._pass = threading.local()
        if config.leader_elect:
            client.guard_writes(self._write_window)

    # ------------------------------------------------------------------------- the leader gate

    def leading(self) -> bool:
        if not self._config.leader_elect:
            return True
        return self._elector is not None and self._elector.leading

    def _term(self) -> int | None:
        term: int | None = getattr(self._pass, "term", None)
        return term

    def _write_window(self) -> float | None:
        """The client's write guard: before every attempt of every write, retries included."""
        window = self._elector.write_window(self._term()) if self._elector is not None else None
        if window is None:
            raise NotLeader()
        return window

    def _may_write(self) -> bool:
        # Checked before each write of a pass (the client checks each attempt again).
        if not self._config.leader_elect:
            return True
        return self._elector is not None and self._elector.still_leading(self._term())

    # ------------------------------------------------------------------------- what kopf calls

    def enqueue(self, namespace: str, name: str) -> None:
        """A pass for the object, on the queue's own threads."""
        if self.leading():  # a standby: its watches keep the cache warm, and it writes nothing
            self.queue.add((namespace, name))

    def parent_event(self, namespace: str, name: str, deleted: bool, echo: bool) -> None:
        self.cache.mark_ready()  # kopf runs no handler before every index is filled
        if deleted:
            self.forget((namespace, name))
        elif not echo:  # an echo: only our own status write coming back
            self.enqueue(namespace, name)

    def child_event(self, namespace: str, owner: str | None, echo: bool) -> None:
        self.cache.mark_ready()
        if owner is not None and not echo:  # not ours, or exactly what our own apply just wrote
            self.enqueue(namespace, owner)

    def forget(self, key: Key) -> None:
        """Drop what is kept per object: for one deleted, or gone when its pass looked."""
        self.reconciler.forget_work(*key)
        self.queue.forget(key)
        metrics.FAILING.set(self.queue.limiter.failing())

    # ------------------------------------------------------------------------- one pass

    def _work(self, key: Key) -> None:
        self._pass.term = self._elector.term if self._elector is not None else None
        try:
            self._run_pass(key)
        finally:
            self._pass.term = None

    def _run_pass(self, key: Key) -> None:
        if not self.leading():
            return
        body = self._load(*key)
        if body is None:
            self.forget(key)  # deleted meanwhile
            return
        try:
            result, requeue = self.reconciler.reconcile_result(body)
        except NotLeader:
            log.info("%s/%s: the Lease was lost during the pass; it wrote nothing more", *key)
            return
        except KubeError as error:
            log.warning("reconcile of %s/%s failed: %s", *key, error)
            result, requeue = "error", None
        except Exception:
            log.exception("reconcile of %s/%s failed", *key)
            result, requeue = "error", None
        if result == "gone":
            self.forget(key)
            return
        if result in _FAILED:
            # Per object, as controller-runtime's work queue: a failing object is tried again
            # sooner than the resync, then less and less often, and never holds up the others.
            retry = self.queue.limiter.when(key)
            requeue = retry if requeue is None else min(requeue, retry)
            metrics.RETRIES.inc()
        else:
            self.queue.limiter.forget(key)
        metrics.FAILING.set(self.queue.limiter.failing())
        if requeue is not None and self.leading():
            # Kept in memory only: every timer is recomputed from the timestamps in status on the
            # next pass after a restart.
            self.queue.add_after(key, requeue)

    def _load(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        # From the cache once it is filled: a stale copy is caught before it acts (the pass checks
        # its body is current before its first write, and its status patch carries the version).
        if self.cache.ready:
            return self.cache.parent(namespace, name)
        return fetch_parent(self.client, namespace, name)

    def _post_event(self, body: Mapping[str, Any], event: Event) -> None:
        # Posted with our own client rather than kopf.event(): passes run on the queue's threads,
        # outside kopf's handler context, and an Event must not be lost there.
        try:
            self.client.post_event(body, event.type, event.reason, event.message)
        except KubeError as error:
            log.warning("could not post event %s: %s", event.reason, error)

    # ------------------------------------------------------------------------- resync

    def resync_once(self) -> None:
        """A pass over every cached object: heals drift nothing told us about."""
        if not self.leading() or not self.cache.ready:
            return  # a standby; or kopf is still filling the indexes, and its handlers wait too
        for namespace, name in self.cache.parent_keys():
            self.enqueue(namespace, name)

    async def _resync_loop(self) -> None:
        spread = random.Random()  # noqa: S311 -- jitter, not a secret
        while True:
            # Jittered (+-10%), so that periodic work from many objects or replicas spreads out
            # rather than arriving in step; a steady resync sends no request anyway.
            await asyncio.sleep(self._config.resync_seconds * spread.uniform(0.9, 1.1))
            try:
                await asyncio.to_thread(self.resync_once)
            except Exception:
                log.exception("resync failed")

    # ------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """From kopf's startup handler, on its event loop, once the cache is attached."""
        metrics.QUEUE_DEPTH.set_function(self.queue.depth)
        metrics.QUEUE_SCHEDULED.set_function(self.queue.scheduled)
        self._resync = asyncio.create_task(self._resync_loop())
        if self._config.leader_elect:
            self._campaign()
        else:
            metrics.LEADER.set(1)

    def _campaign(self) -> None:
        config = self._config
        timings = Timings(config.lease_duration, config.renew_deadline, config.retry_period)
        namespace = config.leader_election_namespace or pod_namespace() or "default"
        identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        # Known before it runs: its first win may call _started at once, which must see it leads.
        self._elector = Elector(
            self.client, namespace, config.leader_election_id, identity, timings, self._started, self._stopped
        )
        metrics.LEADER.set(0)
        self._elector.start()

    def _started(self) -> None:
        metrics.LEADER.set(1)
        # Take over at once: a pass over every cached object picks each rollout up where the
        # status left it (timers are recomputed from its timestamps).
        self.resync_once()

    def _stopped(self) -> bool:
        # Every write of the term is refused from now (the Elector no longer leads); the passes in
        # flight are waited for before the Lease can be released or won again.
        metrics.LEADER.set(0)
        self.gates.forget_all()  # the new leader runs them again
        self.rounds.forget_all()
        self.queue.cancel_timers()
        if self.queue.wait_idle(PASS_GRACE_SECONDS):
            return True
        log.warning("passes still running %.0fs after the Lease was lost", PASS_GRACE_SECONDS)
        return False

    async def stop(self) -> None:
        """From kopf's cleanup handler: no new pass, the passes in flight over, then the Lease."""
        self.queue.close()
        if self._elector is not None:
            # Stops writing, waits for the passes in flight, and only then releases the Lease: the
            # standby takes over at once, and no write of ours can land after its first.
            await asyncio.to_thread(self._elector.stop)
        else:
            await asyncio.to_thread(self.queue.wait_idle, PASS_GRACE_SECONDS)
        if self._resync is not None:
            self._resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync
        self.gates.close()
        self.reconciler.close()
        self.client.close()
