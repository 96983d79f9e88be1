"""The rollout state machine: (spec, status, observations, now) -> (status, desired plan).

Pure. All rollout state lives in `.status` (step, timers, counters, the stable snapshot), so an
operator killed at any instant resumes at the same step. The shell calls `decide()`; when the
Decision asks for analysis, the shell queries the metrics provider and calls `decide()` again
with the results, so analysis timing lives here and nowhere else.

Phases: Stable -> Progressing (steps, each: canary ready -> traffic -> analysis every interval)
-> Promoting (primary moves to the new revision under 100% canary traffic) -> Stable. Failures
go to RolledBack; a GPU budget that cannot fit goes to Blocked; the paused annotation to Paused.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace

from modeldeploy.analysis.templates import ROUND_DEADLINE_SECONDS
from modeldeploy.analysis.verdicts import canary_unmeasured
from modeldeploy.api.base import parse_duration
from modeldeploy.api.conditions import find_condition
from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import InconclusiveAction, ModelDeploymentSpec, Strategy
from modeldeploy.api.status import (
    HISTORY_LIMIT,
    ConditionStatus,
    ConditionType,
    GateRun,
    GateStage,
    GateState,
    Handled,
    HistoryEntry,
    MetricResult,
    ModelDeploymentStatus,
    Phase,
    StableSpec,
    Verdict,
)
from modeldeploy.gates.judge import check_names
from modeldeploy.render.children import TrackPlan
from modeldeploy.render.names import Track, url
from modeldeploy.render.revision import revision
from modeldeploy.rollout import clock
from modeldeploy.rollout.observe import GateResult, Observations
from modeldeploy.rollout.prerequisites import prerequisites_condition
from modeldeploy.rollout.replicas import (
    effective_ratio_weight,
    extra_gpus,
    ratio_canary_replicas,
    routed_canary_replicas,
)
from modeldeploy.rollout.steady import steady_status, with_conditions
from modeldeploy.routing.base import STEADY, Split

# How often to look again while waiting on something no watch event announces (a deadline).
POLL_SECONDS = 10.0
# For this long after the canary's traffic starts (`weightSetAt`), a round in which nothing of the
# canary was measured is not counted against `inconclusive.limit`: a new pod's series exist only
# once Prometheus has discovered it (its discovery manager hands over targets on a 5 s tick) and
# scraped it twice for `rate()`. 60 s covers that at scrape intervals up to 25 s (the rendered
# PodMonitor scrapes every 15 s). Provider failures and thin-but-measured traffic always count.
DISCOVERY_GRACE_SECONDS = 60.0
# A running gate is looked at again after its timeout plus this, in case its worker was lost; the
# worker wakes the object itself when the run ends.
GATE_SLACK_SECONDS = 30.0
# The same for an analysis round, which its worker ends by the round's deadline.
ROUND_SLACK_SECONDS = 5.0
# The Progressing reasons of a step held because the Gateway does not route the route in force.
ROUTE_HOLD_REASONS = ("RouteNotAccepted", "RoutePending")


@dataclass(frozen=True)
class Decision:
    status: ModelDeploymentStatus
    tracks: list[TrackPlan]
    split: Split = STEADY
    # Which track the main Service selects: None selects both (the replica-ratio split).
    service_track: Track | None = Track.PRIMARY
    # The analysis round the shell must have running (its worker wakes the object with the
    # results, which the next pass observes); None: no round wanted.
    analysis: str | None = None
    requeue_after: float | None = None
    # The gate run the shell must have running (status.gate, unfinished); None: no run wanted, so a
    # run of this object still going (the rollout aborted, paused, superseded) is cancelled.
    gate: GateRun | None = None


def snapshot(spec: ModelDeploymentSpec) -> StableSpec:
    return StableSpec(
        revision=revision(spec),
        model=spec.model.model_dump(mode="json", by_alias=True, exclude_none=True),
        runtime=spec.runtime.model_dump(mode="json", by_alias=True, exclude_none=True),
    )


def stable_spec_of(spec: ModelDeploymentSpec, stable: StableSpec) -> ModelDeploymentSpec:
    """The current spec with the stable model and runtime: what the primary keeps running."""
    merged = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    merged["model"], merged["runtime"] = stable.model, stable.runtime
    return ModelDeploymentSpec.model_validate(merged)


def _fixed_replicas(spec: ModelDeploymentSpec) -> int | None:
    return None if spec.scaling.autoscaled else spec.scaling.min_replicas


def _history(status: ModelDeploymentStatus, entry: HistoryEntry) -> list[HistoryEntry]:
    return [entry, *status.history][:HISTORY_LIMIT]


def _routed(spec: ModelDeploymentSpec) -> bool:
    return spec.traffic.router != "replicaRatio"


class _Machine:
    def __init__(
        self,
        spec: ModelDeploymentSpec,
        parent: ObjectRef,
        status: ModelDeploymentStatus,
        seen: Observations,
        now: datetime.datetime,
    ) -> None:
        self.spec = spec
        self.parent = parent
        self.old = status
        self.seen = seen
        self.now = now
        self.now_s = clock.iso(now)
        self.now_ms = clock.iso_ms(now)
        self.rev = revision(spec)
        # Why the canary of this rollout serves nothing this pass (watch_canary), and the seconds
        # left before it is rolled back for it; a by-hand promote refused this pass, and why.
        self.down: str | None = None
        self.down_left = 0.0
        self.refused: str | None = None
        primary = seen.primary
        self.status = status.model_copy(
            update={
                "observed_generation": parent.generation,
                "url": url(parent),
                "replicas": primary.replicas if primary else 0,
                "ready_replicas": primary.ready if primary else 0,
            }
        )

    # --------------------------------------------------------------------------- helpers

    def cond(self, type_: ConditionType, value: ConditionStatus, reason: str, message: str) -> None:
        self.status = with_conditions(self.status, self.parent, self.now_s, (type_, value, reason, message))

    def update(self, **fields: object) -> None:
        self.status = self.status.model_copy(update=fields)

    def primary_plan(self) -> TrackPlan:
        stable = self.status.stable_spec
        assert stable is not None
        return TrackPlan(
            Track.PRIMARY, stable_spec_of(self.spec, stable), stable.revision, _fixed_replicas(self.spec)
        )

    def primary_size(self) -> int:
        primary = self.seen.primary
        if primary is not None and primary.desired > 0:
            return primary.desired
        return self.spec.scaling.min_replicas

    def step_weight(self, step: int) -> int:
        """The live traffic share of a step: BlueGreen and Shadow analyse with none."""
        steps = self.spec.rollout.steps
        if self.spec.rollout.strategy != Strategy.CANARY or not steps:
            return 0
        return steps[min(step, len(steps) - 1)].weight

    def split_for(self, weight: int) -> Split:
        rollout = self.spec.rollout
        if self.down is not None:
            return STEADY  # a canary that serves nothing gets no share, no cohort and no mirror
        # The header-matched cohort and the mirror go to the canary only once it has been ready:
        # before that its Service has no endpoints, and pinned users would get errors.
        ready_once = self.status.weight_set_at is not None or (self.status.step or 0) > 0
        return Split(
            canary_weight=weight,
            mirror=rollout.strategy == Strategy.SHADOW and ready_once,
            match=tuple(rollout.match) if ready_once else (),
        )

    def canary_replicas(self, step_weight: int) -> int:
        rollout = self.spec.rollout
        if rollout.canary_replicas is not None:
            return rollout.canary_replicas
        primary = self.primary_size()
        if rollout.strategy != Strategy.CANARY:
            return primary  # BlueGreen and Shadow: full capacity before the switch or under mirroring
        if _routed(self.spec):
            return routed_canary_replicas(primary, step_weight)
        return ratio_canary_replicas(primary, step_weight)

    def steps_count(self) -> int:
        return max(1, len(self.spec.rollout.steps))

    def pause_of(self, step: int) -> float:
        steps = self.spec.rollout.steps
        if step < len(steps) and steps[step].pause:
            return parse_duration(steps[step].pause or "0s")
        return 0.0

    def canary_plan(self, replicas: int) -> TrackPlan:
        return TrackPlan(Track.CANARY, self.spec, self.rev, replicas)

    def service_track(self, weight: int) -> Track | None:
        if _routed(self.spec):
            return Track.PRIMARY
        if weight >= 100:
            return Track.CANARY
        if self.spec.rollout.strategy == Strategy.CANARY and weight > 0:
            return None  # both tracks behind one Service: the split is the share of pods
        return Track.PRIMARY

    # ------------------------------------------------------------------------- decisions

    def decide(self) -> Decision:
        decision = self._decide()
        status = decision.status
        # Every command token seen is now spent, acted on or not: a `promote` typed while Stable,
        # or a `resume` after a plain pause, must not fire later at a rollout it was not meant for.
        commands = self.seen.commands
        tokens = {k: getattr(commands, k) for k in ("promote", "abort", "retry", "resume")}
        handled = status.handled or Handled()
        spent = handled.model_copy(update={k: v for k, v in tokens.items() if v is not None})
        if spent != handled or (status.handled is None and any(tokens.values())):
            status = status.model_copy(update={"handled": spent})
        decision = replace(decision, status=status)
        if self.down is not None and status.phase != Phase.ROLLED_BACK:
            decision = self.unavailable_note(decision)
        if self.refused is not None:
            self.status = decision.status
            self.cond(ConditionType.DEGRADED, "True", "PromoteRefused", self.refused)
            decision = replace(decision, status=self.status)
        status = decision.status
        has = find_condition(status.conditions, ConditionType.PREREQUISITES.value) is not None
        if (needs := prerequisites_condition(self.spec, self.seen, has)) is not None:
            self.status = status
            self.cond(ConditionType.PREREQUISITES, *needs)
            status = self.status
        return replace(decision, status=status)

    def _decide(self) -> Decision:
        stable = self.status.stable_spec
        if self.status.stable_revision is None or stable is None:
            return self.first_deployment()
        commands = self.seen.commands
        handled = self.status.handled or Handled()
        in_rollout = self.status.canary_revision == self.rev and self.rev != self.status.stable_revision

        if self.rev == self.status.stable_revision:
            if self.status.canary_revision is not None and self.status.phase not in (Phase.ROLLED_BACK,):
                self.record("Superseded", "the spec returned to the stable revision")
            return self.steady()

        if not in_rollout:
            if self.status.canary_revision is not None and self.status.phase != Phase.ROLLED_BACK:
                self.record("Superseded", f"revision {self.rev} replaced it mid-rollout")
            return self.start()

        if commands.retry and commands.retry != handled.retry and self.status.phase == Phase.ROLLED_BACK:
            self.update(handled=handled.model_copy(update={"retry": commands.retry}))
            return self.start()
        if self.status.phase == Phase.ROLLED_BACK:
            return self.rolled_back_hold()
        if commands.abort and commands.abort != handled.abort:
            self.update(handled=handled.model_copy(update={"abort": commands.abort}))
            return self.rollback("Aborted", "aborted by hand (modeldeploy abort)")
        if commands.promote and commands.promote != handled.promote and self.status.phase != Phase.PROMOTING:
            self.update(handled=handled.model_copy(update={"promote": commands.promote}))
            self.refused = self.promote_refusal()
            if self.refused is None:
                self.update(promoted_by_hand=True)
                return self.begin_promotion(
                    "promoted by hand (modeldeploy promote): remaining analysis skipped"
                )
        if self.status.phase == Phase.PROMOTING:
            return self.promoting()
        lost = self.watch_canary()
        if lost is not None:
            return lost
        if commands.paused:
            return self.paused()
        resumed = self.status.phase == Phase.PAUSED and not self.held()
        if resumed and self.status.weight_set_at is not None:
            # Resumed by hand: the step's timers restart, so the analysis sees a full interval.
            self.update(weight_set_at=self.now_ms, last_analysis_at=None)
        if self.held():
            if commands.resume and commands.resume != handled.resume:
                spent = handled.model_copy(update={"resume": commands.resume})
                if self.gate_held():
                    # The model server was just fixed: the gate runs again from the start.
                    self.update(handled=spent, inconclusive_checks=0, gate=None)
                    return self.progress()
                # A fresh interval: the metrics source was just fixed, judge it on new data only.
                self.update(
                    handled=spent,
                    inconclusive_checks=0,
                    weight_set_at=self.now_ms,
                    last_analysis_at=None,
                )
                return self.progress()
            return self.keep_held()
        return self.progress()

    # ------------------------------------------------------------------ canary availability

    def fully_ready(self, replicas: int) -> bool:
        """The canary is rolled out at the step's size, every pod Ready: its traffic may start."""
        canary = self.seen.canary
        return (
            canary is not None
            and canary.revision == self.rev
            and canary.rolled_out
            and canary.ready >= replicas
        )

    def step_ready(self, replicas: int) -> bool:
        """Every pod the step asked for is Ready on this revision, none crash-looping or
        unschedulable: the only canary whose step may end (advance or promotion). Not `rolled_out`,
        which also waits for the Deployment controller to see our last write: a canary already
        growing for the next step (the step's end decided again) must not undo that end."""
        canary = self.seen.canary
        return (
            canary is not None
            and canary.revision == self.rev
            and canary.desired > 0
            and canary.ready >= replicas
            and self.canary_down(strict=True) is None
        )

    def canary_down(self, strict: bool) -> str | None:
        """Why the canary serves nothing now; None while it serves. Down: its Deployment gone,
        scaled to zero, on another revision, or no Ready pod. `strict` (the step's traffic is in
        force, so the canary is at its size): also a pod crash-looping or unschedulable while not
        every pod is Ready, which waiting will not mend."""
        canary = self.seen.canary
        pods = self.seen.canary_pods
        if canary is None:
            return "the canary Deployment is gone"
        if canary.revision != self.rev:
            return f"the canary Deployment runs revision {canary.revision}, not {self.rev}"
        if canary.desired == 0:
            return "the canary Deployment is scaled to 0 replicas"
        if canary.ready == 0:
            detail = pods.crashed or pods.unschedulable or pods.loading
            return f"0/{canary.desired} canary pods ready" + (f": {detail}" if detail else "")
        if strict and canary.ready < canary.desired:
            if pods.crash_looping and pods.crashed:
                return f"{canary.ready}/{canary.desired} canary pods ready, crash-looping: {pods.crashed}"
            if pods.unschedulable:
                return f"{canary.ready}/{canary.desired} canary pods ready: {pods.unschedulable}"
        return None

    def weight_in_force(self) -> int:
        """The share the canary holds while it serves: its step's once that step's traffic is set,
        else the previous step's (the canary is growing for the next one)."""
        step = self.status.step or 0
        if self.status.weight_set_at is not None:
            return self.step_weight(step)
        return self.step_weight(step - 1) if step > 0 else 0

    def watch_canary(self) -> Decision | None:
        """At every pass of a rollout whose canary has taken traffic (or is under analysis):
        a canary that serves nothing loses its share, cohort and mirror in this very pass, and
        is rolled back once it has served nothing for `failureThreshold` intervals. One that
        comes back before that gets its traffic again, and the step's timers start afresh.

        The start of the outage is kept in status (`canaryUnavailableSince`), so a restarted
        operator keeps counting. Returns the rollback, or None with `self.down` set."""
        status = self.status
        live = status.weight_set_at is not None or (status.step or 0) > 0 or (status.canary_weight or 0) > 0
        if not live:
            return None
        down = self.canary_down(strict=status.weight_set_at is not None)
        since = status.canary_unavailable_since
        if down is None:
            if since is not None:
                back: dict[str, object] = {
                    "canary_unavailable_since": None,
                    "canary_weight": self.weight_in_force(),
                }
                if status.weight_set_at is not None:
                    back.update(weight_set_at=self.now_ms, last_analysis_at=None)  # a fresh interval
                self.update(**back)
            return None
        since = since or self.now_ms
        rollout = self.spec.rollout
        bound = parse_duration(rollout.interval) * rollout.failure_threshold
        elapsed = clock.since(since, self.now)
        if elapsed >= bound:
            return self.rollback(
                "CanaryUnavailable",
                f"canary unavailable for {elapsed:.0f}s ({rollout.failure_threshold} intervals of "
                f"{rollout.interval}): {down}",
            )
        self.down, self.down_left = down, bound - elapsed
        self.update(canary_unavailable_since=since, canary_weight=0)
        return None

    def unavailable_note(self, decision: Decision) -> Decision:
        """What a pass with a down canary says, and when it must look again without any event."""
        assert self.down is not None
        self.status = decision.status
        since = self.status.canary_unavailable_since
        assert since is not None
        bound = parse_duration(self.spec.rollout.interval) * self.spec.rollout.failure_threshold
        deadline = clock.parse(since) + datetime.timedelta(seconds=bound)
        message = (
            f"canary unavailable since {since}: {self.down}; its traffic is off, and it is rolled back "
            f"at {clock.iso(deadline)} unless it recovers"
        )
        self.cond(ConditionType.DEGRADED, "True", "CanaryUnavailable", message)
        self.update(message=message)
        wait = (
            self.down_left if decision.requeue_after is None else min(decision.requeue_after, self.down_left)
        )
        return replace(decision, status=self.status, requeue_after=wait)

    def not_ready_hold(self, step: int, replicas: int, weight: int, next_: str) -> Decision:
        """The step is done, but not every canary pod is Ready: no advance and no promotion yet."""
        canary = self.seen.canary
        ready = canary.ready if canary is not None and canary.revision == self.rev else 0
        pods = self.seen.canary_pods
        detail = pods.crashed or pods.unschedulable or pods.loading
        message = (
            f"step {step + 1}/{self.steps_count()} done; {next_} waits for every canary pod to be "
            f"Ready: {ready}/{replicas} ready" + (f" ({detail})" if detail else "")
        )
        self.cond(ConditionType.PROGRESSING, "True", "CanaryNotReady", message)
        return self.hold(step, replicas, weight, POLL_SECONDS, keep_condition=True)

    def promote_refusal(self) -> str | None:
        """A by-hand promote begins only with a canary whose every pod is Ready: promotion hands
        the canary all of its share (BlueGreen: all traffic) while the primary rolls."""
        canary = self.seen.canary
        if canary is not None and self.step_ready(canary.desired):
            return None
        why = self.canary_down(strict=True) or (
            f"{canary.ready}/{canary.desired} canary pods ready"
            if canary is not None
            else "the canary Deployment is gone"
        )
        return (
            f"promote refused: the canary is not fully Ready ({why}); run `modeldeploy promote` again "
            "once it is (or lower rollout.canaryReplicas), or abort"
        )

    def held(self) -> bool:
        progressing = find_condition(self.status.conditions, ConditionType.PROGRESSING.value)
        return (
            self.status.phase == Phase.PAUSED
            and progressing is not None
            and progressing.reason == "InconclusiveLimit"
        )

    def gate_held(self) -> bool:
        """Held by inconclusive gate runs rather than by inconclusive analysis rounds."""
        run = self.status.gate
        return run is not None and run.revision == self.rev and run.state == GateState.INCONCLUSIVE

    def keep_held(self) -> Decision:
        step = self.status.step or 0
        weight = self.status.canary_weight or 0
        canary = self.seen.canary
        replicas = canary.desired if canary is not None else self.canary_replicas(self.step_weight(step))
        self.serving_conditions()
        return Decision(
            self.status,
            [self.primary_plan(), self.canary_plan(replicas)],
            self.split_for(weight),
            self.service_track(weight),
        )

    def first_deployment(self) -> Decision:
        """No stable revision yet: the first version goes straight to the primary, no canary."""
        plan = [TrackPlan(Track.PRIMARY, self.spec, self.rev, _fixed_replicas(self.spec))]
        self.status = steady_status(self.spec, self.parent, self.status, self.seen, self.now_s)
        if self.status.phase == Phase.STABLE:
            self.update(stable_spec=snapshot(self.spec))
        return Decision(self.status, plan)

    def steady(self) -> Decision:
        plan = [TrackPlan(Track.PRIMARY, self.spec, self.rev, _fixed_replicas(self.spec))]
        self.clear_rollout()
        self.status = steady_status(self.spec, self.parent, self.status, self.seen, self.now_s)
        if self.status.phase == Phase.STABLE:
            self.update(stable_spec=snapshot(self.spec))
        return Decision(self.status, plan)

    def clear_rollout(self) -> None:
        self.update(
            canary_revision=None,
            canary_model_version=None,
            canary_weight=None,
            step=None,
            rollout_started_at=None,
            step_started_at=None,
            weight_set_at=None,
            last_analysis_at=None,
            canary_unavailable_since=None,
            failed_checks=None,
            inconclusive_checks=None,
            promoted_by_hand=None,
            analysis=[],
            gate=None,
        )

    def record(self, result: str, reason: str) -> None:
        run = self.status.gate
        judged = run is not None and run.revision == self.status.canary_revision and run.finished_at
        checks = list(run.checks) if judged and run is not None else []  # the last finished run's
        entry = HistoryEntry(
            revision=self.status.canary_revision or "",
            model_version=self.status.canary_model_version or "",
            result=result,
            reason=reason,
            at=self.now_s,
            gate=checks,
        )
        self.update(history=_history(self.status, entry))

    def start(self) -> Decision:
        self.update(
            canary_revision=self.rev,
            canary_model_version=self.spec.model.version,
            step=0,
            canary_weight=0,
            rollout_started_at=self.now_ms,
            step_started_at=self.now_ms,
            weight_set_at=None,
            last_analysis_at=None,
            canary_unavailable_since=None,
            failed_checks=0,
            inconclusive_checks=0,
            promoted_by_hand=None,
            analysis=[],
            gate=None,
        )
        return self.progress()

    # ----------------------------------------------------------------------------- steps

    def progress(self) -> Decision:
        # The steps may have been shortened mid-rollout (rollout settings are not part of the
        # revision): carry on from the last step that still exists.
        step = min(self.status.step or 0, self.steps_count() - 1)
        target = self.step_weight(step)
        replicas = self.canary_replicas(target)
        budget = self.spec.rollout.max_extra_gpus
        needed = extra_gpus(replicas, self.spec.runtime.gpus)
        if budget is not None and needed > budget:
            return self.blocked(step, replicas, needed, budget)
        self.update(phase=Phase.PROGRESSING)
        ready = self.fully_ready(replicas)
        if self.status.weight_set_at is None:
            # The gate runs once the canary is ready, while it takes no traffic yet (weight 0, no
            # cohort, no mirror). A result that came in is judged even if the canary is no longer
            # all ready (a pod restarting): the verdict was reached on a ready canary.
            if step == 0 and (ready or self.gate_reported()):
                gated = self.gate_stage(GateStage.PRE_TRAFFIC, step, replicas, self.status.canary_weight or 0)
                if gated is not None:
                    return gated
            if not ready:
                return self.wait_for_canary(step, replicas)
            self.update(weight_set_at=self.now_ms, canary_weight=target, last_analysis_at=None)
        weight = self.status.canary_weight or 0
        if self.down is not None:
            # No analysis of a canary known to serve nothing: its missing series are not "no data",
            # the down canary is the verdict (watch_canary rolls it back at its bound).
            self.cancel_gate("cancelled: the canary became unavailable")
            self.cond(ConditionType.PROGRESSING, "True", "CanaryUnavailable", f"step {step + 1}: {self.down}")
            return self.hold(step, replicas, 0, None, keep_condition=True)
        route_held = self.route_held(step, replicas, weight)
        if route_held is not None:
            return route_held
        run = self.status.gate
        if run is not None and run.revision == self.rev and run.stage == GateStage.MIRROR:
            # The analysis passed at the last step; the mirrored-phase gate decides the promotion.
            gated = self.gate_stage(GateStage.MIRROR, step, replicas, weight)
            if gated is not None:
                return gated
            if not self.step_ready(replicas):
                return self.not_ready_hold(step, replicas, weight, "promoting")
            return self.begin_promotion(self.passed() + " (again on the mirrored phase)")
        elapsed = clock.since(self.status.last_analysis_at or self.status.weight_set_at, self.now)
        interval = parse_duration(self.spec.rollout.interval)
        if elapsed < interval:
            return self.hold(step, replicas, weight, interval - elapsed)
        round_ = f"{self.rev}/{step}/{self.status.last_analysis_at or self.status.weight_set_at}"
        done = self.seen.analysis
        if done is None or done.round != round_:
            # Looked at again after the round's deadline, in case its worker was lost.
            wait = ROUND_DEADLINE_SECONDS + ROUND_SLACK_SECONDS
            return self.hold(step, replicas, weight, wait, analysis=round_)
        return self.judge(step, replicas, weight, interval, done.results)

    def route_held(self, step: int, replicas: int, weight: int) -> Decision | None:
        """The Gateway has not accepted the route in force: the canary may be getting no traffic,
        so the step holds and no analysis round counts. Once accepted, the step's interval and
        pause start over, so that they measure traffic the Gateway routed (docs/routing.md)."""
        hold = self.seen.route
        progressing = find_condition(self.status.conditions, ConditionType.PROGRESSING.value)
        was_held = progressing is not None and progressing.reason in ROUTE_HOLD_REASONS
        if hold is None:
            if was_held:
                self.update(weight_set_at=self.now_ms, last_analysis_at=None)
            return None
        self.cond(ConditionType.PROGRESSING, "True", hold.reason, f"holding step {step + 1}: {hold.message}")
        return self.hold(step, replicas, weight, POLL_SECONDS, keep_condition=True)

    def judge(
        self, step: int, replicas: int, weight: int, interval: float, results: list[MetricResult]
    ) -> Decision:
        self.update(analysis=results, last_analysis_at=self.now_ms)
        failing = [r for r in results if r.verdict == Verdict.FAIL]
        unsure = [r for r in results if r.verdict == Verdict.INCONCLUSIVE]
        if failing:
            failed = (self.status.failed_checks or 0) + 1
            self.update(failed_checks=failed, inconclusive_checks=0)
            reasons = "; ".join(f"{r.name}: {r.reason}" for r in failing)
            if failed >= self.spec.rollout.failure_threshold:
                return self.rollback("AnalysisFailed", f"{failed} failed checks: {reasons}")
            return self.hold(step, replicas, weight, interval, note=f"check failed ({failed}): {reasons}")
        if unsure and self.awaiting_discovery(results):
            waited = clock.since(self.status.weight_set_at, self.now)
            reasons = "; ".join(f"{r.name}: {r.reason}" for r in unsure)
            self.cond(
                ConditionType.PROGRESSING,
                "True",
                "AnalysisInconclusive",
                f"holding step {step + 1}: no canary measurement yet {waited:.0f}s after its traffic "
                f"started (not counted for the first {DISCOVERY_GRACE_SECONDS:.0f}s: Prometheus may "
                f"not have discovered the new pods): {reasons}",
            )
            return self.hold(step, replicas, weight, interval, keep_condition=True)
        if unsure:
            count = (self.status.inconclusive_checks or 0) + 1
            self.update(inconclusive_checks=count)
            reasons = "; ".join(f"{r.name}: {r.reason}" for r in unsure)
            limit = self.spec.rollout.analysis.inconclusive
            if count >= limit.limit:
                if limit.action == InconclusiveAction.ROLLBACK:
                    return self.rollback("AnalysisInconclusive", f"{count} inconclusive checks: {reasons}")
                return self.held_inconclusive(step, replicas, weight, count, reasons)
            # Inconclusive never promotes: the step holds, and the condition says which metric.
            self.cond(
                ConditionType.PROGRESSING,
                "True",
                "AnalysisInconclusive",
                f"holding step {step + 1}: {count}/{limit.limit} inconclusive checks: {reasons}",
            )
            return self.hold(step, replicas, weight, interval, keep_condition=True)
        self.update(inconclusive_checks=0)
        remaining_pause = self.pause_of(step) - clock.since(self.status.weight_set_at, self.now)
        if remaining_pause > 0:
            return self.hold(step, replicas, weight, min(interval, remaining_pause), note="pausing")
        last = step + 1 >= self.steps_count()
        if not self.step_ready(replicas):
            return self.not_ready_hold(step, replicas, weight, "promoting" if last else f"step {step + 2}")
        if last:
            gates = self.spec.rollout.gates
            if self.spec.rollout.strategy == Strategy.SHADOW and gates is not None and gates.on_mirror:
                gated = self.gate_stage(GateStage.MIRROR, step, replicas, weight)
                if gated is not None:
                    return gated
            return self.begin_promotion(self.passed())
        self.update(step=step + 1, step_started_at=self.now_ms, weight_set_at=None, last_analysis_at=None)
        return self.progress()

    def passed(self) -> str:
        """Why a rollout that went through every step is promoted, as its history says it."""
        if self.spec.rollout.analysis.metrics:
            reason = "analysis passed at every step"
        else:
            reason = "every step held its interval with the canary ready (no analysis metrics set)"
        return reason + ("; the model-quality gate passed" if self.spec.rollout.gates is not None else "")

    def awaiting_discovery(self, results: list[MetricResult]) -> bool:
        """A round before the canary's series can exist: not counted (DISCOVERY_GRACE_SECONDS).

        Decided from status alone (`weightSetAt`, the round's time), so a restart changes nothing.
        """
        if not canary_unmeasured(results):
            return False
        return clock.since(self.status.weight_set_at, self.now) < DISCOVERY_GRACE_SECONDS

    def wait_for_canary(self, step: int, replicas: int) -> Decision:
        waited = clock.since(self.status.step_started_at, self.now)
        deadline = parse_duration(self.spec.rollout.progress_deadline)
        pods = self.seen.canary_pods
        canary = self.seen.canary
        ready = canary.ready if canary is not None and canary.revision == self.rev else 0
        if pods.crash_looping and pods.crashed:
            # Triton runs with --exit-on-error: a pod that keeps restarting will not load the model
            # by waiting longer, so there is no point holding out until the deadline.
            return self.rollback("CanaryCrashed", f"canary crash-looping: {pods.crashed}")
        if waited >= deadline:
            if pods.crashed:
                return self.rollback(
                    "CanaryCrashed",
                    f"canary not ready after {self.spec.rollout.progress_deadline}: {pods.crashed}",
                )
            if pods.unschedulable:
                return self.rollback(
                    "CanaryUnschedulable",
                    f"canary not ready after {self.spec.rollout.progress_deadline}: {pods.unschedulable}",
                )
            detail = pods.loading or f"{ready}/{replicas} replicas ready"
            return self.rollback(
                "ModelLoadTimeout",
                f"canary still loading after {self.spec.rollout.progress_deadline} (slow model load, "
                f"no crash seen): {detail}; raise rollout.progressDeadline if the model needs longer",
            )
        weight = self.status.canary_weight or 0
        detail = pods.crashed or pods.unschedulable or pods.loading or ""
        message = f"step {step + 1}/{self.steps_count()}: waiting for the canary, {ready}/{replicas} ready"
        self.cond(
            ConditionType.PROGRESSING, "True", "CanaryStarting", message + (f"; {detail}" if detail else "")
        )
        return self.hold(step, replicas, weight, min(POLL_SECONDS, deadline - waited), keep_condition=True)

    def hold(
        self,
        step: int,
        replicas: int,
        weight: int,
        requeue: float | None,
        *,
        analysis: str | None = None,
        keep_condition: bool = False,
        note: str = "",
    ) -> Decision:
        """Stay at this step: the canary at its size, traffic at the weight in force."""
        self.serving_conditions()
        if not keep_condition:
            total = self.steps_count()
            message = f"step {step + 1}/{total}: {self.describe_traffic(weight)}"
            self.cond(ConditionType.PROGRESSING, "True", "Canary", message + (f"; {note}" if note else ""))
        self.update(message=self.progressing_message(step, weight))
        return Decision(
            self.status,
            [self.primary_plan(), self.canary_plan(replicas)],
            self.split_for(weight),
            self.service_track(weight),
            analysis=analysis,
            requeue_after=requeue,
        )

    def describe_traffic(self, weight: int) -> str:
        strategy = self.spec.rollout.strategy
        if strategy == Strategy.SHADOW:
            return "canary receives mirrored traffic only"
        if strategy == Strategy.BLUE_GREEN:
            return "canary scaled up with no traffic, under analysis"
        text = f"{weight}% of traffic to the canary"
        if not _routed(self.spec) and self.seen.canary is not None and self.seen.primary is not None:
            real = effective_ratio_weight(self.seen.primary.ready, self.seen.canary.ready)
            text += f" (replica ratio: {real}% of ready pods)"
        if self.spec.rollout.match:
            text += ", plus the header-matched cohort"
        return text

    def progressing_message(self, step: int, weight: int) -> str:
        return (
            f"rolling out {self.spec.model.name} version {self.spec.model.version} ({self.rev}): "
            f"step {step + 1}/{self.steps_count()}, {self.describe_traffic(weight)}"
        )

    def serving_conditions(self) -> None:
        primary = self.seen.primary
        ready = primary.ready if primary else 0
        message = f"primary: {ready}/{primary.desired if primary else 0} replicas ready"
        self.cond(ConditionType.READY, "True" if ready > 0 else "False", "PrimaryServing", message)
        if self.down is None:  # else decide() says CanaryUnavailable: no flip through Healthy between
            self.cond(ConditionType.DEGRADED, "False", "Healthy", "")

    def held_inconclusive(self, step: int, replicas: int, weight: int, count: int, reasons: str) -> Decision:
        self.update(phase=Phase.PAUSED)
        self.serving_conditions()
        message = (
            f"held at step {step + 1}: {count} inconclusive checks reached the limit ({reasons}); "
            "promote, abort or retry by hand, or fix the metrics source and resume"
        )
        self.cond(ConditionType.PROGRESSING, "False", "InconclusiveLimit", message)
        self.update(message=message)
        return Decision(
            self.status,
            [self.primary_plan(), self.canary_plan(replicas)],
            self.split_for(weight),
            self.service_track(weight),
        )

    def paused(self) -> Decision:
        step = self.status.step or 0
        weight = self.status.canary_weight or 0
        canary = self.seen.canary
        replicas = canary.desired if canary is not None else 0
        self.update(
            phase=Phase.PAUSED, message=f"paused by hand at step {step + 1} ({self.describe_traffic(weight)})"
        )
        self.serving_conditions()
        self.cond(
            ConditionType.PROGRESSING, "False", "Paused", "paused by the modeldeploy.io/paused annotation"
        )
        return Decision(
            self.status,
            [self.primary_plan(), self.canary_plan(replicas)],
            self.split_for(weight),
            self.service_track(weight),
        )

    def blocked(self, step: int, replicas: int, needed: int, budget: int) -> Decision:
        canary = self.seen.canary
        current = canary.desired if canary is not None and canary.revision == self.rev else 0
        message = (
            f"step {step + 1} needs {replicas} canary replicas = {needed} extra GPUs, "
            f"over rollout.maxExtraGPUs {budget}; the primary keeps serving. Raise the budget, "
            "set rollout.canaryReplicas, or free GPUs"
        )
        self.update(phase=Phase.BLOCKED, message=message)
        self.serving_conditions()
        self.cond(ConditionType.PROGRESSING, "False", "GPUBudgetExceeded", message)
        weight = self.status.canary_weight or 0
        plans = [self.primary_plan()]
        if current > 0:
            plans.append(self.canary_plan(current))
        return Decision(self.status, plans, self.split_for(weight), self.service_track(weight))

    # ---------------------------------------------------------------------------- gates

    def gate_stage(self, stage: GateStage, step: int, replicas: int, weight: int) -> Decision | None:
        """The model-quality gate of `stage`: None once it has passed (or with no gates), so the
        caller carries on; else the decision that holds the step while a run is under way, or
        that ends the rollout on its verdict. Three-valued like the analysis: Fail rolls back,
        Inconclusive holds (and counts toward `analysis.inconclusive`), never promotes."""
        gates = self.spec.rollout.gates
        if gates is None:
            return None
        run = self.status.gate
        if run is None or run.revision != self.rev or run.stage != stage:
            return self.start_gate(stage, step, replicas, weight)
        if run.finished_at is None:
            if not self.gate_reported():
                return self.gate_running(run, step, replicas, weight)
            assert self.seen.gate is not None
            return self.gate_finished(run, self.seen.gate, step, replicas, weight)
        if run.state == GateState.PASSED:
            return None
        if run.state == GateState.FAILED:
            return self.rollback("GateFailed", f"{self.gate_name(run)} failed: {run.message}")
        # Inconclusive: a new run once an interval has passed since the last one ended.
        wait = parse_duration(self.spec.rollout.interval) - clock.since(run.finished_at, self.now)
        if wait > 0:
            return self.hold(step, replicas, weight, wait, keep_condition=True)
        return self.start_gate(stage, step, replicas, weight)

    def gate_reported(self) -> bool:
        """The worker's result for the run status.gate names is in."""
        run, result = self.status.gate, self.seen.gate
        return (
            run is not None
            and run.finished_at is None
            and result is not None
            and (result.revision, result.started_at) == (run.revision, run.started_at)
        )

    @staticmethod
    def gate_name(run: GateRun) -> str:
        return "the mirrored-phase gate" if run.stage == GateStage.MIRROR else "the gate"

    def start_gate(self, stage: GateStage, step: int, replicas: int, weight: int) -> Decision:
        run = GateRun(revision=self.rev, stage=stage, state=GateState.RUNNING, started_at=self.now_ms)
        self.update(gate=run)
        return self.gate_running(run, step, replicas, weight)

    def gate_running(self, run: GateRun, step: int, replicas: int, weight: int) -> Decision:
        gates = self.spec.rollout.gates
        assert gates is not None
        where = (
            "while it receives mirrored traffic"
            if run.stage == GateStage.MIRROR
            else "before it receives any traffic"
        )
        message = (
            f"step {step + 1}/{self.steps_count()}: model-quality gate running on the canary "
            f"{where}: {', '.join(check_names(gates))}"
        )
        self.cond(ConditionType.PROGRESSING, "True", "GateRunning", message)
        requeue = parse_duration(gates.timeout) + GATE_SLACK_SECONDS
        decision = self.hold(step, replicas, weight, requeue, keep_condition=True)
        self.update(message=message)
        return replace(decision, status=self.status, gate=run)

    def gate_finished(
        self, run: GateRun, result: GateResult, step: int, replicas: int, weight: int
    ) -> Decision | None:
        verdict = Verdict(result.verdict)
        done = run.model_copy(
            update={
                "finished_at": self.now_ms,
                "verdict": verdict,
                "state": GateState.of(verdict),
                "message": result.message,
                "checks": list(result.checks),
            }
        )
        self.update(gate=done)
        name = self.gate_name(done)
        if verdict == Verdict.PASS:
            self.update(inconclusive_checks=0)
            return None
        if verdict == Verdict.FAIL:
            return self.rollback("GateFailed", f"{name} failed: {result.message}")
        count = (self.status.inconclusive_checks or 0) + 1
        self.update(inconclusive_checks=count)
        limit = self.spec.rollout.analysis.inconclusive
        reasons = f"{name}: {result.message}"
        if count >= limit.limit:
            if limit.action == InconclusiveAction.ROLLBACK:
                return self.rollback("GateInconclusive", f"{count} inconclusive checks: {reasons}")
            return self.held_inconclusive(step, replicas, weight, count, reasons)
        interval = parse_duration(self.spec.rollout.interval)
        self.cond(
            ConditionType.PROGRESSING,
            "True",
            "GateInconclusive",
            f"holding step {step + 1}: {count}/{limit.limit} inconclusive checks, the gate runs again in "
            f"{self.spec.rollout.interval}: {reasons}",
        )
        return self.hold(step, replicas, weight, interval, keep_condition=True)

    def cancel_gate(self, why: str) -> None:
        run = self.status.gate
        if run is not None and run.finished_at is None:
            cancelled = run.model_copy(
                update={"finished_at": self.now_ms, "state": GateState.CANCELLED, "message": why}
            )
            self.update(gate=cancelled)

    # ------------------------------------------------------------------------ promotion

    def begin_promotion(self, reason: str) -> Decision:
        self.cancel_gate(f"cancelled: {reason}")
        self.update(phase=Phase.PROMOTING, step_started_at=self.now_ms, message=reason)
        self.cond(ConditionType.PROGRESSING, "True", "Promoting", reason)
        return self.promoting(reason)

    def promoting(self, reason: str | None = None) -> Decision:
        """The primary moves to the new revision while every request goes to the ready canary;
        once the primary is ready, traffic returns to it and the canary goes away."""
        primary = self.seen.primary
        canary = self.seen.canary
        canary_size = canary.desired if canary is not None and canary.desired > 0 else 1
        new_primary = TrackPlan(Track.PRIMARY, self.spec, self.rev, _fixed_replicas(self.spec))
        if primary is not None and primary.revision == self.rev and primary.rolled_out and primary.ready > 0:
            why = "promoted by hand" if self.status.promoted_by_hand else (reason or self.passed())
            self.record("Promoted", why)
            self.update(
                stable_revision=self.rev,
                stable_model_version=self.spec.model.version,
                stable_spec=snapshot(self.spec),
            )
            return self.steady()
        waited = clock.since(self.status.step_started_at, self.now)
        deadline = parse_duration(self.spec.rollout.progress_deadline)
        if waited >= deadline:
            return self.rollback(
                "PromotionTimeout",
                "the primary did not become ready on the new revision within "
                f"{self.spec.rollout.progress_deadline}",
            )
        weight = self.promotion_weight()
        serving = canary is not None and canary.revision == self.rev and canary.ready > 0
        if not serving:
            # The canary died under promotion: the primary (old pods and new) takes every request.
            weight = 0
        self.update(phase=Phase.PROMOTING, canary_weight=weight)
        self.serving_conditions()
        ready = primary.ready if primary is not None else 0
        message = (
            f"promoting: primary moving to revision {self.rev} ({ready} ready); "
            f"{self.describe_traffic(weight)} meanwhile"
        )
        self.cond(ConditionType.PROGRESSING, "True", "Promoting", message)
        self.update(message=message)
        return Decision(
            self.status,
            [new_primary, self.canary_plan(canary_size)],
            # The A/B cohort stays on the canary until the primary runs the same revision.
            Split(canary_weight=weight, match=tuple(self.spec.rollout.match) if serving else ()),
            self.service_track(weight),
            requeue_after=min(POLL_SECONDS, deadline - waited),
        )

    def promotion_weight(self) -> int:
        """Traffic while the primary rolls to the new revision.

        BlueGreen switches everything to the fully sized canary at once; Canary keeps the last
        step's weight (the canary is sized for that share, and the primary's rolling update never
        drops capacity); Shadow never served real responses from the canary, so none now either.
        """
        strategy = self.spec.rollout.strategy
        if strategy == Strategy.BLUE_GREEN:
            return 100
        if strategy == Strategy.SHADOW:
            return 0
        return self.status.canary_weight or 0

    # ------------------------------------------------------------------------- rollback

    def rollback(self, reason: str, message: str) -> Decision:
        """All traffic to the primary, the canary scaled to zero; the spec is left as it is."""
        self.cancel_gate(f"cancelled: {message}")
        self.record("RolledBack", message)
        self.update(
            phase=Phase.ROLLED_BACK,
            canary_weight=0,
            weight_set_at=None,
            canary_unavailable_since=None,
            message=message,
        )
        return self.rolled_back_hold(reason, message)

    def rolled_back_hold(self, reason: str | None = None, message: str | None = None) -> Decision:
        if reason is not None and message is not None:
            self.cond(ConditionType.DEGRADED, "True", reason, message)
            self.cond(
                ConditionType.PROGRESSING,
                "False",
                "RolledBack",
                f"revision {self.rev} rolled back; change the spec or run `modeldeploy retry` to try again",
            )
        primary = self.seen.primary
        ready = primary.ready if primary else 0
        self.cond(
            ConditionType.READY,
            "True" if ready > 0 else "False",
            "PrimaryServing",
            f"primary (stable revision {self.status.stable_revision}): {ready} replicas ready",
        )
        return Decision(self.status, [self.primary_plan(), self.canary_plan(0)], STEADY, Track.PRIMARY)


def decide(
    spec: ModelDeploymentSpec,
    parent: ObjectRef,
    status: ModelDeploymentStatus,
    seen: Observations,
    now: datetime.datetime,
) -> Decision:
    return _Machine(spec, parent, status, seen, now).decide()
