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

from modeldeploy.adapters.kube import KINDS, Kind, KubeClient, KubeError, kind_of
from modeldeploy.api.base import GROUP, VERSION
from modeldeploy.api.resource import InvalidSpecError, ObjectRef, object_ref, parse_spec, parse_status
from modeldeploy.api.status import ModelDeploymentStatus
from modeldeploy.handlers import metrics
from modeldeploy.render.children import desired_children, stable_plan
from modeldeploy.render.compare import needs_apply, stamped
from modeldeploy.render.names import NAME_LABEL, Track, deployment_name
from modeldeploy.render.options import RenderOptions
from modeldeploy.rollout.events import Event, transition_events
from modeldeploy.rollout.observe import Observations, deployment_state
from modeldeploy.rollout.steady import invalid_status, steady_status

log = logging.getLogger("modeldeploy.reconciler")

POD_MONITOR_CRD = "podmonitors.monitoring.coreos.com"
_BASE_KINDS = [
    KINDS[("v1", "ConfigMap")],
    KINDS[("apps/v1", "Deployment")],
    KINDS[("v1", "Service")],
    KINDS[("autoscaling/v2", "HorizontalPodAutoscaler")],
]
_POD_MONITOR = KINDS[("monitoring.coreos.com/v1", "PodMonitor")]
_CRD_TTL_SECONDS = 60.0

ChildKey = tuple[str, str, str]  # apiVersion, kind, name
EventPoster = Callable[[Mapping[str, Any], Event], None]


def _key(obj: Mapping[str, Any]) -> ChildKey:
    return (str(obj["apiVersion"]), str(obj["kind"]), str(obj["metadata"]["name"]))


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj.get("metadata", {}).get("ownerReferences") or [])


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def status_dict(status: ModelDeploymentStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=False)


class Reconciler:
    def __init__(
        self,
        kube: KubeClient,
        options: RenderOptions,
        post_event: EventPoster,
        clock: Callable[[], str] = now_iso,
    ) -> None:
        self._kube = kube
        self._options = options
        self._post_event = post_event
        self._clock = clock
        self._crd_checked_at = -_CRD_TTL_SECONDS
        self._pod_monitor = False
        self._crd_lock = threading.Lock()

    # ------------------------------------------------------------------------------- observe

    def _pod_monitor_available(self) -> bool:
        """Whether the PodMonitor CRD is installed; re-checked once a minute, not every pass."""
        with self._crd_lock:
            if time.monotonic() - self._crd_checked_at >= _CRD_TTL_SECONDS:
                try:
                    self._pod_monitor = self._kube.crd_installed(POD_MONITOR_CRD)
                except KubeError as error:
                    log.warning("cannot tell whether PodMonitors are available: %s", error)
                self._crd_checked_at = time.monotonic()
            return self._pod_monitor

    def _live_children(self, parent: ObjectRef, kinds: list[Kind]) -> dict[ChildKey, dict[str, Any]]:
        live: dict[ChildKey, dict[str, Any]] = {}
        for kind in kinds:
            for obj in self._kube.list(kind, parent.namespace, f"{NAME_LABEL}={parent.name}"):
                if _owned_by(obj, parent.uid):
                    obj.setdefault("apiVersion", kind.api_version)
                    obj.setdefault("kind", kind.kind)
                    live[_key(obj)] = obj
        return live

    # ------------------------------------------------------------------------------- the pass

    def reconcile(self, body: Mapping[str, Any]) -> None:
        started = time.perf_counter()
        try:
            result = self._reconcile(body)
        except Exception:
            metrics.RECONCILE_ERRORS.inc()
            metrics.RECONCILES.labels(result="error").inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        metrics.RECONCILES.labels(result=result).inc()

    def _reconcile(self, body: Mapping[str, Any]) -> str:
        meta = body.get("metadata", {})
        if meta.get("deletionTimestamp"):
            return "deleting"  # the garbage collector removes the children; nothing to do
        parent = object_ref(body)
        old = parse_status(body.get("status"))
        now = self._clock()
        try:
            spec = parse_spec(body.get("spec"))
        except InvalidSpecError as error:
            # Children are left exactly as they are: a bad edit must not take a serving model down.
            new = invalid_status(parent, old, error.problems, now)
            return self._finish(body, old, new, "invalid")

        options = replace(self._options, pod_monitor=self._pod_monitor_available())
        kinds = _BASE_KINDS + ([_POD_MONITOR] if options.pod_monitor else [])
        desired = [stamped(obj) for obj in desired_children(parent, spec, options, stable_plan(spec))]
        live = self._live_children(parent, kinds)
        errors: list[str] = []
        for obj in desired:
            key = _key(obj)
            if needs_apply(obj, live.get(key)):
                try:
                    live[key] = self._kube.apply(obj)
                    metrics.WRITES.labels(verb="apply").inc()
                except KubeError as error:
                    errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {error.message or error.reason}")
        if not errors:
            wanted = {_key(obj) for obj in desired}
            for key, obj in list(live.items()):
                if key not in wanted:
                    self._kube.delete(kind_of(obj), parent.namespace, key[2])
                    metrics.WRITES.labels(verb="delete").inc()
                    del live[key]
        primary = live.get(("apps/v1", "Deployment", deployment_name(parent, Track.PRIMARY)))
        seen = Observations(
            primary=deployment_state(primary) if primary is not None else None,
            apply_errors=errors,
        )
        new = steady_status(spec, parent, old, seen, now)
        return self._finish(body, old, new, "applied" if errors else "ok")

    # ---------------------------------------------------------------------------------- act

    def _finish(
        self, body: Mapping[str, Any], old: ModelDeploymentStatus, new: ModelDeploymentStatus, result: str
    ) -> str:
        before, after = status_dict(old), status_dict(new)
        if before == after:
            return result
        # A merge patch: keys we no longer set are removed with an explicit null.
        patch: dict[str, Any] = {**{k: None for k in before if k not in after}, **after}
        meta = body["metadata"]
        self._kube.patch_status(meta["namespace"], meta["name"], patch)
        metrics.WRITES.labels(verb="status").inc()
        for event in transition_events(old, new):
            self._post_event(body, event)
        return result


def fetch_parent(kube: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    return kube.get(KINDS[(f"{GROUP}/{VERSION}", "ModelDeployment")], namespace, name)
