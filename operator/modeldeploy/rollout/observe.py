"""What the reconciler saw of the children, reduced to the facts decisions need (pure parsing)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modeldeploy.api.base import (
    ABORT_ANNOTATION,
    PAUSED_ANNOTATION,
    PROMOTE_ANNOTATION,
    RESUME_ANNOTATION,
    RETRY_ANNOTATION,
)
from modeldeploy.api.status import GateCheck, MetricResult, Verdict
from modeldeploy.render.kinds import ServedVersions
from modeldeploy.render.names import REVISION_LABEL
from modeldeploy.routing.base import RouteHold


@dataclass(frozen=True)
class DeploymentState:
    desired: int
    replicas: int
    ready: int
    updated: int
    available: int
    up_to_date: bool  # the Deployment controller has seen the latest spec
    deadline_exceeded: bool
    revision: str | None
    # Since when its Available condition has been False (RFC 3339); None: available, or not yet said.
    unavailable_since: str | None = None

    @property
    def rolled_out(self) -> bool:
        # As `kubectl rollout status` judges it: no pod of an older template is left running.
        return (
            self.up_to_date
            and self.updated >= self.desired
            and self.replicas <= self.updated
            and self.ready >= self.desired
        )


def deployment_state(obj: Mapping[str, Any]) -> DeploymentState:
    spec, status, meta = obj.get("spec", {}), obj.get("status", {}) or {}, obj.get("metadata", {})
    conditions = status.get("conditions") or []
    deadline = any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded" for c in conditions
    )
    return DeploymentState(
        desired=int(spec.get("replicas", 1)),
        replicas=int(status.get("replicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        up_to_date=int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0),
        deadline_exceeded=deadline,
        revision=(meta.get("labels") or {}).get(REVISION_LABEL),
        unavailable_since=next(
            (
                c.get("lastTransitionTime")
                for c in conditions
                if c.get("type") == "Available" and c.get("status") == "False"
            ),
            None,
        ),
    )


# Container states that mean "broken", not "slow": restarting will not fix them by itself.
_CRASH_REASONS = {
    "CrashLoopBackOff",
    "Error",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "OOMKilled",
}


@dataclass(frozen=True)
class PodsSummary:
    """Why a track's pods are not ready: crashing, unschedulable, or just slow to load the model."""

    crashed: str | None = None  # "pod x: container triton CrashLoopBackOff (exit 1)"
    # Restarted again and again: waiting out the deadline would not help (exit on error is on).
    crash_looping: bool = False
    unschedulable: str | None = None
    loading: str | None = None  # "pod x: model-puller still running"


def _container_problem(pod: str, status: Mapping[str, Any]) -> str | None:
    name = status.get("name", "?")
    state = status.get("state") or {}
    last = (status.get("lastState") or {}).get("terminated") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    if waiting.get("reason") in _CRASH_REASONS:
        detail = f" (last exit {last.get('exitCode')}: {last.get('reason', '')})" if last else ""
        restarts = int(status.get("restartCount") or 0)
        count = f", {restarts} restart{'s' if restarts != 1 else ''}" if restarts else ""
        return f"pod {pod}: container {name} {waiting['reason']}{count}{detail}"
    if terminated and terminated.get("exitCode", 0) != 0:
        code, why = terminated.get("exitCode"), terminated.get("reason", "")
        return f"pod {pod}: container {name} exited {code} ({why})"
    if int(status.get("restartCount") or 0) > 0 and last:
        count, code = status["restartCount"], last.get("exitCode")
        return f"pod {pod}: container {name} restarted {count} times (last exit {code})"
    return None


# Restarts after which a canary counts as crash-looping and is rolled back before its deadline.
CRASH_LOOP_RESTARTS = 3


def pods_summary(pods: Sequence[Mapping[str, Any]]) -> PodsSummary:
    crashed = unschedulable = loading = None
    looping = False
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                unschedulable = unschedulable or f"pod {name}: {cond.get('message') or cond.get('reason')}"
        for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            problem = _container_problem(name, cs)
            if problem:
                crashed = crashed or problem
                looping = looping or int(cs.get("restartCount") or 0) >= CRASH_LOOP_RESTARTS
            elif not cs.get("ready") and loading is None:
                what = "downloading the model" if cs.get("name") == "model-puller" else "loading the model"
                loading = f"pod {name}: {cs.get('name')} still {what}"
    return PodsSummary(crashed=crashed, unschedulable=unschedulable, loading=loading, crash_looping=looping)


@dataclass(frozen=True)
class Commands:
    """Manual control, read from the object's annotations."""

    paused: bool = False
    promote: str | None = None
    abort: str | None = None
    retry: str | None = None
    resume: str | None = None


@dataclass(frozen=True)
class GateResult:
    """A finished gate run, as the operator's gate worker reports it: for the run of `revision`
    that status.gate names by `started_at`, and no other."""

    revision: str
    started_at: str
    verdict: Verdict
    message: str
    checks: tuple[GateCheck, ...] = ()


@dataclass(frozen=True)
class AnalysisRound:
    """A finished analysis round, as the operator's analysis worker reports it: for the round the
    machine named (`Decision.analysis`), and no other."""

    round: str
    results: list[MetricResult]


@dataclass(frozen=True)
class Observations:
    primary: DeploymentState | None = None
    canary: DeploymentState | None = None
    canary_pods: PodsSummary = field(default_factory=PodsSummary)
    # The primary's pods, read once it has been unavailable a while: why (unschedulable?). None: not
    # read this pass.
    primary_pods: PodsSummary | None = None
    # The versions each optional CRD serves (None: not known this pass): rollout/prerequisites.py.
    installed: ServedVersions | None = None
    commands: Commands = field(default_factory=Commands)
    # The analysis worker's last finished round for this object (Decision.analysis asks for one).
    analysis: AnalysisRound | None = None
    # The gate worker's result for this object's current gate run, once it has finished.
    gate: GateResult | None = None
    # The router's controller does not route the canary as the live route says (the Gateway has
    # not accepted it); None: accepted, or nothing reported (routing/gateway_api.route_hold).
    route: RouteHold | None = None


def apply_failure(errors: Sequence[str], conflicts: Sequence[str]) -> tuple[str, str] | None:
    """(reason, message) of the Degraded condition when children could not all be written.

    `errors`: children the API server refused, each "Kind/name: reason". `conflicts`: children whose
    name another object holds, each "Kind/name: ... (who owns it)"; they say so first, as no retry
    of ours can clear them."""
    if conflicts:
        return "ChildConflict", "; ".join([*conflicts, *errors])
    if errors:
        return "ApplyFailed", "; ".join(errors)
    return None


def commands(annotations: Mapping[str, str] | None) -> Commands:
    found = annotations or {}

    def token(key: str) -> str | None:
        value = str(found.get(key) or "").strip()
        return value or None

    return Commands(
        paused=str(found.get(PAUSED_ANNOTATION, "")).strip().lower() in {"true", "1", "yes"},
        promote=token(PROMOTE_ANNOTATION),
        abort=token(ABORT_ANNOTATION),
        retry=token(RETRY_ANNOTATION),
        resume=token(RESUME_ANNOTATION),
    )
