"""The PrometheusRule: named-case tables of the pure renderer, then the real `promtool test rules`.

promtool (Debian's `prometheus` package, `make tools-prometheus`) evaluates the rendered rules
over synthetic series in Triton's exposition format, labelled as the PodMonitor labels them: each
alert has a case that must fire and cases that must not.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modeldeploy.analysis.templates import escape_label_value
from modeldeploy.api.errors import describe
from modeldeploy.api.resource import ObjectRef, parse_spec
from modeldeploy.api.spec import ModelDeploymentSpec
from modeldeploy.render.children import stable_plan, workload_children
from modeldeploy.render.options import RenderOptions
from modeldeploy.render.prometheusrule import (
    ERROR_RATE,
    GPU,
    LATENCY,
    LATENCY_UNMEASURED,
    QUEUE_TIME,
    _quote,
    alert_rules,
    prometheus_rule,
)
from prometheus_fixture import find_prometheus, prometheus_required
from validation import validate_third_party

PARENT = ObjectRef(name="fraud-scorer", namespace="ml", uid="0b3c8f52-7d1e-4c55-9a61-2f1f7a0c9d10")
MODEL = {"name": "fraud_scorer", "version": "7", "storageUri": "s3://models/fraud_scorer/7"}


def spec_of(alerts: dict[str, Any] | None = None, gpus: int = 1) -> ModelDeploymentSpec:
    raw: dict[str, Any] = {"model": dict(MODEL), "runtime": {"gpus": gpus}}
    if alerts is not None:
        raw["alerts"] = alerts
    return parse_spec(raw)


def names(rules: list[dict[str, Any]]) -> list[str]:
    return [rule["alert"] for rule in rules]


def by_name(rules: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules}


# ====================================================================== which rules are rendered


@pytest.mark.parametrize(
    ("alerts", "gpus", "expected"),
    [
        pytest.param(None, 1, [ERROR_RATE, QUEUE_TIME, GPU], id="defaults-on-a-gpu"),
        pytest.param(None, 0, [ERROR_RATE, QUEUE_TIME], id="no-gpu-alert-without-gpus"),
        pytest.param(
            {"latencyP95": {"max": "100ms"}},
            1,
            [ERROR_RATE, LATENCY, LATENCY_UNMEASURED, QUEUE_TIME, GPU],
            id="an-sla-adds-the-latency-alerts",
        ),
        pytest.param({"errorRate": {"enabled": False}}, 1, [QUEUE_TIME, GPU], id="error-rate-off"),
        pytest.param({"queueTime": {"enabled": False}}, 1, [ERROR_RATE, GPU], id="queue-time-off"),
        pytest.param({"gpuUtilization": {"enabled": False}}, 1, [ERROR_RATE, QUEUE_TIME], id="gpu-off"),
        pytest.param({"enabled": False, "latencyP95": {"max": "1s"}}, 1, [], id="all-off"),
    ],
)
def test_rendered_alerts(alerts: dict[str, Any] | None, gpus: int, expected: list[str]) -> None:
    assert names(alert_rules(PARENT, spec_of(alerts, gpus))) == expected


@pytest.mark.parametrize(
    ("options", "alerts", "rendered"),
    [
        pytest.param(RenderOptions(), None, True, id="crd-installed"),
        pytest.param(RenderOptions(prometheus_rule=False), None, False, id="crd-absent"),
        pytest.param(RenderOptions(), {"enabled": False}, False, id="alerts-disabled"),
        pytest.param(
            RenderOptions(),
            {
                "errorRate": {"enabled": False},
                "queueTime": {"enabled": False},
                "gpuUtilization": {"enabled": False},
            },
            False,
            id="every-alert-off-no-empty-rule",
        ),
    ],
)
def test_the_rule_is_a_child_only_where_wanted(
    options: RenderOptions, alerts: dict[str, Any] | None, rendered: bool
) -> None:
    spec = spec_of(alerts)
    kinds = [c["kind"] for c in workload_children(PARENT, spec, options, stable_plan(spec))]
    assert ("PrometheusRule" in kinds) is rendered
    assert (prometheus_rule(PARENT, spec, options) is not None) is rendered


def test_the_rule_is_owned_and_labelled_like_the_pod_monitor() -> None:
    options = RenderOptions(pod_monitor_labels=(("release", "kube-prometheus-stack"),))
    rule = prometheus_rule(PARENT, spec_of(), options)
    assert rule is not None
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    meta = rule["metadata"]
    assert (meta["name"], meta["namespace"]) == ("fraud-scorer", "ml")
    assert meta["labels"]["release"] == "kube-prometheus-stack"
    assert meta["labels"]["modeldeploy.io/name"] == "fraud-scorer"
    (owner,) = meta["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ModelDeployment", PARENT.uid, True)
    (group,) = rule["spec"]["groups"]
    assert group["name"] == "modeldeploy.ml.fraud-scorer"
    validate_third_party(rule)


# ============================================================================ thresholds and labels


@pytest.mark.parametrize(
    ("alerts", "alert", "expr_part", "for_"),
    [
        pytest.param(None, ERROR_RATE, ") > 0.01", "5m", id="error-rate-default"),
        pytest.param(
            {"errorRate": {"max": 0.05, "for": "2m"}}, ERROR_RATE, ") > 0.05", "2m", id="error-rate-set"
        ),
        pytest.param({"latencyP95": {"max": "250ms"}}, LATENCY, "/ 1000 > 250", "5m", id="latency-ms"),
        pytest.param(
            {"latencyP95": {"max": "1s", "for": "10m"}}, LATENCY, "/ 1000 > 1000", "10m", id="latency-s"
        ),
        pytest.param(None, QUEUE_TIME, "> 2 * (", "10m", id="queue-factor-default"),
        pytest.param({"queueTime": {"factor": 3.5}}, QUEUE_TIME, "> 3.5 * (", "10m", id="queue-factor-set"),
        pytest.param(None, QUEUE_TIME, "[5m] offset 1h))", "10m", id="queue-baseline-default"),
        pytest.param(
            {"queueTime": {"baseline": "24h"}},
            QUEUE_TIME,
            "[5m] offset 24h))",
            "10m",
            id="queue-baseline-set",
        ),
        pytest.param(None, QUEUE_TIME, "/ 1000 > 1)", "10m", id="queue-floor-default-ms"),
        pytest.param({"queueTime": {"floor": "5ms"}}, QUEUE_TIME, "/ 1000 > 5)", "10m", id="queue-floor-set"),
        pytest.param(None, GPU, "[5m])) > 0.85", "15m", id="gpu-default"),
        pytest.param({"gpuUtilization": {"max": 0.9, "for": "30m"}}, GPU, ") > 0.9", "30m", id="gpu-set"),
        pytest.param({"window": "10m"}, GPU, "[10m])) > 0.85", "15m", id="window"),
    ],
)
def test_thresholds_come_from_the_spec(
    alerts: dict[str, Any] | None, alert: str, expr_part: str, for_: str
) -> None:
    rule = by_name(alert_rules(PARENT, spec_of(alerts)))[alert]
    assert expr_part in rule["expr"]
    assert rule["for"] == for_


@pytest.mark.parametrize(
    ("alert", "metric", "selector"),
    [
        pytest.param(
            ERROR_RATE,
            "nv_inference_request_failure",
            'namespace="ml",modeldeployment="fraud-scorer",track="primary",model="fraud_scorer"',
            id="error-rate",
        ),
        pytest.param(
            LATENCY,
            "nv_inference_request_summary_us",
            'namespace="ml",modeldeployment="fraud-scorer",track="primary",model="fraud_scorer",quantile="0.95"',
            id="latency-summary-quantile",
        ),
        pytest.param(
            QUEUE_TIME,
            "nv_inference_queue_duration_us",
            'namespace="ml",modeldeployment="fraud-scorer",track="primary",model="fraud_scorer"',
            id="queue",
        ),
        pytest.param(
            GPU,
            "nv_gpu_utilization",
            'namespace="ml",modeldeployment="fraud-scorer",track="primary"',
            id="gpu",
        ),
    ],
)
def test_expressions_select_the_primary_with_the_pod_monitor_labels(
    alert: str, metric: str, selector: str
) -> None:
    rule = by_name(alert_rules(PARENT, spec_of({"latencyP95": {"max": "1s"}})))[alert]
    assert f"{metric}{{{selector}}}" in rule["expr"]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("fraud_scorer", id="plain"),
        pytest.param('we"ird', id="quote"),
        pytest.param("back\\slash", id="backslash"),
        pytest.param("new\nline\ttab\rreturn", id="control"),
    ],
)
def test_label_values_are_quoted_as_the_analysis_quotes_them(value: str) -> None:
    assert _quote(value) == f'"{escape_label_value(value)}"'


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        pytest.param({}, {"severity": "critical"}, id="none"),
        pytest.param({"team": "payments"}, {"severity": "critical", "team": "payments"}, id="routing-label"),
        pytest.param({"severity": "page"}, {"severity": "page"}, id="severity-overridden"),
    ],
)
def test_routing_labels(labels: dict[str, str], expected: dict[str, str]) -> None:
    rule = by_name(alert_rules(PARENT, spec_of({"labels": labels})))[ERROR_RATE]
    assert rule["labels"] == {**expected, "namespace": "ml", "modeldeployment": "fraud-scorer"}


@pytest.mark.parametrize(
    ("alerts", "problem"),
    [
        pytest.param(
            {"errorRate": {"max": 0}},
            "spec.alerts.errorRate.max: must be greater than 0, not 0",
            id="rate-zero",
        ),
        pytest.param(
            {"errorRate": {"max": 1.5}},
            "spec.alerts.errorRate.max: must be less than 1, not 1.5",
            id="rate-over-1",
        ),
        pytest.param(
            {"gpuUtilization": {"max": 85}},
            "spec.alerts.gpuUtilization.max: must be less than 1, not 85",
            id="gpu-percent",
        ),
        pytest.param(
            {"queueTime": {"factor": 1}},
            "spec.alerts.queueTime.factor: must be greater than 1, not 1",
            id="factor-1",
        ),
        pytest.param(
            {"latencyP95": {"max": "2h"}},
            "spec.alerts.latencyP95.max: must be between 1ms and 1h",
            id="sla-too-long",
        ),
        pytest.param(
            {"errorRate": {"for": "48h"}},
            "spec.alerts.errorRate.for: must be between 0s and 24h",
            id="for-too-long",
        ),
        pytest.param(
            {"errorRate": {"for": "30s5m"}},
            "spec.alerts.errorRate.for: must be a Prometheus duration: hours, minutes, seconds",
            id="units-out-of-order",
        ),
        pytest.param({"window": "30s"}, "spec.alerts.window: must be between 1m and 1h", id="window-short"),
        pytest.param(
            {"window": "10m", "queueTime": {"baseline": "5m"}},
            "spec.alerts.queueTime.baseline: queueTime.baseline must be at least window",
            id="baseline-inside-window",
        ),
        pytest.param(
            {"labels": {"namespace": "x"}},
            "spec.alerts.labels: alert label names must be",
            id="reserved-label",
        ),
        pytest.param(
            {"labels": {"team-name": "x"}},
            "spec.alerts.labels: alert label names must be",
            id="bad-label-name",
        ),
        pytest.param(
            {"labels": {"__name__": "x"}},
            "spec.alerts.labels: alert label names must be",
            id="internal-label",
        ),
        pytest.param(
            {"errorRate": {"threshold": 0.1}}, "spec.alerts.errorRate.threshold: unknown field", id="unknown"
        ),
    ],
)
def test_bad_alerts_name_the_field(alerts: dict[str, Any], problem: str) -> None:
    raw = {"model": dict(MODEL), "alerts": alerts}
    with pytest.raises(ValidationError) as caught:
        ModelDeploymentSpec.model_validate(raw)
    (line,) = describe(caught.value)
    assert line.startswith(problem), line


# ==================================================================== promtool on synthetic series


def find_promtool() -> str | None:
    prometheus = find_prometheus()
    beside = Path(prometheus).with_name("promtool") if prometheus else None
    if beside is not None and beside.is_file():
        return str(beside)
    return shutil.which("promtool")


@pytest.fixture(scope="module")
def promtool() -> str:
    binary = find_promtool()
    if binary is None:
        message = "promtool is missing: run `make tools-prometheus`"
        if prometheus_required():
            pytest.fail(message + " -- CI=true, so this is a failure, not a skip")
        pytest.skip(message)
    return binary


# What the PodMonitor's relabelling and Prometheus add to a Triton series (docs/metrics.md).
def _labels(track: str = "primary", pod: str = "fraud-scorer-primary-7d9f8-x2x9k", **extra: str) -> str:
    labels = {
        "namespace": "ml",
        "pod": pod,
        "modeldeployment": "fraud-scorer",
        "track": track,
        "revision": "5f9c2e1",
        "deployment": f"fraud-scorer-{track}",
        **extra,
    }
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def triton(metric: str, values: str, track: str = "primary", pod: str = "", **extra: str) -> dict[str, str]:
    """One input series: a Triton metric of the model (GPU metrics carry gpu_uuid instead)."""
    model = {} if metric.startswith("nv_gpu_") else {"model": "fraud_scorer", "version": "1"}
    pod = pod or f"fraud-scorer-{track}-7d9f8-x2x9k"
    return {"series": f"{metric}{{{_labels(track, pod, **model, **extra)}}}", "values": values}


SUCCESS, FAILURE = "nv_inference_request_success", "nv_inference_request_failure"
QUEUE, SUMMARY, UTIL = (
    "nv_inference_queue_duration_us",
    "nv_inference_request_summary_us",
    "nv_gpu_utilization",
)


@dataclass(frozen=True)
class Case:
    alert: str
    series: list[dict[str, str]]
    eval_time: str
    fires: bool
    # $value as the annotations print it, when the alert fires.
    shown: str = ""
    alerts: dict[str, Any] = field(default_factory=dict)


CASES = [
    # -------------------------------------------------------------- error rate over 1% for 5 minutes
    pytest.param(
        Case(ERROR_RATE, [triton(SUCCESS, "0+980x30"), triton(FAILURE, "0+20x30")], "15m", True, "2%"),
        id="error-rate-2pct-fires",
    ),
    pytest.param(
        Case(ERROR_RATE, [triton(SUCCESS, "0+995x30"), triton(FAILURE, "0+5x30")], "15m", False),
        id="error-rate-half-pct-quiet",
    ),
    pytest.param(
        # 1 minute of failures, then none: over 1% for less than the 5 minutes asked for.
        Case(
            ERROR_RATE, [triton(SUCCESS, "0+1000x30"), triton(FAILURE, "0x10 0+100x1 100x19")], "15m", False
        ),
        id="error-rate-short-burst-quiet",
    ),
    pytest.param(
        Case(ERROR_RATE, [triton(SUCCESS, "0+1000x30")], "15m", False),
        id="error-rate-no-failure-series-quiet",
    ),
    pytest.param(
        # The canary failing is the rollout analysis's business: it rolls the canary back.
        Case(
            ERROR_RATE,
            [
                triton(SUCCESS, "0+1000x30"),
                triton(SUCCESS, "0+50x30", track="canary"),
                triton(FAILURE, "0+50x30", track="canary"),
            ],
            "15m",
            False,
        ),
        id="error-rate-canary-only-quiet",
    ),
    # -------------------------------------------------------------------- p95 latency over the SLA
    pytest.param(
        Case(
            LATENCY,
            [
                triton(SUMMARY, "20000x20", quantile="0.95"),
                triton(SUMMARY, "80000x20", quantile="0.95", pod="fraud-scorer-primary-7d9f8-slow1"),
            ],
            "10m",
            True,
            "80",
            {"latencyP95": {"max": "50ms"}},
        ),
        id="latency-slowest-pod-over-sla-fires",
    ),
    pytest.param(
        Case(
            LATENCY,
            [triton(SUMMARY, "40000x20", quantile="0.95")],
            "10m",
            False,
            alerts={"latencyP95": {"max": "50ms"}},
        ),
        id="latency-under-sla-quiet",
    ),
    pytest.param(
        # Only the median is slow: the p95 series is what counts.
        Case(
            LATENCY,
            [triton(SUMMARY, "90000x20", quantile="0.5"), triton(SUMMARY, "45000x20", quantile="0.95")],
            "10m",
            False,
            alerts={"latencyP95": {"max": "50ms"}},
        ),
        id="latency-other-quantile-ignored",
    ),
    pytest.param(
        # An idle pod's quantiles are NaN (prometheus-cpp): no alert.
        Case(
            LATENCY,
            [triton(SUMMARY, " ".join(["NaN"] * 21), quantile="0.95")],
            "10m",
            False,
            alerts={"latencyP95": {"max": "50ms"}},
        ),
        id="latency-idle-nan-quiet",
    ),
    pytest.param(
        Case(
            LATENCY_UNMEASURED,
            [triton(SUCCESS, "0+100x30")],
            "20m",
            True,
            alerts={"latencyP95": {"max": "50ms"}},
        ),
        id="latency-unmeasured-fires",
    ),
    pytest.param(
        Case(
            LATENCY_UNMEASURED,
            [triton(SUCCESS, "0+100x30"), triton(SUMMARY, "1000x30", quantile="0.95")],
            "20m",
            False,
            alerts={"latencyP95": {"max": "50ms"}},
        ),
        id="latency-measured-quiet",
    ),
    # ------------------------------------------------------------------------- queue time growing
    pytest.param(
        # 100 requests a minute; 0.5 ms queued each for an hour, then 3 ms each.
        Case(
            QUEUE_TIME,
            [triton(SUCCESS, "0+100x90"), triton(QUEUE, "0+50000x60 3300000+300000x30")],
            "90m",
            True,
            "3",
        ),
        id="queue-time-sixfold-fires",
    ),
    pytest.param(
        Case(QUEUE_TIME, [triton(SUCCESS, "0+100x90"), triton(QUEUE, "0+300000x90")], "90m", False),
        id="queue-time-steady-quiet",
    ),
    pytest.param(
        # Fourfold, but from 0.1 ms to 0.4 ms: under the 1 ms floor.
        Case(
            QUEUE_TIME,
            [triton(SUCCESS, "0+100x90"), triton(QUEUE, "0+10000x60 640000+40000x30")],
            "90m",
            False,
        ),
        id="queue-time-under-floor-quiet",
    ),
    pytest.param(
        # 1.5x growth: under the default factor of 2.
        Case(
            QUEUE_TIME,
            [triton(SUCCESS, "0+100x90"), triton(QUEUE, "0+200000x60 12300000+300000x30")],
            "90m",
            False,
        ),
        id="queue-time-below-factor-quiet",
    ),
    # ---------------------------------------------------------------- GPU utilisation over 85%
    pytest.param(
        Case(
            GPU,
            [triton(UTIL, "0.95x40", gpu_uuid="GPU-a"), triton(UTIL, "0.90x40", gpu_uuid="GPU-b", pod="p2")],
            "30m",
            True,
            "92.5%",
        ),
        id="gpu-busy-fires",
    ),
    pytest.param(
        Case(
            GPU,
            [triton(UTIL, "0.95x40", gpu_uuid="GPU-a"), triton(UTIL, "0.5x40", gpu_uuid="GPU-b", pod="p2")],
            "30m",
            False,
        ),
        id="gpu-one-hot-of-two-quiet",
    ),
    pytest.param(
        # Busy for 10 minutes only, after an idle 20: not yet sustained for 15 minutes.
        Case(GPU, [triton(UTIL, "0.2x20 0.95x10", gpu_uuid="GPU-a")], "30m", False),
        id="gpu-brief-quiet",
    ),
]


def _expanded(text: str, shown: str) -> str:
    for template in ("{{ $value | humanizePercentage }}", "{{ $value | humanize }}"):
        text = text.replace(template, shown)
    return text


def promtool_test(case: Case, tmp_path: Path) -> Path:
    rules = alert_rules(PARENT, spec_of(case.alerts or {"labels": {"team": "payments"}}))
    (tmp_path / "rules.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "modeldeploy", "rules": rules}]})
    )
    rule = by_name(rules)[case.alert]
    expected = []
    if case.fires:
        expected = [
            {
                "exp_labels": rule["labels"],
                "exp_annotations": {k: _expanded(v, case.shown) for k, v in rule["annotations"].items()},
            }
        ]
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": case.series,
                "alert_rule_test": [
                    {"eval_time": case.eval_time, "alertname": case.alert, "exp_alerts": expected}
                ],
            }
        ],
    }
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    return path


def run_promtool(promtool: str, test: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "test", "rules", test.name], cwd=test.parent, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("case", CASES)
def test_promtool(case: Case, promtool: str, tmp_path: Path) -> None:
    result = run_promtool(promtool, promtool_test(case, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_rules(promtool: str, tmp_path: Path) -> None:
    rule = prometheus_rule(PARENT, spec_of({"latencyP95": {"max": "50ms"}}), RenderOptions())
    assert rule is not None
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    result = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 rules found" in result.stdout


def test_promtool_fails_a_wrong_expectation(promtool: str, tmp_path: Path) -> None:
    # The cases above can fail: the firing error-rate case, expected quiet, is reported.
    firing = next(p.values[0] for p in CASES if p.id == "error-rate-2pct-fires")
    assert isinstance(firing, Case) and firing.fires
    result = run_promtool(promtool, promtool_test(Case(**{**firing.__dict__, "fires": False}), tmp_path))
    assert result.returncode == 1
    assert ERROR_RATE in result.stdout + result.stderr
