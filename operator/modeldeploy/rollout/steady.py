"""Status for the steady state: one revision, served by the primary.

(spec, status, observations, now) -> status. Pure: time comes in as `now`, and a condition's
lastTransitionTime moves only when its status flips, so an unchanged world yields an equal status
and the shell writes nothing.
"""

from __future__ import annotations

from modeldeploy.api.conditions import set_condition
from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.api.status import ConditionStatus, ConditionType, ModelDeploymentStatus, Phase
from modeldeploy.render.names import url
from modeldeploy.render.revision import revision
from modeldeploy.rollout.observe import Observations


def with_conditions(
    status: ModelDeploymentStatus,
    parent: ObjectRef,
    now: str,
    *entries: tuple[ConditionType, ConditionStatus, str, str],
) -> ModelDeploymentStatus:
    """`status` with each (type, status, reason, message) condition set, observed at this generation."""
    conditions = list(status.conditions)
    for type_, value, reason, message in entries:
        conditions = set_condition(
            conditions,
            type=type_.value,
            status=value,
            reason=reason,
            message=message,
            now=now,
            observed_generation=parent.generation,
        )
    return status.model_copy(update={"conditions": conditions})


def steady_status(
    spec: ModelDeploymentSpec,
    parent: ObjectRef,
    status: ModelDeploymentStatus,
    seen: Observations,
    now: str,
) -> ModelDeploymentStatus:
    rev = revision(spec)
    primary = seen.primary
    ready = primary.ready if primary else 0
    update = {
        "observed_generation": parent.generation,
        "url": url(parent),
        "replicas": primary.replicas if primary else 0,
        "ready_replicas": ready,
        "canary_revision": None,
        "canary_model_version": None,
        "canary_weight": None,
        "step": None,
    }
    out = status.model_copy(update=update)
    if primary is not None and primary.revision == rev and primary.rolled_out and ready > 0:
        model = spec.model
        message = f"{ready}/{primary.desired} replicas ready, serving {model.name} version {model.version}"
        out = out.model_copy(
            update={
                "phase": Phase.STABLE,
                "message": message,
                "stable_revision": rev,
                "stable_model_version": spec.model.version,
            }
        )
        return with_conditions(
            out,
            parent,
            now,
            (ConditionType.READY, "True", "ModelReady", message),
            (ConditionType.PROGRESSING, "False", "Stable", "all replicas run the current revision"),
            (ConditionType.DEGRADED, "False", "Healthy", ""),
        )
    # Not created yet (this pass creates it): the size it is created at (rollout/plan.created).
    desired = primary.desired if primary else spec.scaling.min_replicas
    if primary is not None and primary.deadline_exceeded:
        message = (
            f"{ready}/{desired} replicas ready: the Deployment exceeded its progress deadline; "
            "check the pods' events and the model-puller and triton logs"
        )
        out = out.model_copy(update={"phase": Phase.FAILED, "message": message})
        return with_conditions(
            out,
            parent,
            now,
            (ConditionType.READY, "True" if ready else "False", "ProgressDeadlineExceeded", message),
            (ConditionType.PROGRESSING, "False", "ProgressDeadlineExceeded", message),
            (ConditionType.DEGRADED, "True", "ProgressDeadlineExceeded", message),
        )
    message = f"{ready}/{desired} replicas ready: loading {spec.model.name} version {spec.model.version}"
    reason = "ModelLoading"
    if seen.primary_pods is not None and (unschedulable := seen.primary_pods.unschedulable) is not None:
        # Not loading at all: the scheduler says why (no GPU left, not enough CPU, a taint).
        reason, message = "Unschedulable", f"{ready}/{desired} replicas ready: {unschedulable}"
    out = out.model_copy(update={"phase": Phase.PROGRESSING, "message": message})
    return with_conditions(
        out,
        parent,
        now,
        (ConditionType.READY, "True" if ready else "False", reason, message),
        (ConditionType.PROGRESSING, "True", reason, message),
        (ConditionType.DEGRADED, "False", "Healthy", ""),
    )


def applied_status(
    old: ModelDeploymentStatus,
    decided: ModelDeploymentStatus,
    parent: ObjectRef,
    failure: tuple[str, str] | None,
    now: str,
) -> ModelDeploymentStatus:
    """The status a pass writes: the one it decided, plus what its writes could not do
    (`apply_failure`), with each condition's lastTransitionTime as stored while its status holds.

    Out of a rollout the object as a whole failed to deploy; in one, the rollout state stands and
    the object says what failed. The times are kept against the stored status, not the decided one:
    a failure every retry meets again (Healthy decided, then Degraded again) is no transition."""
    out = decided
    if failure is not None:
        reason, message = failure
        if out.canary_revision is None:
            ready: ConditionStatus = "True" if out.ready_replicas else "False"
            out = with_conditions(
                out.model_copy(update={"phase": Phase.FAILED, "message": message}),
                parent,
                now,
                (ConditionType.READY, ready, reason, message),
                (ConditionType.PROGRESSING, "False", reason, message),
                (ConditionType.DEGRADED, "True", reason, message),
            )
        elif out.phase != Phase.FAILED:
            out = with_conditions(out, parent, now, (ConditionType.DEGRADED, "True", reason, message))
    stored = {c.type: c for c in old.conditions}
    kept = [
        c.model_copy(update={"last_transition_time": stored[c.type].last_transition_time})
        if c.type in stored and stored[c.type].status == c.status
        else c
        for c in out.conditions
    ]
    return out if kept == out.conditions else out.model_copy(update={"conditions": kept})


def _frozen(parent: ObjectRef, status: ModelDeploymentStatus, message: str) -> ModelDeploymentStatus:
    # A rollout in flight keeps its phase (RolledBack must not turn into a fresh start once the
    # spec is fixed); only an object never acted on gets phase Failed.
    phase = status.phase if status.phase is not None else Phase.FAILED
    return status.model_copy(
        update={"observed_generation": parent.generation, "phase": phase, "message": message}
    )


def invalid_status(
    parent: ObjectRef, status: ModelDeploymentStatus, problems: list[str], now: str
) -> ModelDeploymentStatus:
    """A spec the operator cannot act on: children stay as they are, the object says why."""
    message = "invalid spec: " + "; ".join(problems)
    return with_conditions(
        _frozen(parent, status, message),
        parent,
        now,
        (ConditionType.PROGRESSING, "False", "InvalidSpec", message),
        (ConditionType.DEGRADED, "True", "InvalidSpec", message),
    )


def prometheus_refused_status(
    parent: ObjectRef, status: ModelDeploymentStatus, problem: str, now: str
) -> ModelDeploymentStatus:
    """A spec naming a Prometheus the operator may not query (analysis/endpoints.py): as an invalid
    spec, under a reason of its own, so that it reads as the operator's policy, not a typo."""
    message = "refused: " + problem
    return with_conditions(
        _frozen(parent, status, message),
        parent,
        now,
        (ConditionType.PROGRESSING, "False", "PrometheusNotAllowed", message),
        (ConditionType.DEGRADED, "True", "PrometheusNotAllowed", message),
    )
