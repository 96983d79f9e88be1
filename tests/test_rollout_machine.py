"""Sequence tests of the rollout state machine: observations at each tick -> phase, weight, plan.

Each case starts from a Stable v1 and a spec that now asks for v2. A tick says what the world
looks like (is the canary ready? crashing? what does the analysis say? any command?) and what
the machine must decide. The driver plays the cluster: Deployments take the sizes and revisions
the previous decision asked for, ready or not as the tick says.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from modeldeploy.analysis.verdicts import ProviderFailure, Result, judge_round
from modeldeploy.api.resource import ObjectRef, parse_spec
from modeldeploy.api.spec import Analysis
from modeldeploy.api.status import GateCheck, MetricResult, ModelDeploymentStatus, Phase, Verdict
from modeldeploy.render.names import Track
from modeldeploy.render.revision import revision
from modeldeploy.rollout import clock
from modeldeploy.rollout.machine import Decision, decide, snapshot
from modeldeploy.rollout.observe import (
    AnalysisRound,
    Commands,
    DeploymentState,
    GateResult,
    Observations,
    PodsSummary,
    apply_failure,
)
from modeldeploy.rollout.steady import applied_status

T0 = datetime.datetime(2026, 11, 24, 12, 0, 0, tzinfo=datetime.UTC)
PARENT = ObjectRef(name="scorer", namespace="ml", uid="u-1", generation=2)


def spec(version: str = "2", traffic: dict[str, Any] | None = None, **rollout: Any) -> Any:
    raw: dict[str, Any] = {
        "model": {"name": "scorer", "version": version, "storageUri": "s3://models/scorer"},
        "runtime": {"gpus": 1},
        "scaling": {"minReplicas": 4, "maxReplicas": 4},
        "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}} if traffic is None else traffic,
        "rollout": {
            "steps": [{"weight": 10}, {"weight": 50}],
            "interval": "1m",
            "failureThreshold": 2,
            "progressDeadline": "5m",
            "analysis": {"metrics": [{"name": "ok", "template": "successRate", "min": 0.99}]},
            **rollout,
        },
    }
    return parse_spec(raw)


V1 = spec("1")


def stable_status() -> ModelDeploymentStatus:
    return ModelDeploymentStatus(
        phase=Phase.STABLE,
        stable_revision=revision(V1),
        stable_model_version="1",
        stable_spec=snapshot(V1),
    )


@dataclass(frozen=True)
class Tick:
    at: float  # seconds after T0
    # absent | loading | ready | crashed | looping | unschedulable | zero (scaled to 0 by hand) |
    # partial (1 pod Ready of its size, the rest loading) | partial-looping (the rest crash-looping)
    canary: str = "ready"
    primary: str = "ready"  # ready | rolling (on the new revision, not ready yet) | stable-only
    # pass | fail | inconclusive | unseen | thin | down (_RAW), when the machine asks
    analysis: str | None = None
    commands: Commands = field(default_factory=Commands)
    # Expectations (None: not checked)
    phase: Phase | None = None
    weight: int | None = None
    step: int | None = None
    canary_replicas: int | None = None  # -1: no canary track in the plan
    asked_analysis: bool | None = None
    reason: str | None = None  # Degraded/Progressing condition reason that must appear
    history: str | None = None  # result of the newest history entry
    # The gate worker's report for the run status.gate names: pass | fail | inconclusive | stale
    # (a result of an older run, which must be ignored); None: nothing reported yet.
    gate: str | None = None
    gate_state: str | None = None  # status.gate.state that must follow ("-": no gate in status)
    gate_run: bool | None = None  # whether the decision wants a gate run going
    mirror: bool | None = None  # whether the split mirrors to the canary
    cohort: bool | None = None  # whether the split pins the A/B cohort to the canary
    service: str | None = None  # the main Service's track: primary | canary | both
    unavailable_since: float | None = None  # status.canaryUnavailableSince, seconds after T0 (-1: unset)


def _deployment(revision_: str, size: int, ready: bool) -> DeploymentState:
    return DeploymentState(
        desired=size,
        replicas=size,
        ready=size if ready else 0,
        updated=size,
        available=size if ready else 0,
        up_to_date=True,
        deadline_exceeded=False,
        revision=revision_,
    )


# Raw provider results for one round of the "ok" metric, as the verdicts layer judges them.
_RAW: dict[str, dict[str, Result]] = {
    # Prometheus has not discovered or scraped the canary's new pods: its queries match nothing.
    "unseen": {"metric:ok:canary": None, "samples:canary": None},
    # Measured, on too few requests: the series exist, so this counts.
    "thin": {"metric:ok:canary": 0.9, "samples:canary": 7.0},
    "down": {
        "metric:ok:canary": ProviderFailure("Prometheus unreachable: connection refused", unreachable=True),
        "samples:canary": ProviderFailure("Prometheus unreachable: connection refused", unreachable=True),
    },
}


def _verdict(kind: str) -> list[MetricResult]:
    if kind in _RAW:
        metrics = [{"name": "ok", "template": "successRate", "min": 0.99}]
        return judge_round(Analysis.model_validate({"metrics": metrics}), _RAW[kind], "t")
    verdict = {"pass": Verdict.PASS, "fail": Verdict.FAIL, "inconclusive": Verdict.INCONCLUSIVE}[kind]
    value = {"pass": 0.999, "fail": 0.9, "inconclusive": None}[kind]
    return [MetricResult(name="ok", value=value, verdict=verdict, reason=kind, at="t")]


def run_ticks(target: Any, ticks: list[Tick], status: ModelDeploymentStatus | None = None) -> list[Decision]:
    status = status or stable_status()
    new_rev = revision(target)
    last: Decision | None = None
    decisions = []
    for tick in ticks:
        plan = {p.track: p for p in last.tracks} if last else {}
        canary_size = plan[Track.CANARY].replicas if Track.CANARY in plan else 0
        canary = None
        if tick.canary == "zero":
            canary = replace(_deployment(new_rev, 0, True), replicas=canary_size)
        elif tick.canary in ("partial", "partial-looping") and canary_size:
            canary = replace(_deployment(new_rev, canary_size, False), ready=1, available=1)
        elif tick.canary != "absent" and canary_size:
            canary = _deployment(new_rev, canary_size or 0, tick.canary == "ready")
        pods = PodsSummary(
            crashed="pod c-1: container triton CrashLoopBackOff"
            if tick.canary in ("crashed", "looping", "partial-looping")
            else None,
            crash_looping=tick.canary in ("looping", "partial-looping"),
            unschedulable="pod c-1: 0/3 nodes: Insufficient nvidia.com/gpu"
            if tick.canary == "unschedulable"
            else None,
            loading="pod c-1: triton still loading the model"
            if tick.canary in ("loading", "partial")
            else None,
        )
        primary_rev = plan[Track.PRIMARY].revision if Track.PRIMARY in plan else revision(V1)
        primary = _deployment(primary_rev, 4, tick.primary != "rolling")
        seen = Observations(
            primary=primary, canary=canary, canary_pods=pods, commands=tick.commands, gate=_gate(tick, status)
        )
        now = T0 + datetime.timedelta(seconds=tick.at)
        decision = decide(target, PARENT, status, seen, now)
        asked = decision.analysis is not None
        if decision.analysis is not None:
            assert tick.analysis is not None, (
                f"t={tick.at}: the machine asked for analysis, the tick has none"
            )
            # The analysis worker's round, finished before the next pass (at the same instant).
            seen = replace(seen, analysis=AnalysisRound(decision.analysis, _verdict(tick.analysis)))
            decision = decide(target, PARENT, status, seen, now)
            assert decision.analysis is None
        got = decision.status
        where = f"t={tick.at}"
        if tick.phase is not None:
            assert got.phase == tick.phase, f"{where}: phase {got.phase}, message {got.message}"
        if tick.weight is not None:
            assert decision.split.canary_weight == tick.weight, f"{where}: weight {decision.split}"
        if tick.step is not None:
            assert got.step == tick.step, f"{where}: step {got.step}"
        if tick.asked_analysis is not None:
            assert asked == tick.asked_analysis, f"{where}: asked for analysis: {asked}"
        if tick.canary_replicas is not None:
            tracks = {p.track: p for p in decision.tracks}
            if tick.canary_replicas == -1:
                assert Track.CANARY not in tracks, f"{where}: canary still planned"
            else:
                assert tracks[Track.CANARY].replicas == tick.canary_replicas, (
                    f"{where}: {tracks[Track.CANARY]}"
                )
        if tick.reason is not None:
            reasons = {c.reason for c in got.conditions}
            assert tick.reason in reasons, f"{where}: reasons {reasons}"
        if tick.history is not None:
            assert got.history and got.history[0].result == tick.history, f"{where}: history {got.history}"
        if tick.gate_state is not None:
            state = got.gate.state if got.gate is not None else "-"
            assert state == tick.gate_state, f"{where}: gate {got.gate}"
        if tick.gate_run is not None:
            assert (decision.gate is not None) == tick.gate_run, f"{where}: gate run {decision.gate}"
        if decision.gate is not None:
            assert decision.gate == got.gate, f"{where}: the run wanted is the one status names"
        if tick.mirror is not None:
            assert decision.split.mirror == tick.mirror, f"{where}: split {decision.split}"
        if tick.cohort is not None:
            assert bool(decision.split.match) == tick.cohort, f"{where}: split {decision.split}"
        if tick.service is not None:
            names = {Track.PRIMARY: "primary", Track.CANARY: "canary", None: "both"}
            assert names[decision.service_track] == tick.service, f"{where}: {decision.service_track}"
        if tick.unavailable_since is not None:
            since = got.canary_unavailable_since
            expected = (
                None
                if tick.unavailable_since < 0
                else clock.iso_ms(T0 + datetime.timedelta(seconds=tick.unavailable_since))
            )
            assert since == expected, f"{where}: canaryUnavailableSince {since}"
        status = got
        last = decision
        decisions.append(decision)
    return decisions


_GATE_CHECKS = {
    "pass": GateCheck(name="accuracy", value=0.97, threshold=0.92, verdict=Verdict.PASS, message="ok"),
    "fail": GateCheck(
        name="accuracy",
        value=0.6,
        threshold=0.92,
        verdict=Verdict.FAIL,
        message="accuracy 0.6 < min 0.92 (45 labelled)",
    ),
    "inconclusive": GateCheck(
        name="accuracy", threshold=0.92, verdict=Verdict.INCONCLUSIVE, message="canary unreachable"
    ),
}


def _gate(tick: Tick, status: ModelDeploymentStatus) -> GateResult | None:
    run = status.gate
    if tick.gate is None or run is None:
        return None
    started = "2000-01-01T00:00:00.000Z" if tick.gate == "stale" else run.started_at
    check = _GATE_CHECKS["pass" if tick.gate == "stale" else tick.gate]
    message = f"{check.name}: {check.message}"
    return GateResult(run.revision, started, Verdict(check.verdict), message, (check,))


def gated(**rollout: Any) -> Any:
    gates = {
        "goldenSet": {"configMapKeyRef": {"name": "golden", "key": "golden.jsonl"}},
        "minAccuracy": 0.92,
        **rollout.pop("gates", {}),
    }
    return spec(gates=gates, **rollout)


ONE_INCONCLUSIVE = {
    "metrics": [{"name": "ok", "template": "successRate", "min": 0.99}],
    "inconclusive": {"limit": 1, "action": "Hold"},
}

CASES: dict[str, tuple[Any, list[Tick]]] = {
    "good canary walks the steps and is promoted": (
        spec(),
        [
            Tick(0, canary="absent", phase=Phase.PROGRESSING, weight=0, step=0, canary_replicas=1),
            Tick(5, canary="ready", weight=10, asked_analysis=False),
            Tick(30, weight=10, asked_analysis=False),  # interval not yet over
            Tick(66, analysis="pass", step=1, weight=10, canary_replicas=2),  # next step: canary grows first
            Tick(70, canary="ready", weight=50, step=1),
            Tick(131, analysis="pass", phase=Phase.PROMOTING, weight=50),
            Tick(135, primary="rolling", phase=Phase.PROMOTING, weight=50),
            Tick(150, primary="ready", phase=Phase.STABLE, weight=0, canary_replicas=-1, history="Promoted"),
        ],
    ),
    "failing canary rolls back at the failure threshold": (
        spec(),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(66, analysis="fail", phase=Phase.PROGRESSING, weight=10, step=0),
            Tick(
                127,
                analysis="fail",
                phase=Phase.ROLLED_BACK,
                weight=0,
                canary_replicas=0,
                history="RolledBack",
                reason="AnalysisFailed",
            ),
            Tick(200, phase=Phase.ROLLED_BACK, weight=0, asked_analysis=False),  # stays until spec or retry
        ],
    ),
    "inconclusive holds and never promotes, then holds at the limit": (
        spec(
            analysis={
                "metrics": [{"name": "ok", "template": "successRate", "min": 0.99}],
                "inconclusive": {"limit": 2, "action": "Hold"},
            }
        ),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(66, analysis="inconclusive", phase=Phase.PROGRESSING, step=0, reason="AnalysisInconclusive"),
            Tick(
                127,
                analysis="inconclusive",
                phase=Phase.PAUSED,
                step=0,
                weight=10,
                reason="InconclusiveLimit",
            ),
            Tick(400, phase=Phase.PAUSED, step=0, asked_analysis=False),
            Tick(401, commands=Commands(resume="r1"), phase=Phase.PROGRESSING, step=0),
        ],
    ),
    "inconclusive limit with Rollback rolls back": (
        spec(
            analysis={
                "metrics": [{"name": "ok", "template": "successRate", "min": 0.99}],
                "inconclusive": {"limit": 1, "action": "Rollback"},
            }
        ),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(66, analysis="inconclusive", phase=Phase.ROLLED_BACK, reason="AnalysisInconclusive"),
        ],
    ),
    "a crashing canary rolls back at the deadline, named a crash": (
        spec(),
        [
            Tick(0, canary="absent"),
            Tick(60, canary="crashed", phase=Phase.PROGRESSING, weight=0, reason="CanaryStarting"),
            Tick(301, canary="crashed", phase=Phase.ROLLED_BACK, reason="CanaryCrashed"),
        ],
    ),
    "a crash-looping canary rolls back at once, not at the deadline": (
        spec(),
        [
            Tick(0, canary="absent"),
            Tick(40, canary="looping", phase=Phase.ROLLED_BACK, reason="CanaryCrashed", history="RolledBack"),
        ],
    ),
    "a slow model load rolls back at the deadline, named a slow load": (
        spec(),
        [
            Tick(0, canary="absent"),
            Tick(301, canary="loading", phase=Phase.ROLLED_BACK, reason="ModelLoadTimeout"),
        ],
    ),
    "a GPU budget that cannot fit blocks instead of failing": (
        spec(maxExtraGPUs=1),
        [
            Tick(0, canary="absent", phase=Phase.PROGRESSING, canary_replicas=1),
            Tick(5, weight=10),
            Tick(
                66,
                analysis="pass",
                phase=Phase.BLOCKED,
                step=1,
                weight=10,
                canary_replicas=1,
                reason="GPUBudgetExceeded",
            ),
            Tick(200, phase=Phase.BLOCKED, weight=10),
        ],
    ),
    "promote by hand skips the remaining analysis": (
        spec(),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(10, commands=Commands(promote="p1"), phase=Phase.PROMOTING),
            Tick(
                20, commands=Commands(promote="p1"), primary="ready", phase=Phase.STABLE, history="Promoted"
            ),
        ],
    ),
    "abort by hand rolls back": (
        spec(),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(10, commands=Commands(abort="a1"), phase=Phase.ROLLED_BACK, weight=0, reason="Aborted"),
            Tick(
                20,
                commands=Commands(abort="a1", retry="r1"),
                phase=Phase.PROGRESSING,
                step=0,
                canary="absent",
            ),
        ],
    ),
    "pause holds the step and its timers": (
        spec(),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(66, commands=Commands(paused=True), phase=Phase.PAUSED, weight=10, asked_analysis=False),
            Tick(300, commands=Commands(paused=True), phase=Phase.PAUSED, asked_analysis=False),
            Tick(301, phase=Phase.PROGRESSING, asked_analysis=False),  # resumed: a fresh interval first
            Tick(362, analysis="pass", step=1),
        ],
    ),
    "a step pause waits after a passing analysis": (
        spec(steps=[{"weight": 10, "pause": "3m"}, {"weight": 50}]),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(66, analysis="pass", step=0, weight=10),
            Tick(127, analysis="pass", step=0),
            Tick(188, analysis="pass", step=1),
        ],
    ),
    "blue-green analyses with no traffic, then switches at once": (
        spec(strategy="BlueGreen"),
        [
            Tick(0, canary="absent", canary_replicas=4, weight=0),
            Tick(5, weight=0),
            Tick(66, analysis="pass", step=1, weight=0),
            Tick(127, analysis="pass", phase=Phase.PROMOTING, weight=100),
            Tick(130, primary="ready", phase=Phase.STABLE, weight=0),
        ],
    ),
    # Prometheus discovers a new pod on a 5 s tick and needs two scrapes for rate(): until then
    # every canary query matches nothing, and those rounds must not count (limit 1 here).
    "rounds before Prometheus has seen the canary are not counted": (
        spec(interval="10s", analysis=ONE_INCONCLUSIVE),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(16, analysis="unseen", phase=Phase.PROGRESSING, step=0, reason="AnalysisInconclusive"),
            Tick(27, analysis="unseen", phase=Phase.PROGRESSING, step=0),
            Tick(38, analysis="fail", phase=Phase.PROGRESSING, step=0),
            Tick(49, analysis="fail", phase=Phase.ROLLED_BACK, reason="AnalysisFailed", history="RolledBack"),
        ],
    ),
    "an unseen canary counts once the discovery grace is over": (
        spec(interval="10s", analysis=ONE_INCONCLUSIVE),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            *(Tick(t, analysis="unseen", phase=Phase.PROGRESSING) for t in (16, 27, 38, 49, 60)),
            Tick(71, analysis="unseen", phase=Phase.PAUSED, reason="InconclusiveLimit"),  # 66 s after
        ],
    ),
    "an unreachable Prometheus counts inside the discovery grace": (
        spec(interval="10s", analysis=ONE_INCONCLUSIVE),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(16, analysis="down", phase=Phase.PAUSED, step=0, reason="InconclusiveLimit"),
        ],
    ),
    "a canary measured on too few requests counts inside the discovery grace": (
        spec(interval="10s", analysis=ONE_INCONCLUSIVE),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(16, analysis="thin", phase=Phase.PAUSED, step=0, reason="InconclusiveLimit"),
        ],
    ),
    "the grace restarts with each step's traffic: new pods need discovering too": (
        spec(interval="10s", analysis=ONE_INCONCLUSIVE),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(16, analysis="pass", step=1, weight=10),
            Tick(20, canary="ready", weight=50, step=1),
            Tick(31, analysis="unseen", phase=Phase.PROGRESSING, step=1),
            Tick(42, analysis="pass", phase=Phase.PROMOTING),
        ],
    ),
    "a passing gate runs before any traffic, then the steps go on": (
        gated(),
        [
            Tick(0, canary="absent", weight=0, gate_state="-", gate_run=False),
            Tick(
                5,
                weight=0,
                phase=Phase.PROGRESSING,
                gate_state="Running",
                gate_run=True,
                reason="GateRunning",
            ),
            Tick(8, weight=0, gate_state="Running", gate_run=True),  # the worker has not reported yet
            Tick(9, gate="stale", weight=0, gate_state="Running", gate_run=True),  # an older run's result
            Tick(10, gate="pass", weight=10, gate_state="Passed", gate_run=False),
            Tick(71, analysis="pass", step=1, gate_state="Passed"),
            Tick(75, canary="ready", weight=50, step=1, gate_run=False),
            Tick(136, analysis="pass", phase=Phase.PROMOTING),
            Tick(140, primary="ready", phase=Phase.STABLE, history="Promoted", gate_state="-"),
        ],
    ),
    "a failing gate rolls back before any traffic, naming the check": (
        gated(),
        [
            Tick(0, canary="absent"),
            Tick(5, gate_state="Running"),
            Tick(
                9,
                gate="fail",
                phase=Phase.ROLLED_BACK,
                weight=0,
                canary_replicas=0,
                reason="GateFailed",
                history="RolledBack",
                gate_state="Failed",
                gate_run=False,
            ),
            Tick(60, phase=Phase.ROLLED_BACK, gate_state="Failed", gate_run=False),
            # retry runs the gate again from the start, once the canary is ready again
            Tick(61, commands=Commands(retry="r1"), canary="absent", phase=Phase.PROGRESSING, gate_state="-"),
            Tick(66, commands=Commands(retry="r1"), gate_state="Running", gate_run=True, weight=0),
        ],
    ),
    "an inconclusive gate holds, runs again each interval, and holds at the limit": (
        gated(analysis={"metrics": [], "inconclusive": {"limit": 2, "action": "Hold"}}),
        [
            Tick(0, canary="absent"),
            Tick(5, gate_state="Running"),
            Tick(
                9,
                gate="inconclusive",
                weight=0,
                phase=Phase.PROGRESSING,
                reason="GateInconclusive",
                gate_state="Inconclusive",
                gate_run=False,
            ),
            Tick(30, weight=0, gate_state="Inconclusive", gate_run=False),  # within the interval
            Tick(70, weight=0, gate_state="Running", gate_run=True),  # a new run
            Tick(
                75,
                gate="inconclusive",
                weight=0,
                phase=Phase.PAUSED,
                reason="InconclusiveLimit",
                gate_state="Inconclusive",
                gate_run=False,
            ),
            Tick(500, weight=0, phase=Phase.PAUSED, gate_run=False),
            # resume: the gate runs again from the start, and never before traffic is judged
            Tick(
                501,
                commands=Commands(resume="r1"),
                weight=0,
                phase=Phase.PROGRESSING,
                gate_state="Running",
                gate_run=True,
            ),
            Tick(505, commands=Commands(resume="r1"), gate="pass", weight=10, gate_state="Passed"),
        ],
    ),
    "an inconclusive gate with the Rollback policy rolls back": (
        gated(analysis={"metrics": [], "inconclusive": {"limit": 1, "action": "Rollback"}}),
        [
            Tick(0, canary="absent"),
            Tick(5, gate_state="Running"),
            Tick(9, gate="inconclusive", phase=Phase.ROLLED_BACK, reason="GateInconclusive", weight=0),
        ],
    ),
    "pausing mid-gate stops the run; resuming runs it again": (
        gated(),
        [
            Tick(0, canary="absent"),
            Tick(5, gate_state="Running", gate_run=True),
            Tick(6, commands=Commands(paused=True), phase=Phase.PAUSED, gate_run=False, weight=0),
            Tick(30, phase=Phase.PROGRESSING, gate_state="Running", gate_run=True, weight=0),
            Tick(31, gate="pass", weight=10),
        ],
    ),
    "abort mid-gate cancels the run": (
        gated(),
        [
            Tick(0, canary="absent"),
            Tick(5, gate_state="Running"),
            Tick(
                6,
                commands=Commands(abort="a1"),
                phase=Phase.ROLLED_BACK,
                reason="Aborted",
                gate_state="Cancelled",
                gate_run=False,
            ),
        ],
    ),
    "promote by hand mid-gate skips it": (
        gated(),
        [
            Tick(0, canary="absent"),
            Tick(5, gate_state="Running"),
            Tick(
                6,
                commands=Commands(promote="p1"),
                phase=Phase.PROMOTING,
                gate_state="Cancelled",
                gate_run=False,
            ),
        ],
    ),
    "blue-green gates before the switch, with the canary at full size": (
        gated(strategy="BlueGreen"),
        [
            Tick(0, canary="absent", canary_replicas=4),
            Tick(5, gate_state="Running", weight=0, canary_replicas=4),
            Tick(9, gate="pass", weight=0, gate_state="Passed"),
            Tick(70, analysis="pass", step=1, weight=0),
            Tick(131, analysis="pass", phase=Phase.PROMOTING, weight=100),
        ],
    ),
    "shadow gates before mirroring, and again on the mirrored phase": (
        gated(strategy="Shadow", steps=[{"weight": 10}], gates={"onMirror": True}),
        [
            Tick(0, canary="absent"),
            Tick(5, gate_state="Running", gate_run=True),
            Tick(9, gate="pass", gate_state="Passed"),
            Tick(70, analysis="pass", phase=Phase.PROGRESSING, gate_state="Running", gate_run=True),
            Tick(75, gate_state="Running", gate_run=True),
            Tick(80, gate="pass", phase=Phase.PROMOTING, gate_state="Passed", gate_run=False),
        ],
    ),
    "a failing mirrored-phase gate rolls back": (
        gated(strategy="Shadow", steps=[{"weight": 10}], gates={"onMirror": True}),
        [
            Tick(0, canary="absent"),
            Tick(5, gate_state="Running"),
            Tick(9, gate="pass"),
            Tick(70, analysis="pass", gate_state="Running"),
            Tick(75, gate="fail", phase=Phase.ROLLED_BACK, reason="GateFailed", gate_state="Failed"),
        ],
    ),
    "no metrics: readiness and the interval gate each step": (
        spec(analysis={"metrics": []}),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(66, analysis="pass", step=1),
        ],
    ),
}


@pytest.mark.parametrize(("target", "ticks"), list(CASES.values()), ids=list(CASES))
def test_sequences(target: Any, ticks: list[Tick]) -> None:
    run_ticks(target, ticks)


def test_shadow_mirrors_and_never_sends_live_traffic() -> None:
    decisions = run_ticks(
        spec(strategy="Shadow"),
        [Tick(0, canary="absent"), Tick(5), Tick(66, analysis="pass"), Tick(127, analysis="pass"), Tick(130)],
    )
    assert all(d.split.canary_weight == 0 for d in decisions)
    assert decisions[1].split.mirror
    assert decisions[-1].status.phase == Phase.STABLE


def test_a_b_match_is_part_of_every_split_during_the_rollout() -> None:
    target = spec(match=[{"headers": {"x-cohort": {"exact": "beta"}}}])
    decisions = run_ticks(target, [Tick(0, canary="absent"), Tick(5, weight=10)])
    assert decisions[1].split.match == tuple(target.rollout.match)


def test_a_change_mid_rollout_restarts_on_the_newest_revision() -> None:
    first = run_ticks(spec("2"), [Tick(0, canary="absent"), Tick(5, weight=10)])
    status = first[-1].status
    later = decide(spec("3"), PARENT, status, Observations(primary=_deployment(revision(V1), 4, True)), T0)
    assert later.status.canary_revision == revision(spec("3"))
    assert later.status.step == 0
    assert later.status.history[0].result == "Superseded"
    # The primary keeps the stable revision all along.
    assert {p.track: p.revision for p in later.tracks}[Track.PRIMARY] == revision(V1)


def test_the_primary_keeps_the_stable_revision_for_the_whole_rollout() -> None:
    decisions = run_ticks(spec(), [Tick(0, canary="absent"), Tick(5), Tick(66, analysis="pass"), Tick(70)])
    for d in decisions:
        primary = next(p for p in d.tracks if p.track == Track.PRIMARY)
        assert primary.revision == revision(V1)
        assert primary.spec.model.version == "1"


def test_reverting_the_spec_to_the_stable_revision_ends_the_rollout() -> None:
    first = run_ticks(spec("2"), [Tick(0, canary="absent"), Tick(5, weight=10)])
    back = decide(V1, PARENT, first[-1].status, Observations(primary=_deployment(revision(V1), 4, True)), T0)
    assert back.status.phase == Phase.STABLE
    assert back.status.canary_revision is None
    assert [p.track for p in back.tracks] == [Track.PRIMARY]


def test_a_restart_resumes_at_the_same_step() -> None:
    # Same status in, same decision out: nothing lives in memory.
    decisions = run_ticks(spec(), [Tick(0, canary="absent"), Tick(5), Tick(66, analysis="pass")])
    status = decisions[-1].status
    seen = Observations(
        primary=_deployment(revision(V1), 4, True), canary=_deployment(revision(spec()), 2, False)
    )
    again = decide(spec(), PARENT, status, seen, T0 + datetime.timedelta(seconds=67))
    assert again.status.step == 1
    assert again.status.phase == Phase.PROGRESSING


def test_an_unchanged_world_yields_an_identical_status() -> None:
    decisions = run_ticks(spec(), [Tick(0, canary="absent"), Tick(5), Tick(30)])
    seen = Observations(
        primary=_deployment(revision(V1), 4, True), canary=_deployment(revision(spec()), 1, True)
    )
    now = T0 + datetime.timedelta(seconds=31)
    assert decide(spec(), PARENT, decisions[-1].status, seen, now).status == decisions[-1].status


def test_a_command_given_when_it_cannot_act_is_spent_not_kept_for_later() -> None:
    # `promote` typed while Stable must not promote the next rollout without analysis.
    steady = decide(
        V1,
        PARENT,
        stable_status(),
        Observations(primary=_deployment(revision(V1), 4, True), commands=Commands(promote="p-old")),
        T0,
    )
    assert steady.status.handled is not None and steady.status.handled.promote == "p-old"
    later = run_ticks(
        spec(),
        [
            Tick(0, canary="absent", commands=Commands(promote="p-old")),
            Tick(5, commands=Commands(promote="p-old")),
        ],
        status=steady.status,
    )
    assert all(d.status.phase == Phase.PROGRESSING for d in later)


def test_steps_shortened_mid_rollout_continue_from_the_last_step() -> None:
    decisions = run_ticks(
        spec(steps=[{"weight": 10}, {"weight": 30}, {"weight": 60}]),
        [Tick(0, canary="absent"), Tick(5), Tick(66, analysis="pass"), Tick(70), Tick(131, analysis="pass")],
    )
    assert decisions[-1].status.step == 2
    shorter = spec(steps=[{"weight": 10}])
    seen = Observations(
        primary=_deployment(revision(V1), 4, True), canary=_deployment(revision(shorter), 3, True)
    )
    after = decide(shorter, PARENT, decisions[-1].status, seen, T0 + datetime.timedelta(seconds=140))
    assert after.status.phase in (Phase.PROGRESSING, Phase.PROMOTING)


def test_apply_errors_during_a_rollout_degrade_without_losing_the_step() -> None:
    decisions = run_ticks(spec(), [Tick(0, canary="absent"), Tick(5, weight=10)])
    seen = Observations(
        primary=_deployment(revision(V1), 4, True), canary=_deployment(revision(spec()), 1, True)
    )
    before = decisions[-1].status
    decided = decide(spec(), PARENT, before, seen, T0 + datetime.timedelta(seconds=6))
    failure = apply_failure(["HTTPRoute/scorer: admission webhook denied the request"], [])
    after = replace(decided, status=applied_status(before, decided.status, PARENT, failure, "t"))
    degraded = {c.type: c for c in after.status.conditions}["Degraded"]
    assert (degraded.status, degraded.reason) == ("True", "ApplyFailed")
    assert after.status.phase == Phase.PROGRESSING
    assert after.status.step == 0


def test_the_a_b_cohort_waits_for_a_ready_canary() -> None:
    target = spec(match=[{"headers": {"x-cohort": {"exact": "beta"}}}])
    decisions = run_ticks(target, [Tick(0, canary="absent"), Tick(2, canary="loading"), Tick(5)])
    assert decisions[0].split.match == () and decisions[1].split.match == ()
    assert decisions[2].split.match == tuple(target.rollout.match)


def test_history_names_the_version_that_was_rolled_back_or_superseded() -> None:
    first = run_ticks(spec("2"), [Tick(0, canary="absent"), Tick(5, weight=10)])
    later = decide(
        spec("3"), PARENT, first[-1].status, Observations(primary=_deployment(revision(V1), 4, True)), T0
    )
    assert later.status.history[0].result == "Superseded"
    assert later.status.history[0].model_version == "2"


# ----------------------------------------------------------------- a canary that stops serving
# Issue 16: a canary that dies after it takes traffic loses it in the same pass (no share, no
# cohort, no mirror, the replica-ratio Service back on the primary), is rolled back with
# CanaryUnavailable after failureThreshold intervals (here 2 x 1m), gets its traffic back with a
# fresh interval if it recovers first, and is never advanced or promoted unless every pod is Ready.

AB = [{"headers": {"x-cohort": {"exact": "beta"}}}]
OFF: dict[str, Any] = {"weight": 0, "mirror": False, "cohort": False, "service": "primary"}
# Per strategy: its spec, and what its split looks like while the canary serves at step 1.
STRATEGIES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "canary-routed": ({}, {"weight": 10, "mirror": False, "cohort": False, "service": "primary"}),
    "canary-replica-ratio": ({"traffic": {}}, {"weight": 10, "service": "both"}),
    "blue-green": ({"strategy": "BlueGreen"}, {"weight": 0, "mirror": False, "cohort": False}),
    "shadow": ({"strategy": "Shadow"}, {"weight": 0, "mirror": True, "cohort": False}),
    "a-b-match": ({"match": AB}, {"weight": 10, "cohort": True, "service": "primary"}),
}


def _unavailable_cases() -> list[Any]:
    cases = []
    for name, (extra, on) in STRATEGIES.items():
        target = spec(**extra)
        down_at, bound = 30, 120  # interval 1m x failureThreshold 2
        gone_after = down_at + bound
        for state, what in (
            ("looping", "pods crash mid-step"),
            ("absent", "Deployment deleted by hand"),
            ("zero", "scaled to zero by hand"),
        ):
            ticks = [
                Tick(0, canary="absent"),
                Tick(5, **on),
                Tick(
                    down_at,
                    canary=state,
                    phase=Phase.PROGRESSING,
                    reason="CanaryUnavailable",
                    asked_analysis=False,
                    unavailable_since=down_at,
                    **OFF,
                ),
                # The interval is over, but a canary known to be down is not analysed.
                Tick(100, canary=state, phase=Phase.PROGRESSING, asked_analysis=False, **OFF),
                Tick(gone_after - 1, canary=state, phase=Phase.PROGRESSING, **OFF),
                Tick(
                    gone_after,
                    canary=state,
                    phase=Phase.ROLLED_BACK,
                    reason="CanaryUnavailable",
                    history="RolledBack",
                    canary_replicas=0,
                    unavailable_since=-1,
                    **OFF,
                ),
            ]
            cases.append(pytest.param(target, ticks, id=f"{name}: {what}, rolled back at the bound"))
        recovered = [
            Tick(0, canary="absent"),
            Tick(5, **on),
            Tick(30, canary="crashed", reason="CanaryUnavailable", **OFF),
            # Back before the bound: the step's traffic again, and a fresh interval from here.
            Tick(
                60, canary="ready", phase=Phase.PROGRESSING, asked_analysis=False, unavailable_since=-1, **on
            ),
            Tick(119, phase=Phase.PROGRESSING, asked_analysis=False, step=0, **on),
            Tick(121, analysis="pass", phase=Phase.PROGRESSING, step=1),
        ]
        cases.append(pytest.param(target, recovered, id=f"{name}: recovered before the bound"))
        last_step = spec(steps=[{"weight": 10}], canaryReplicas=2, **extra)
        unready = [
            Tick(0, canary="absent"),
            Tick(5, **on),
            # The last step's analysis passed, but one pod of two is still loading: no promotion.
            Tick(
                66, canary="partial", analysis="pass", phase=Phase.PROGRESSING, reason="CanaryNotReady", **on
            ),
            Tick(70, phase=Phase.PROGRESSING, asked_analysis=False),
            Tick(127, analysis="pass", phase=Phase.PROMOTING),
        ]
        cases.append(
            pytest.param(last_step, unready, id=f"{name}: never promoted while not every pod is Ready")
        )
        refused = [
            Tick(0, canary="absent"),
            Tick(5, **on),
            Tick(
                10,
                canary="looping",
                commands=Commands(promote="p1"),
                phase=Phase.PROGRESSING,
                reason="PromoteRefused",
                **OFF,
            ),
            # The token is spent: the canary's recovery does not promote it behind the user's back.
            Tick(20, commands=Commands(promote="p1"), phase=Phase.PROGRESSING, **on),
        ]
        cases.append(pytest.param(target, refused, id=f"{name}: promote by hand refused while it is down"))
    return cases


@pytest.mark.parametrize(("target", "ticks"), _unavailable_cases())
def test_a_canary_that_stops_serving(target: Any, ticks: list[Tick]) -> None:
    run_ticks(target, ticks)


HELD_ONE = {"metrics": [{"name": "ok", "template": "successRate", "min": 0.99}], "inconclusive": {"limit": 1}}

MORE_UNAVAILABLE: dict[str, tuple[Any, list[Tick]]] = {
    "dies while growing for the next step: the previous step's share comes off": (
        spec(),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(66, analysis="pass", step=1, weight=10),
            Tick(70, canary="crashed", step=1, reason="CanaryUnavailable", unavailable_since=70, **OFF),
            Tick(189, canary="crashed", phase=Phase.PROGRESSING, **OFF),
            Tick(190, canary="crashed", phase=Phase.ROLLED_BACK, reason="CanaryUnavailable"),
        ],
    ),
    "dies while held at the inconclusive limit": (
        spec(analysis=HELD_ONE),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(66, analysis="inconclusive", phase=Phase.PAUSED, reason="InconclusiveLimit", weight=10),
            Tick(100, canary="looping", phase=Phase.PAUSED, reason="CanaryUnavailable", **OFF),
            Tick(219, canary="looping", phase=Phase.PAUSED, reason="InconclusiveLimit", **OFF),
            Tick(220, canary="looping", phase=Phase.ROLLED_BACK, reason="CanaryUnavailable"),
        ],
    ),
    "dies while paused by hand": (
        spec(),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(20, commands=Commands(paused=True), phase=Phase.PAUSED, weight=10),
            Tick(30, canary="absent", commands=Commands(paused=True), phase=Phase.PAUSED, **OFF),
            Tick(
                150,
                canary="absent",
                commands=Commands(paused=True),
                phase=Phase.ROLLED_BACK,
                reason="CanaryUnavailable",
            ),
        ],
    ),
    "recovers while held: its share comes back, still held": (
        spec(analysis=HELD_ONE),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(66, analysis="inconclusive", phase=Phase.PAUSED, weight=10),
            Tick(100, canary="crashed", phase=Phase.PAUSED, **OFF),
            Tick(110, phase=Phase.PAUSED, reason="InconclusiveLimit", weight=10, unavailable_since=-1),
            Tick(400, phase=Phase.PAUSED, weight=10, asked_analysis=False),
        ],
    ),
    "one pod of two slow to load keeps the share; one crash-looping counts as unavailable": (
        spec(canaryReplicas=2),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(30, canary="partial", weight=10, unavailable_since=-1),  # slow, not broken
            Tick(40, canary="partial-looping", reason="CanaryUnavailable", unavailable_since=40, **OFF),
            Tick(160, canary="partial-looping", phase=Phase.ROLLED_BACK, reason="CanaryUnavailable"),
        ],
    ),
    "a Deployment deleted by hand is put back at its size, and gets its share once Ready": (
        spec(),
        [
            Tick(0, canary="absent"),
            Tick(5, weight=10),
            Tick(30, canary="absent", reason="CanaryUnavailable", canary_replicas=1, **OFF),
            Tick(31, weight=10, unavailable_since=-1),
        ],
    ),
}


@pytest.mark.parametrize(("target", "ticks"), list(MORE_UNAVAILABLE.values()), ids=list(MORE_UNAVAILABLE))
def test_a_canary_that_stops_serving_in_other_phases(target: Any, ticks: list[Tick]) -> None:
    run_ticks(target, ticks)


def _round_trip(status: ModelDeploymentStatus) -> ModelDeploymentStatus:
    """What a restarted operator reads back from the server."""
    return ModelDeploymentStatus.model_validate(
        status.model_dump(mode="json", by_alias=True, exclude_none=True)
    )


def test_a_restarted_operator_keeps_counting_the_outage() -> None:
    target = spec()
    first = run_ticks(
        target, [Tick(0, canary="absent"), Tick(5, weight=10), Tick(30, canary="looping", **OFF)]
    )
    assert first[-1].requeue_after is not None and first[-1].requeue_after <= 120, "the rollback is timed"
    # The operator restarts 70 s into the outage: the rollback is still due 120 s after it began.
    later = run_ticks(
        target,
        [
            Tick(100, canary="looping", phase=Phase.PROGRESSING, unavailable_since=30, **OFF),
            Tick(149, canary="looping", phase=Phase.PROGRESSING, **OFF),
            Tick(150, canary="looping", phase=Phase.ROLLED_BACK, reason="CanaryUnavailable"),
        ],
        status=_round_trip(first[-1].status),
    )
    assert later[0].requeue_after is not None and later[0].requeue_after <= 50
    rolled = later[-1].status
    degraded = {c.type: c for c in rolled.conditions}["Degraded"]
    # The reason names the pod's state, as `kubectl describe pod` shows it.
    assert "CrashLoopBackOff" in degraded.message and "120s (2 intervals of 1m)" in degraded.message
    assert rolled.history[0].result == "RolledBack" and "CrashLoopBackOff" in rolled.history[0].reason


def test_a_down_canary_says_when_it_is_rolled_back_and_writes_nothing_new_meanwhile() -> None:
    target = spec()
    decisions = run_ticks(
        target, [Tick(0, canary="absent"), Tick(5), Tick(30, canary="zero"), Tick(45, canary="zero")]
    )
    degraded = {c.type: c for c in decisions[-1].status.conditions}["Degraded"]
    assert "scaled to 0 replicas" in degraded.message and "at 2026-11-24T12:02:30Z" in degraded.message
    assert decisions[-1].status == decisions[-2].status  # no countdown: a pass with no news writes nothing


def test_the_step_that_scaled_the_canary_up_agrees_when_decided_again_after_its_write() -> None:
    # The step's end decided again (a pass retried after its writes) with the canary already
    # scaled up for step 2 (desired 2, 1 Ready): the same end, not a hold that scales it back.
    target = spec()
    before = run_ticks(target, [Tick(0, canary="absent"), Tick(5, weight=10)])[-1].status
    now = T0 + datetime.timedelta(seconds=66)
    primary = _deployment(revision(V1), 4, True)
    scaled = replace(_deployment(revision(target), 2, False), ready=1, available=1)
    seen = Observations(primary=primary, canary=scaled)
    asked = decide(target, PARENT, before, seen, now).analysis
    assert asked is not None
    again = decide(
        target, PARENT, before, replace(seen, analysis=AnalysisRound(asked, _verdict("pass"))), now
    )
    assert again.status.step == 1, again.status.conditions
