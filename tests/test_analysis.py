"""The pure analysis layer: PromQL templates, custom-query variables, and the verdict matrix."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from modeldeploy.analysis import ProviderFailure, QueryContext, TemplateError, Track, check, context_for, plan
from modeldeploy.analysis.templates import (
    escape_label_value,
    queue_time_ms,
    render_custom,
    request_latency_ms,
    samples,
    success_rate,
)
from modeldeploy.analysis.verdicts import Result, canary_unmeasured, explain, judge_round, overall
from modeldeploy.api.spec import Analysis, AnalysisMetric
from modeldeploy.api.status import MetricResult, Verdict

CTX = context_for("ml", "fraud-scorer", "1m", "fraud_scorer")
NOW = "2026-01-01T00:00:00Z"


def sel(metric: str, track: str) -> str:
    return f'{metric}{{namespace="ml",modeldeployment="fraud-scorer",track="{track}",model="fraud_scorer"}}'


def analysis(*metrics: dict[str, Any], min_sample_count: int = 100) -> Analysis:
    return Analysis.model_validate({"minSampleCount": min_sample_count, "metrics": list(metrics)})


# ------------------------------------------------------------------------------------ templates


def test_context_names_the_deployments_as_the_renderer_does() -> None:
    expected = QueryContext(
        namespace="ml",
        name="fraud-scorer",
        primary="fraud-scorer-primary",
        canary="fraud-scorer-canary",
        interval="1m",
        model="fraud_scorer",
    )
    assert context_for("ml", "fraud-scorer", "1m", "fraud_scorer") == expected


@pytest.mark.parametrize(
    ("template", "track", "expected"),
    [
        pytest.param(
            success_rate,
            Track.CANARY,
            f"sum(rate({sel('nv_inference_request_success', 'canary')}[1m])) / "
            f"(sum(rate({sel('nv_inference_request_success', 'canary')}[1m])) + "
            f"(sum(rate({sel('nv_inference_request_failure', 'canary')}[1m])) or vector(0)))",
            id="success-rate-canary",
        ),
        pytest.param(
            success_rate,
            Track.PRIMARY,
            f"sum(rate({sel('nv_inference_request_success', 'primary')}[1m])) / "
            f"(sum(rate({sel('nv_inference_request_success', 'primary')}[1m])) + "
            f"(sum(rate({sel('nv_inference_request_failure', 'primary')}[1m])) or vector(0)))",
            id="success-rate-primary",
        ),
        pytest.param(
            request_latency_ms,
            Track.CANARY,
            f"sum(rate({sel('nv_inference_request_duration_us', 'canary')}[1m])) / "
            f"sum(rate({sel('nv_inference_request_success', 'canary')}[1m])) / 1000",
            id="request-latency-canary",
        ),
        pytest.param(
            queue_time_ms,
            Track.PRIMARY,
            f"sum(rate({sel('nv_inference_queue_duration_us', 'primary')}[1m])) / "
            f"sum(rate({sel('nv_inference_request_success', 'primary')}[1m])) / 1000",
            id="queue-time-primary",
        ),
        pytest.param(
            samples,
            Track.CANARY,
            f"sum(increase({sel('nv_inference_request_success', 'canary')}[1m])) + "
            f"(sum(increase({sel('nv_inference_request_failure', 'canary')}[1m])) or vector(0))",
            id="samples-canary",
        ),
    ],
)
def test_template_promql(template: Any, track: Track, expected: str) -> None:
    assert template(CTX, track) == expected


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        pytest.param("fraud-scorer", "fraud-scorer", id="plain"),
        pytest.param('a"b', 'a\\"b', id="quote"),
        pytest.param("a\\b", "a\\\\b", id="backslash-first"),
        pytest.param('x"}[1m])) or vector(1) #', 'x\\"}[1m])) or vector(1) #', id="injection"),
        pytest.param("a\nb\tc", "a\\nb\\tc", id="control"),
    ],
)
def test_label_values_are_escaped(raw: str, escaped: str) -> None:
    assert escape_label_value(raw) == escaped
    ctx = QueryContext(raw, raw, raw, raw, "1m", raw)
    assert f'namespace="{escaped}"' in success_rate(ctx, Track.CANARY)


@pytest.mark.parametrize("interval", ["1m", "90s", "1m30s", "500ms", "2h"])
def test_prometheus_durations_are_accepted(interval: str) -> None:
    assert f"[{interval}]" in samples(context_for("ml", "x", interval, "m"), Track.CANARY)


@pytest.mark.parametrize("interval", ["", "1 m", "1m]", "5", "1m) or vector(1"])
def test_other_intervals_are_refused(interval: str) -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        context_for("ml", "x", interval, "m")


DESIGN_EXAMPLE = analysis(
    {"name": "success-rate", "template": "successRate", "min": 0.99},
    {"name": "latency", "template": "requestLatencyMs", "max": 250, "relativeToPrimary": {"maxRatio": 1.2}},
    {
        "name": "custom",
        "query": 'sum(rate(my_errors{namespace="{{namespace}}",pod=~"{{canary}}-.*"}[{{interval}}]))',
        "max": 0.1,
    },
)


@dataclass(frozen=True)
class PlanCase:
    id: str
    analysis: Analysis
    keys: list[str]


@pytest.mark.parametrize(
    "case",
    [
        PlanCase(
            "design-example",
            DESIGN_EXAMPLE,
            [
                "metric:success-rate:canary",
                "metric:latency:canary",
                "metric:latency:primary",
                "metric:custom:canary",
                "samples:canary",
                "samples:primary",
            ],
        ),
        PlanCase(
            "absolute-only: no primary queries at all",
            analysis({"name": "sr", "template": "successRate", "min": 0.99}),
            ["metric:sr:canary", "samples:canary"],
        ),
        PlanCase(
            "minSampleCount 0: no sample queries",
            analysis({"name": "sr", "template": "successRate", "min": 0.99}, min_sample_count=0),
            ["metric:sr:canary"],
        ),
        PlanCase("no metrics: nothing to ask", analysis(), []),
        PlanCase(
            "a metric named samples cannot collide with the sample counts",
            analysis({"name": "samples", "template": "successRate", "min": 0.99}),
            ["metric:samples:canary", "samples:canary"],
        ),
    ],
    ids=lambda c: c.id,
)
def test_plan_keys(case: PlanCase) -> None:
    queries = plan(case.analysis, CTX)
    assert [q.key for q in queries] == case.keys
    assert plan(case.analysis, CTX) == queries  # stable


def test_plan_queries_the_track_they_are_keyed_by() -> None:
    by_key = {q.key: q for q in plan(DESIGN_EXAMPLE, CTX)}
    assert by_key["metric:latency:primary"].promql == request_latency_ms(CTX, Track.PRIMARY)
    assert by_key["metric:latency:canary"].promql == request_latency_ms(CTX, Track.CANARY)
    assert by_key["samples:primary"].promql == samples(CTX, Track.PRIMARY)
    assert by_key["metric:custom:canary"].promql == (
        'sum(rate(my_errors{namespace="ml",pod=~"fraud-scorer-canary-.*"}[1m]))'
    )
    assert by_key["metric:latency:primary"].metric == "latency"
    assert by_key["samples:canary"].metric is None


# ------------------------------------------------------------------------------ custom queries


def custom(query: str, **extra: Any) -> AnalysisMetric:
    return AnalysisMetric.model_validate({"name": "my-metric", "query": query, "max": 1, **extra})


@pytest.mark.parametrize(
    ("query", "track", "expected"),
    [
        pytest.param(
            "{{namespace}}|{{name}}|{{primary}}|{{canary}}|{{interval}}|{{model}}|{{target}}|{{track}}",
            Track.CANARY,
            "ml|fraud-scorer|fraud-scorer-primary|fraud-scorer-canary|1m|fraud_scorer|fraud-scorer-canary|canary",
            id="every-variable-canary",
        ),
        pytest.param(
            "{{target}}|{{track}}",
            Track.PRIMARY,
            "fraud-scorer-primary|primary",
            id="target-follows-the-track",
        ),
        pytest.param(
            "{{ canary }}/{{canary}}", Track.CANARY, "fraud-scorer-canary/fraud-scorer-canary", id="spaces"
        ),
        pytest.param('x{a=~"b{2}"}', Track.CANARY, 'x{a=~"b{2}"}', id="single-braces-untouched"),
    ],
)
def test_custom_variables(query: str, track: Track, expected: str) -> None:
    assert render_custom(custom(query), CTX, track) == expected


def test_custom_values_are_escaped() -> None:
    ctx = QueryContext('ns"', "n", "p", "c", "1m", "m")
    assert render_custom(custom('x{namespace="{{namespace}}"}'), ctx, Track.CANARY) == 'x{namespace="ns\\""}'


@pytest.mark.parametrize(
    ("query", "extra", "message"),
    [
        pytest.param(
            "x{pod=~'{{pod}}-.*'}", {}, r"'my-metric'.*unknown template variable \{\{pod\}\}", id="unknown"
        ),
        pytest.param(
            "x{ns='{{Namespace}}'}", {}, r"unknown template variable \{\{Namespace\}\}", id="case-matters"
        ),
        pytest.param("x{{}}", {}, r"unknown template variable \{\{\}\}", id="empty"),
        pytest.param(
            "sum(rate(x{pod=~'{{canary}}-.*'}[1m]))",
            {"relativeToPrimary": {"maxRatio": 1.2}},
            r"'my-metric'.*relativeToPrimary needs .*\{\{target\}\}",
            id="relative-without-target",
        ),
    ],
)
def test_custom_errors_name_metric_and_variable(query: str, extra: dict[str, Any], message: str) -> None:
    metric = custom(query, **extra)
    with pytest.raises(TemplateError, match=message) as raised:
        plan(Analysis(metrics=[metric]), CTX)
    assert raised.value.metric == "my-metric"
    assert check(Analysis(metrics=[metric])) == [str(raised.value)]


def test_check_passes_valid_custom_queries() -> None:
    assert check(DESIGN_EXAMPLE) == []
    relative = custom("x{deployment='{{target}}'}", relativeToPrimary={"maxDelta": 1})
    assert check(Analysis(metrics=[relative])) == []


# ------------------------------------------------------------------------------------ verdicts

SR = {"name": "sr", "template": "successRate", "min": 0.99}
LAT = {"name": "lat", "template": "requestLatencyMs", "max": 250}
ENOUGH = {"samples:canary": 500.0, "samples:primary": 800.0}


def rel(**bounds: float) -> dict[str, Any]:
    return {"name": "lat", "template": "requestLatencyMs", "relativeToPrimary": bounds}


P, F, I = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE  # noqa: E741


def sr(value: Result, samples: Result = 500.0) -> dict[str, Result]:
    return {"metric:sr:canary": value, "samples:canary": samples}


def lat(value: Result) -> dict[str, Result]:
    return {"metric:lat:canary": value, **ENOUGH}


def both(canary: Result, primary: Result) -> dict[str, Result]:
    return {"metric:lat:canary": canary, "metric:lat:primary": primary, **ENOUGH}


@dataclass(frozen=True)
class VerdictCase:
    id: str
    metric: dict[str, Any]
    results: Mapping[str, Result]
    verdict: Verdict
    reason: str  # exact, or a substring when it starts with "~"
    min_sample_count: int = 100
    value: float | None = field(default=None)


UNREACHABLE = ProviderFailure(
    "Prometheus unreachable: connection refused (http://prom:9090)", unreachable=True
)
REJECTED = ProviderFailure("Prometheus query failed: HTTP 400 bad_data: 1:5: parse error")

VERDICT_CASES = [
    # --- absolute thresholds
    VerdictCase("min pass", SR, sr(0.995), P,
                "success rate 0.995 within min 0.99", value=0.995),
    VerdictCase("min fail", SR, sr(0.912), F,
                "success rate 0.912 < min 0.99", value=0.912),
    VerdictCase("min boundary passes", SR, sr(0.99), P, "~within min 0.99"),
    VerdictCase("min shows enough digits", SR, sr(0.98995), F,
                "success rate 0.98995 < min 0.99"),
    VerdictCase("max pass", LAT, lat(41.25), P,
                "request latency 41.25ms within max 250ms"),
    VerdictCase("max fail", LAT, lat(251.0), F,
                "request latency 251ms > max 250ms"),
    VerdictCase("max boundary passes", LAT, lat(250.0), P, "~within max 250ms"),
    VerdictCase("an integer from a provider is a number", LAT, lat(3), P,
                "~latency 3ms"),
    # --- relative to the primary
    VerdictCase("maxRatio pass", rel(maxRatio=1.2), both(22.0, 20.0), P,
                "request latency 22ms vs primary 20ms within maxRatio 1.2"),
    VerdictCase("maxRatio fail", rel(maxRatio=1.2), both(35.0, 20.0), F,
                "request latency 35ms vs primary 20ms: ratio 1.75x > maxRatio 1.2"),
    VerdictCase("minRatio pass", rel(minRatio=0.9), both(19.0, 20.0), P, "~within minRatio 0.9"),
    VerdictCase("minRatio fail", rel(minRatio=0.9), both(10.0, 20.0), F, "~ratio 0.5x < minRatio 0.9"),
    VerdictCase("maxDelta pass", rel(maxDelta=5), both(24.0, 20.0), P, "~within maxDelta 5ms"),
    VerdictCase("maxDelta fail", rel(maxDelta=5), both(26.5, 20.0), F,
                "request latency 26.5ms vs primary 20ms: delta +6.5ms > maxDelta 5ms"),
    VerdictCase("minDelta pass", rel(minDelta=-5), both(16.0, 20.0), P, "~within minDelta -5ms"),
    VerdictCase("minDelta fail", rel(minDelta=-5), both(14.0, 20.0), F, "~delta -6ms < minDelta -5ms"),
    VerdictCase("absolute and relative together", {**rel(maxRatio=1.2), "max": 30}, both(35.0, 20.0),
                F, "request latency 35ms > max 30ms; request latency 35ms vs primary 20ms: "
                "ratio 1.75x > maxRatio 1.2"),
    # --- a zero primary, explicitly
    VerdictCase("primary zero, canary zero: ratio 1", rel(maxRatio=1.2, minRatio=0.8), both(0.0, 0.0),
                P, "~within maxRatio 1.2, minRatio 0.8"),
    VerdictCase("primary zero, canary above: unbounded ratio fails maxRatio", rel(maxRatio=1.2),
                both(3.0, 0.0), F, "request latency 3ms vs primary 0ms: ratio unbounded > maxRatio 1.2"),
    VerdictCase("primary zero, canary above: passes minRatio", rel(minRatio=0.8), both(3.0, 0.0),
                P, "~within minRatio 0.8"),
    VerdictCase("primary zero: deltas still work", rel(maxDelta=5), both(3.0, 0.0), P,
                "~within maxDelta 5ms"),
    # --- sample counts
    VerdictCase("too few canary requests", SR, sr(0.5, samples=37.0),
                I, "only 37 requests on the canary, need 100 (success rate 0.5 not judged yet)"),
    VerdictCase("extrapolated counts are floored", SR, sr(1.0, samples=99.6),
                I, "~only 99 requests on the canary, need 100"),
    VerdictCase("exactly enough", SR, sr(1.0, samples=100.0), P, "~within"),
    VerdictCase("no sample count at all", SR, sr(None, samples=None),
                I, "only 0 requests on the canary, need 100"),
    VerdictCase("too few primary requests when relative", rel(maxRatio=1.2),
                {"metric:lat:canary": 20.0, "metric:lat:primary": 20.0, "samples:canary": 500.0,
                 "samples:primary": 12.0},
                I, "~only 12 requests on the primary, need 100"),
    VerdictCase("primary requests do not matter for absolute thresholds", SR,
                {"metric:sr:canary": 1.0, "samples:canary": 500.0, "samples:primary": 0.0}, P, "~within"),
    VerdictCase("minSampleCount 0 needs no counts", SR, {"metric:sr:canary": 1.0}, P, "~within",
                min_sample_count=0),
    # --- no data
    VerdictCase("empty result", SR, sr(None), I,
                "~no data for the canary"),
    VerdictCase("NaN", SR, sr(math.nan), I, "~no data for the canary"),
    VerdictCase("infinity", LAT, lat(math.inf), I,
                "~no data for the canary"),
    VerdictCase("no primary data", rel(maxRatio=1.2), both(20.0, None), I,
                "~no data for the primary"),
    VerdictCase("NaN primary", rel(maxRatio=1.2), both(20.0, math.nan), I,
                "~no data for the primary"),
    VerdictCase("a result that was never measured", SR, dict(ENOUGH), I,
                "not measured: no result for metric:sr:canary"),
    # --- the provider failed
    VerdictCase("provider unreachable", SR, sr(UNREACHABLE), I,
                UNREACHABLE.reason),
    VerdictCase("provider unreachable while counting", SR, sr(0.2, samples=UNREACHABLE),
                I, UNREACHABLE.reason),
    VerdictCase("provider rejects the query", SR, sr(REJECTED), I,
                REJECTED.reason),
    VerdictCase("provider failed for the primary", rel(maxRatio=1.2), both(90.0, UNREACHABLE),
                I, UNREACHABLE.reason),
    VerdictCase("a failure outranks too few samples", SR, sr(REJECTED, samples=1.0),
                I, REJECTED.reason),
]  # fmt: skip


@pytest.mark.parametrize("case", VERDICT_CASES, ids=lambda c: c.id)
def test_verdict_matrix(case: VerdictCase) -> None:
    (result,) = judge_round(analysis(case.metric, min_sample_count=case.min_sample_count), case.results, NOW)
    assert result.verdict == case.verdict
    if case.reason.startswith("~"):
        assert case.reason[1:] in result.reason
    else:
        assert result.reason == case.reason
    assert "\n" not in result.reason
    assert result.at == NOW
    assert result.name == case.metric["name"]
    if case.value is not None:
        assert result.value == case.value


def test_results_carry_both_values() -> None:
    (result,) = judge_round(analysis(rel(maxRatio=1.2)), both(35.0, 20.0), NOW)
    assert (result.value, result.primary_value) == (35.0, 20.0)
    (nan,) = judge_round(analysis(rel(maxRatio=1.2)), both(math.nan, UNREACHABLE), NOW)
    assert (nan.value, nan.primary_value) == (None, None)  # never NaN in the status
    assert MetricResult.model_validate(nan.model_dump()) == nan


def test_evaluate_keeps_spec_order() -> None:
    results = {"metric:success-rate:canary": 0.9, "metric:custom:canary": 0.0, **ENOUGH}
    results |= {"metric:latency:canary": 20.0, "metric:latency:primary": 20.0}
    out = judge_round(DESIGN_EXAMPLE, results, NOW)
    assert [(r.name, r.verdict) for r in out] == [
        ("success-rate", Verdict.FAIL),
        ("latency", Verdict.PASS),
        ("custom", Verdict.PASS),
    ]
    assert overall(out) == Verdict.FAIL
    assert explain(out) == "success-rate: success rate 0.9 < min 0.99"


def result(verdict: Verdict, name: str = "m") -> MetricResult:
    return MetricResult(name=name, verdict=verdict, reason=f"{verdict} reason", at=NOW)


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        pytest.param([], P, id="no-metrics-pass-readiness-gates"),
        pytest.param([P], P, id="pass"),
        pytest.param([P, P], P, id="all-pass"),
        pytest.param([P, I], I, id="inconclusive-never-promotes"),
        pytest.param([I, I], I, id="all-inconclusive"),
        pytest.param([P, F], F, id="fail"),
        pytest.param([I, F, P], F, id="fail-outranks-inconclusive"),
    ],
)
def test_overall(verdicts: list[Verdict], expected: Verdict) -> None:
    assert overall([result(v, f"m{i}") for i, v in enumerate(verdicts)]) == expected


def test_explain_names_the_deciding_metrics() -> None:
    assert explain([]) == "no analysis metrics configured: readiness alone gates the step"
    assert explain([result(P, "a"), result(P, "b")]) == "all 2 analysis metrics passed"
    assert explain([result(P, "a"), result(I, "b"), result(I, "c")]) == (
        "b: Inconclusive reason; c: Inconclusive reason"
    )


# ---------------------------------------------------- rounds before the canary's series exist

SR_AND_REL = (SR, {**rel(maxRatio=1.5), "name": "lat"})


@pytest.mark.parametrize(
    ("metrics", "results", "expected"),
    [
        pytest.param((SR,), sr(None, samples=None), True, id="no-canary-series-at-all"),
        pytest.param((SR,), sr(None, samples=0.0), True, id="series-but-no-requests-yet"),
        pytest.param((SR,), sr(math.nan), True, id="nan-from-an-idle-window"),
        pytest.param(
            SR_AND_REL,
            {"metric:sr:canary": None, "metric:lat:canary": None, "metric:lat:primary": 20.0,
             "samples:canary": None, "samples:primary": 800.0},
            True,
            id="every-metric-waits-for-the-canary",
        ),
        pytest.param((SR,), sr(0.5, samples=37.0), False, id="measured-on-too-few-requests-counts"),
        pytest.param((SR,), sr(UNREACHABLE, samples=UNREACHABLE), False, id="unreachable-counts"),
        pytest.param((SR,), sr(REJECTED), False, id="rejected-query-counts"),
        pytest.param((rel(maxRatio=1.2),), both(20.0, None), False, id="primary-without-data-counts"),
        pytest.param(
            (rel(maxRatio=1.2),),
            {"metric:lat:canary": None, "metric:lat:primary": 20.0, "samples:canary": 500.0,
             "samples:primary": 3.0},
            False,
            id="too-few-primary-requests-counts",
        ),
        pytest.param(
            SR_AND_REL,
            {"metric:sr:canary": 0.5, "metric:lat:canary": None, "metric:lat:primary": 20.0, **ENOUGH},
            False,
            id="a-fail-is-never-waiting",
        ),
        pytest.param((SR,), sr(0.995), False, id="a-pass-is-not-waiting"),
        pytest.param((), {}, False, id="no-metrics-is-a-pass"),
    ],
)  # fmt: skip
def test_canary_unmeasured(
    metrics: tuple[dict[str, Any], ...], results: Mapping[str, Result], expected: bool
) -> None:
    out = judge_round(analysis(*metrics), results, NOW)
    assert canary_unmeasured(out) is expected, [r.reason for r in out]
