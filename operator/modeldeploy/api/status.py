"""The ModelDeployment status: the whole rollout state, so that a restarted operator resumes."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from modeldeploy.api.base import PRESERVE_KEY, Model

HISTORY_LIMIT = 10


class Phase(StrEnum):
    STABLE = "Stable"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    ROLLED_BACK = "RolledBack"
    BLOCKED = "Blocked"
    FAILED = "Failed"


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    # What the cluster lacks for this spec (rollout/prerequisites.py); set only once something was.
    PREREQUISITES = "Prerequisites"


class Verdict(StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"

    @staticmethod
    def combined(verdicts: Iterable[str]) -> Verdict:
        """Three-valued, as analysis rounds and gates judge: any Fail fails, else any
        Inconclusive holds, else (or with nothing to judge) it passes."""
        found = {Verdict(v) for v in verdicts}
        if Verdict.FAIL in found:
            return Verdict.FAIL
        if Verdict.INCONCLUSIVE in found:
            return Verdict.INCONCLUSIVE
        return Verdict.PASS


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """metav1.Condition, field for field."""

    type: str = Field(max_length=316)
    status: ConditionStatus
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: str
    observed_generation: int | None = Field(default=None, ge=0)


class MetricResult(Model):
    name: str
    value: float | None = None
    primary_value: float | None = None
    verdict: Verdict
    reason: str = ""
    at: str


class GateCheck(Model):
    """One model-quality check of a gate run (gates/judge.py): the value measured, the bound it
    was held to, and why the verdict is what it is. `value` and `threshold` are in the check's own
    unit: a share in [0, 1], a PSI, seconds for latencyP95, breaking changes for contract."""

    name: str
    value: float | None = None
    threshold: float | None = None
    verdict: Verdict
    message: str = ""


class GateStage(StrEnum):
    """When a gate runs: before the canary takes any traffic (every strategy), or, for Shadow with
    `gates.onMirror`, again once the mirrored phase's analysis has passed, before promotion."""

    PRE_TRAFFIC = "PreTraffic"
    MIRROR = "Mirror"


class GateState(StrEnum):
    RUNNING = "Running"
    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    # Ended without a verdict: the rollout was aborted, promoted by hand or superseded meanwhile.
    CANCELLED = "Cancelled"

    @staticmethod
    def of(verdict: Verdict) -> GateState:
        return {
            Verdict.PASS: GateState.PASSED,
            Verdict.FAIL: GateState.FAILED,
            Verdict.INCONCLUSIVE: GateState.INCONCLUSIVE,
        }[Verdict(verdict)]


class GateRun(Model):
    """A gate run on the canary revision: the checks and their combined verdict. `finishedAt` unset
    while the run is in progress. `startedAt` (to the millisecond) names the run: the operator's
    gate worker reports its result against it, so a result of an older run is never taken."""

    model_config = Model.model_config | {"extra": "ignore"}

    revision: str
    stage: GateStage = GateStage.PRE_TRAFFIC
    state: GateState = GateState.RUNNING
    started_at: str
    finished_at: str | None = None
    verdict: Verdict | None = None
    message: str = ""
    checks: list[GateCheck] = Field(default_factory=list, max_length=16)


class HistoryEntry(Model):
    revision: str
    model_version: str
    result: str
    reason: str = ""
    at: str
    # The last gate run's checks, when the revision was gated: what it was promoted or stopped on.
    gate: list[GateCheck] = Field(default_factory=list, max_length=16)


class StableSpec(Model):
    """What the primary runs: the model and runtime sections of the last promoted spec.

    Kept in status so that the primary keeps serving the stable revision, unchanged, for the whole
    rollout, whatever the spec says now and whatever happens to the operator's memory."""

    model_config = Model.model_config | {"extra": "ignore"}

    revision: str
    model: dict[str, Any] = Field(json_schema_extra={PRESERVE_KEY: True})
    runtime: dict[str, Any] = Field(json_schema_extra={PRESERVE_KEY: True})


class Handled(Model):
    """The last one-shot command token acted on, per command: annotations are level state, so a
    token is handled once, and the operator never has to write the annotation back."""

    model_config = Model.model_config | {"extra": "ignore"}

    promote: str | None = None
    abort: str | None = None
    retry: str | None = None
    resume: str | None = None


class ModelDeploymentStatus(Model):
    # Read back from the server, so tolerate fields a newer operator version may have written.
    model_config = Model.model_config | {"extra": "ignore"}

    observed_generation: int | None = None
    phase: Phase | None = None
    message: str | None = None
    stable_revision: str | None = None
    canary_revision: str | None = None
    canary_model_version: str | None = None
    # What the primary runs, so that the stable revision survives a spec change mid-rollout.
    stable_model_version: str | None = None
    stable_spec: StableSpec | None = None
    step: int | None = None
    rollout_started_at: str | None = None
    step_started_at: str | None = None
    # When the canary was ready and the step's traffic was in force: analysis and pauses count from here.
    weight_set_at: str | None = None
    last_analysis_at: str | None = None
    # Since when the canary of this rollout has served nothing (no ready pod, gone, scaled to zero,
    # crash-looping): its traffic is off meanwhile, and it is rolled back after failureThreshold
    # intervals. In status so that a restarted operator keeps counting.
    canary_unavailable_since: str | None = None
    promoted_by_hand: bool | None = None
    handled: Handled | None = None
    canary_weight: int | None = None
    failed_checks: int | None = None
    inconclusive_checks: int | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    url: str | None = None
    analysis: list[MetricResult] = Field(default_factory=list)
    # The model-quality gate run of the canary revision (docs/gates.md).
    gate: GateRun | None = None
    conditions: list[Condition] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list, max_length=HISTORY_LIMIT)
