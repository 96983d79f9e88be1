"""One reconcile pass: observe -> decide (pure) -> act -> write status once.

Level-triggered: every pass recomputes the whole desired state from spec and status, so it does
not matter which event woke it. A pass that finds nothing to change sends no write at all.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from modeldeploy.adapters.kube import FIELD_MANAGER, KINDS, KubeClient, KubeError, kind_of
from modeldeploy.adapters.prometheus import PrometheusProvider, query_round
from modeldeploy.analysis.endpoints import refusal
from modeldeploy.analysis.templates import ROUND_DEADLINE_SECONDS, context_for, plan
from modeldeploy.analysis.verdicts import judge_round
from modeldeploy.api.base import GROUP, VERSION
from modeldeploy.api.resource import InvalidSpecError, ObjectRef, object_ref, parse_status
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import MetricResult, ModelDeploymentStatus
from modeldeploy.handlers import metrics
from modeldeploy.handlers.analysis import AnalysisRunner
from modeldeploy.handlers.cache import Cache, CrdVersions
from modeldeploy.handlers.echoes import Echoes
from modeldeploy.handlers.gates import GateRunner, gate_work
from modeldeploy.render.compare import needs_apply, stamped
from modeldeploy.render.kinds import PODS as _PODS
from modeldeploy.render.kinds import (
    REQUIRED_KINDS,
    Kind,
    ServedVersions,
    served_optional_kinds,
    unserved_message,
)
from modeldeploy.render.names import NAME_LABEL, TRACK_LABEL, Track, deployment_name
from modeldeploy.render.options import RenderOptions
from modeldeploy.render.ownership import conflict_message, is_ours
from modeldeploy.rollout import clock
from modeldeploy.rollout.events import Event, transition_events
from modeldeploy.rollout.machine import Decision, decide
from modeldeploy.rollout.observe import Observations, apply_failure, commands, deployment_state, pods_summary
from modeldeploy.rollout.plan import created, decided_children
from modeldeploy.rollout.steady import applied_status, invalid_status, prometheus_refused_status
from modeldeploy.rollout.validate import validate
from modeldeploy.routing.gateway_api import route_hold

log = logging.getLogger("modeldeploy.reconciler")

_BASE_KINDS = list(REQUIRED_KINDS)
# A child this operator created is taken as ours for this long, or until the cache holds it: the
# pass right after a create may run before the watch brings the new object into the cache.
_MADE_TTL_SECONDS = 60.0
# A pass whose body turned out stale reads the object again and decides again, this many times.
_CONFLICT_RETRIES = 3

ChildKey = tuple[str, str, str]  # apiVersion, kind, name
EventPoster = Callable[[Mapping[str, Any], Event], None]
Clock = Callable[[], datetime.datetime]


def _key(obj: Mapping[str, Any]) -> ChildKey:
    return (str(obj["apiVersion"]), str(obj["kind"]), str(obj["metadata"]["name"]))


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return is_ours(obj, uid)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def status_dict(status: ModelDeploymentStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


class Reconciler:
    def __init__(
        self,
        kube: KubeClient,
        options: RenderOptions,
        post_event: EventPoster,
        prometheus_url: str,
        clock_fn: Clock = utcnow,
        cache: Cache | None = None,
        may_write: Callable[[], bool] = lambda: True,
        gates: GateRunner | None = None,
        prometheus_allow: tuple[str, ...] = (),
        rounds: AnalysisRunner | None = None,
    ) -> None:
        self._kube = kube
        self._gates = gates
        # Without a runner of the caller's (a test driving passes by hand), rounds wake nothing:
        # the pass after one finished takes its results.
        self._rounds = rounds if rounds is not None else AnalysisRunner(lambda _namespace, _name: None)
        self._cache = cache
        self._may_write = may_write
        self._options = options
        self._post_event = post_event
        self._prometheus_url = prometheus_url
        self._prometheus_allow = prometheus_allow
        self._clock = clock_fn
        self._crd_versions = CrdVersions(kube, cache)
        self._lock = threading.Lock()
        # (namespace, apiVersion, kind, name) -> (when, the object as our create left it)
        self._made: dict[tuple[str, str, str, str], tuple[float, dict[str, Any]]] = {}
        self.echoes = Echoes()

    def close(self) -> None:
        """The rounds still running are dropped; a Prometheus provider holds no connection between
        calls, so no per-URL client outlives the objects that named the URL."""
        self._rounds.close()

    # ------------------------------------------------------------------------------- observe

    def _installed(self) -> dict[str, tuple[str, ...] | None]:
        return self._crd_versions()

    @staticmethod
    def _served_kinds(installed: Mapping[str, tuple[str, ...] | None]) -> list[Kind]:
        return served_optional_kinds(installed)

    def _live_children(self, parent: ObjectRef, kinds: list[Kind]) -> dict[ChildKey, dict[str, Any]]:
        live: dict[ChildKey, dict[str, Any]] = {}
        for kind in kinds:
            if self._cache is not None and self._cache.caches(kind):
                found = self._cache.children(kind, parent.namespace, parent.name)
                for obj in found:
                    self.echoes.read(obj)
            else:
                found = self._kube.list(kind, parent.namespace, f"{NAME_LABEL}={parent.name}")
            for obj in found:
                if _owned_by(obj, parent.uid):
                    obj.setdefault("apiVersion", kind.api_version)
                    obj.setdefault("kind", kind.kind)
                    live[_key(obj)] = obj
        return live

    def _observe(
        self,
        parent: ObjectRef,
        spec: ModelDeploymentSpec,
        body: Mapping[str, Any],
        old: ModelDeploymentStatus,
        live: dict[ChildKey, Any],
        installed: ServedVersions,
        now: datetime.datetime,
    ) -> tuple[Observations, float | None]:
        """Everything the decision needs, before it is made: the children (from the cache), the
        pods of a track that is not ready, the route's acceptance, and what the gate and analysis
        workers finished. With it, when to pass again to read the primary's pods (None: no need)."""
        key = (parent.namespace, parent.name)
        primary = live.get(("apps/v1", "Deployment", deployment_name(parent, Track.PRIMARY)))
        canary = live.get(("apps/v1", "Deployment", deployment_name(parent, Track.CANARY)))
        seen = Observations(
            primary=deployment_state(primary) if primary is not None else None,
            canary=deployment_state(canary) if canary is not None else None,
            commands=commands(body.get("metadata", {}).get("annotations")),
        )
        if canary is not None and old.canary_revision is not None:
            state = seen.canary
            if state is not None and not state.rolled_out:
                # Only a canary that is not ready needs a look at its pods: crash or slow load?
                selector = f"{NAME_LABEL}={parent.name},{TRACK_LABEL}={Track.CANARY.value}"
                pods = self._kube.list(_PODS, parent.namespace, selector)
                seen = replace(seen, canary_pods=pods_summary(pods))
        look_again = None
        if seen.primary is not None and not seen.primary.rolled_out:
            # Why the primary is not ready: unschedulable (no GPU node?) or loading. Asked only once
            # it has been unavailable a while: a new one is ready in seconds, and the passes of its
            # first seconds would each pay a LIST for nothing.
            waited = clock.since(seen.primary.unavailable_since, now)
            if waited >= PRIMARY_PODS_AFTER_SECONDS:
                selector = f"{NAME_LABEL}={parent.name},{TRACK_LABEL}={Track.PRIMARY.value}"
                pods = self._kube.list(_PODS, parent.namespace, selector)
                seen = replace(seen, primary_pods=pods_summary(pods))
            else:
                look_again = PRIMARY_PODS_AFTER_SECONDS - waited
        seen = replace(
            seen,
            route=route_hold(parent, spec, live.values()),  # from the cache
            installed=installed,  # the CRDs, for rollout/prerequisites.py
            gate=self._gates.result(key) if self._gates is not None else None,
            analysis=self._rounds.result(key),
        )
        return seen, look_again

    def analysis_round(self, spec: ModelDeploymentSpec, parent: ObjectRef) -> list[MetricResult]:
        """One analysis round, on the analysis worker: its queries, judged when they are in."""
        analysis = spec.rollout.analysis
        # Allowed: the pass refused a URL off the allow-list before deciding (_reconcile).
        provider = PrometheusProvider(analysis.prometheus_url or self._prometheus_url)
        ctx = context_for(parent.namespace, parent.name, spec.rollout.interval, spec.model.name)
        results = query_round(provider, plan(analysis, ctx), deadline_seconds=ROUND_DEADLINE_SECONDS)
        return judge_round(analysis, results, clock.iso(self._clock()))

    # ------------------------------------------------------------------------------- the pass

    def reconcile_result(self, body: Mapping[str, Any]) -> tuple[str, float | None]:
        """One pass: its result (`ok`, `apply-error`, `invalid`, ...) and when to look again."""
        started = time.perf_counter()
        try:
            result, requeue = self._reconcile_current(body)
        except Exception:
            metrics.RECONCILE_ERRORS.inc()
            metrics.RECONCILES.labels(result="error").inc()
            metrics.RECONCILE_SECONDS.labels(result="error").observe(time.perf_counter() - started)
            raise
        metrics.RECONCILE_SECONDS.labels(result=result).observe(time.perf_counter() - started)
        metrics.RECONCILES.labels(result=result).inc()
        return result, requeue

    def _reconcile_current(self, body: Mapping[str, Any]) -> tuple[str, float | None]:
        """A pass decided from a stale body (a resync listing or a queued event, read before
        another pass or a person wrote the object) must not act on it: it would overwrite a newer
        status, or scale a rolled-back canary up again. So a pass about to write checks that its
        body is current (one GET, only when it writes), and its status write carries the body's
        resourceVersion; either way a stale pass reads the object again and decides again."""
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                return self._reconcile(body)
            except _Stale as stale:
                metrics.RECONCILES.labels(result="stale").inc()
                meta = body["metadata"]
                if attempt == _CONFLICT_RETRIES:
                    log.warning(
                        "%s/%s changed under %d passes in a row", meta["namespace"], meta["name"], attempt + 1
                    )
                    return "stale", 1.0  # look again shortly, from a fresh read
                fresh = stale.fresh or fetch_parent(self._kube, meta["namespace"], meta["name"])
                if fresh is None:
                    return "gone", None
                body = fresh
        raise AssertionError("unreachable: the last attempt returns")

    def _ensure_current(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        if not meta.get("resourceVersion"):
            return
        written = self.echoes.last_written(body)
        if self._cache is not None and written in (None, meta["resourceVersion"]):
            # Read from the cache, which already holds our own last status write (or we made
            # none since the start): the body is as new as anything this operator knows of. A
            # newer edit by someone else arrives as an event and wakes another pass, and the
            # status patch below carries the version, so no GET is needed to act safely.
            return
        fresh = fetch_parent(self._kube, meta["namespace"], meta["name"])
        if fresh is None or fresh["metadata"].get("resourceVersion") != meta["resourceVersion"]:
            raise _Stale(fresh)

    def _reconcile(self, body: Mapping[str, Any]) -> tuple[str, float | None]:
        meta = body.get("metadata", {})
        if meta.get("deletionTimestamp"):
            self.forget_work(str(meta.get("namespace")), str(meta.get("name")))
            return "deleting", None  # the garbage collector removes the children
        parent = object_ref(body)
        old = parse_status(body.get("status"))
        now = self._clock()
        try:
            spec = validate(body)
        except InvalidSpecError as error:
            # Children are left exactly as they are: a bad edit must not take a serving model down.
            new = invalid_status(parent, old, error.problems, clock.iso(now))
            self.forget_work(parent.namespace, parent.name)
            return self._finish(body, old, new, "invalid"), None
        refused = refusal(spec.rollout.analysis.prometheus_url, self._prometheus_url, self._prometheus_allow)
        if refused is not None:
            # As an invalid spec, and before anything is sent to that URL (docs/security.md).
            new = prometheus_refused_status(parent, old, refused, clock.iso(now))
            self.forget_work(parent.namespace, parent.name)
            return self._finish(body, old, new, "invalid"), None

        installed = self._installed()
        served = self._served_kinds(installed)
        pod_monitor = KINDS[("monitoring.coreos.com/v1", "PodMonitor")] in served
        rule = KINDS[("monitoring.coreos.com/v1", "PrometheusRule")] in served
        options = replace(self._options, pod_monitor=pod_monitor, prometheus_rule=rule)
        kinds = _BASE_KINDS + served
        live = self._live_children(parent, kinds)
        seen, look_again = self._observe(parent, spec, body, old, live, installed, now)
        decision = decide(spec, parent, old, seen, now)
        desired = [stamped(obj) for obj in decided_children(parent, spec, options, decision)]
        # Children whose cached copy is older than our last write of them: deciding from that copy
        # would repeat the write (a handover, an apply), so they are left to the pass our write's
        # echo wakes (handlers/echoes.py), or, should that echo slip past, to one LAG_RECHECK_SECONDS on.
        behind = {key for key, obj in live.items() if self.echoes.behind(obj)}
        errors, conflicts = self._apply(
            parent, spec, desired, live, kinds, installed, behind, lambda: self._ensure_current(body)
        )
        # What the writes did to the children is observed by the next pass: the Deployment, HPA and
        # route controllers report on what we wrote, and those reports wake it.
        failure = apply_failure(errors, conflicts)
        status = applied_status(old, decision.status, parent, failure, clock.iso(now))
        result = self._finish(body, old, status, "apply-error" if errors or conflicts else "ok")
        if result == "gone":
            self.forget_work(parent.namespace, parent.name)
        else:
            self._run_gate(parent, spec, decision)
            self._want_round(parent, spec, decision)
        requeue = decision.requeue_after
        for due in (look_again, LAG_RECHECK_SECONDS if behind else None):
            if due is not None:
                requeue = due if requeue is None else min(requeue, due)
        return result, requeue

    def _want_round(self, parent: ObjectRef, spec: ModelDeploymentSpec, decision: Decision) -> None:
        """Have the round the decision names running (its results wake the object); else none."""
        key = (parent.namespace, parent.name)
        if decision.analysis is None:
            self._rounds.forget(key)
        else:
            self._rounds.want(key, decision.analysis, lambda: self.analysis_round(spec, parent))

    def _run_gate(self, parent: ObjectRef, spec: ModelDeploymentSpec, decision: Decision) -> None:
        """After the status naming the run is written: have the run going, or none at all."""
        if self._gates is None:
            return
        key = (parent.namespace, parent.name)
        current = decision.status.gate
        if decision.gate is not None and decision.gate == current:
            if self._gates.wants(key, current):
                work = gate_work(self._kube, parent, spec, current, decision.status.stable_revision)
                self._gates.submit(key, current, work)
        elif current is None or current.finished_at is not None or not self._gates.reported(key, current):
            # Its result is in status now, or no run is wanted any more (paused, rolled back). A
            # result for the unfinished run status names is kept: the next pass takes it.
            self._gates.forget(key)

    def forget_work(self, namespace: str, name: str) -> None:
        """Drop the object's gate run and analysis round: deleted, invalid, or no longer ours."""
        if self._gates is not None:
            self._gates.forget((namespace, name))
        self._rounds.forget((namespace, name))

    # ---------------------------------------------------------------------------------- act

    def _apply(
        self,
        parent: ObjectRef,
        spec: ModelDeploymentSpec,
        desired: list[dict[str, Any]],
        live: dict[ChildKey, Any],
        kinds: list[Kind],
        installed: Mapping[str, tuple[str, ...] | None],
        behind: set[ChildKey],
        ensure_current: Callable[[], None],
    ) -> tuple[list[str], list[str]]:
        """Apply what differs and prune what is no longer wanted; `ensure_current` runs once,
        before the first write, and raises if the parent changed since the pass read it.

        Only our own children are written: `live` holds what carries this object's controller
        ownerReference (from the cache). A child not there is created, never applied: the create
        fails if the name is taken, and the object of that name is then left exactly as it is and
        reported (the second list). A failing child does not stop the others."""
        errors: list[str] = []
        conflicts: list[str] = []
        listed = {(k.api_version, k.kind) for k in kinds}
        checked = False

        def before_write() -> None:
            nonlocal checked
            if not self._may_write():
                raise NotLeader()
            if not checked:
                checked = True
                ensure_current()

        for obj in desired:
            key = _key(obj)
            if key[:2] not in listed:
                errors.append(f"{key[1]}/{key[2]}: {unserved_message(key[0], key[1], installed)}")
                continue
            current = live.get(key)
            if current is not None:
                with self._lock:
                    self._made.pop((parent.namespace, *key), None)  # the cache has it now
            try:
                if current is None:
                    before_write()
                    current, made = self._create(parent, spec, obj, key, conflicts)
                    if current is not None:
                        live[key] = current
                    if current is None or made:
                        continue
                if key in behind:
                    continue
                handover = hands_replicas_over(obj, current)
                if handover or needs_apply(obj, current):
                    before_write()
                    uid = str(current["metadata"]["uid"])
                    if handover:
                        self._kube.apply(
                            replicas_handover(obj, current), field_manager=HANDOVER_MANAGER, uid=uid
                        )
                    live[key] = self._kube.apply(obj, uid=uid)
                    self.echoes.wrote(live[key])
                    metrics.WRITES.labels(verb="apply").inc()
            except KubeError as error:
                errors.append(f"{key[1]}/{key[2]}: {error.message or error.reason}")
        if errors or conflicts:
            return errors, conflicts  # prune nothing while the desired state is not fully in place
        wanted = {_key(obj) for obj in desired}
        for key, obj in list(live.items()):
            if key not in wanted:
                before_write()
                # Only what is ours is in `live`; the uid precondition keeps it so if the name
                # was taken by another object since the cache saw ours.
                live_uid = obj.get("metadata", {}).get("uid")
                try:
                    self._kube.delete(kind_of(obj), parent.namespace, key[2], uid=live_uid and str(live_uid))
                except KubeError as error:
                    if not error.conflict:
                        raise
                    log.info("%s/%s: not deleted, another object has its name now", key[1], key[2])
                metrics.WRITES.labels(verb="delete").inc()
                del live[key]
        return errors, conflicts

    def _create(
        self,
        parent: ObjectRef,
        spec: ModelDeploymentSpec,
        obj: dict[str, Any],
        key: ChildKey,
        conflicts: list[str],
    ) -> tuple[dict[str, Any] | None, bool]:
        """A child the cache does not hold as ours: created (at minReplicas, not at the default of 1
        until the HPA's first sync; the next pass hands `replicas` over to the HPA, see
        hands_replicas_over). When the name is taken, it may be ours after all, the cache not having
        seen it yet: one this operator created within _MADE_TTL_SECONDS, or else one read once (a
        list by name) with our controller reference. Then it is returned to be applied as usual,
        with its uid as precondition. Otherwise it is a conflict, and None. The flag: whether this
        call created it."""
        made = self._kube.create(created(obj, spec))
        place, now = (parent.namespace, *key), time.monotonic()
        with self._lock:
            for stale in [k for k, (at, _) in self._made.items() if now - at > _MADE_TTL_SECONDS]:
                del self._made[stale]
            if made is not None:
                self._made[place] = (now, made)
            recent = self._made.get(place)
        if made is not None:
            self.echoes.wrote(made)
            metrics.WRITES.labels(verb="create").inc()
            return made, True
        if recent is not None:
            # Ours, made moments ago; the cache has not caught up. Any write to it carries its uid.
            return recent[1], False
        existing = self._kube.find(kind_of(obj), parent.namespace, key[2])
        if existing is not None and is_ours(existing, parent.uid):
            return existing, False
        if existing is None:
            raise KubeError(409, "Conflict", "deleted by someone else while being created; tried again")
        conflicts.append(conflict_message(key[1], key[2], existing))
        return None, False

    def _finish(
        self, body: Mapping[str, Any], old: ModelDeploymentStatus, new: ModelDeploymentStatus, result: str
    ) -> str:
        before, after = status_dict(old), status_dict(new)
        if before == after:
            return result
        # A merge patch (RFC 7386): keys we no longer set are removed with an explicit null, at
        # every depth. It carries the resourceVersion of the body this pass decided from: if the
        # object changed since, the server refuses it rather than let an older decision
        # overwrite a newer status.
        patch = merge_patch(before, after)
        meta = body["metadata"]
        if not self._may_write():
            raise NotLeader()
        try:
            written = self._kube.patch_status(
                meta["namespace"], meta["name"], patch, resource_version=meta.get("resourceVersion")
            )
        except KubeError as error:
            if error.not_found:
                return "gone"  # deleted while this pass ran; the garbage collector takes the rest
            if error.conflict:
                raise _Stale(None) from None
            raise
        self.echoes.wrote(written, acted_on=body)
        metrics.WRITES.labels(verb="status").inc()
        for event in transition_events(old, new):
            self._post_event(body, event)
        return result


def merge_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `before` into `after`. Objects are merged key by
    key, so a key dropped inside a nested object (a new gate run has no `finishedAt` yet) must be
    nulled there too: sending the nested object whole would keep the stale key. Lists and scalars
    are replaced whole, as the RFC says."""
    patch: dict[str, Any] = {key: None for key in before if key not in after}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            nested = merge_patch(old, value)
            if nested:
                patch[key] = nested
        elif key not in before or old != value:
            patch[key] = value
    return patch


class NotLeader(Exception):
    """This replica lost the Lease (or never held it) while the pass ran: it must not write."""

    def __init__(self) -> None:
        super().__init__("this replica does not hold the leader Lease")


class _Stale(Exception):
    """The parent changed after the body the pass decided from (`fresh`: as it is now, if read)."""

    def __init__(self, fresh: Mapping[str, Any] | None) -> None:
        super().__init__("the ModelDeployment changed since this pass read it")
        self.fresh = fresh


HANDOVER_MANAGER = "modeldeploy-replicas-handover"
# How long a primary is unavailable before a pass reads its pods for why (the Prerequisites
# condition, an Unschedulable reason): longer than a small model takes to start.
PRIMARY_PODS_AFTER_SECONDS = 20.0
# A pass that left a child to the echo of our write of it passes again after this at the latest.
LAG_RECHECK_SECONDS = 2.0


def hands_replicas_over(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """A Deployment whose replicas we set (fixed size) and now leave to the HPA.

    Server-side apply resets a field to its default when its only manager stops applying it:
    dropping `replicas` would scale the Deployment to 1 until the HPA acts. So another manager
    first takes the field over at its current value, as the Kubernetes docs advise for HPAs."""
    if live is None or desired.get("kind") != "Deployment" or "replicas" in desired.get("spec", {}):
        return False
    for entry in live.get("metadata", {}).get("managedFields") or []:
        fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        # Our Apply entry only: an Update entry of ours (a create whose entry could not be turned
        # into an Apply one) is released by no apply, and would hand the field over every pass.
        ours = entry.get("manager") == FIELD_MANAGER and entry.get("operation", "Apply") == "Apply"
        if ours and "f:replicas" in fields:
            return True
    return False


def replicas_handover(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    meta = desired["metadata"]
    return {
        "apiVersion": desired["apiVersion"],
        "kind": desired["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"replicas": live.get("spec", {}).get("replicas", 1)},
    }


def fetch_parent(kube: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    return kube.get(KINDS[(f"{GROUP}/{VERSION}", "ModelDeployment")], namespace, name)


__all__ = ["Decision", "NotLeader", "Reconciler", "fetch_parent"]
