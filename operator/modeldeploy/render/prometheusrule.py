"""The PrometheusRule that keeps watching a model after its rollout: alerts on the serving track.

Pure. The expressions read Triton's series with the labels render/podmonitor.py adds
(`namespace`, `modeldeployment`, `track`) plus Triton's own `model`, and only the primary
track: a canary is judged by the rollout analysis, which rolls it back on its own. Each rule sums
over the primary's pods, so an alert is about the ModelDeployment, named by the static
`namespace` and `modeldeployment` labels. docs/metrics.md#alerts shows every expression.
"""

from __future__ import annotations

from typing import Any

from modeldeploy.api.base import parse_duration
from modeldeploy.api.resource import ObjectRef
from modeldeploy.api.spec import Alerts, ModelDeploymentSpec
from modeldeploy.render.names import Track, metadata
from modeldeploy.render.options import RenderOptions

SUCCESS = "nv_inference_request_success"
FAILURE = "nv_inference_request_failure"
QUEUE_DURATION = "nv_inference_queue_duration_us"
# Only with `--metrics-config=summary_latencies=true`: Triton's duration metrics are cumulative
# counters, which give a mean, never a percentile (docs/metrics.md#alerts says why not histograms).
REQUEST_SUMMARY = "nv_inference_request_summary_us"
GPU_UTILIZATION = "nv_gpu_utilization"

ERROR_RATE = "ModelDeploymentErrorRateHigh"
LATENCY = "ModelDeploymentLatencyP95High"
LATENCY_UNMEASURED = "ModelDeploymentLatencyUnmeasured"
QUEUE_TIME = "ModelDeploymentQueueTimeGrowing"
GPU = "ModelDeploymentGPUUtilizationHigh"
# How long requests may flow without a latency summary before that is worth saying.
UNMEASURED_FOR = "15m"


def _quote(value: str) -> str:
    # A double-quoted PromQL string (Go string-literal escapes), as analysis.templates writes them;
    # render/ sits below analysis/ in the layers, so it cannot import that one.
    for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        value = value.replace(raw, escaped)
    return f'"{value}"'


def _number(value: float) -> str:
    """A threshold as PromQL reads it: 0.01, 2, 250 (never 2.0 or 1e-02 where avoidable)."""
    return f"{value:g}"


def _ms(duration: str) -> str:
    return _number(parse_duration(duration) * 1000)


class _Selectors:
    def __init__(self, parent: ObjectRef, model: str) -> None:
        self._base = {
            "namespace": parent.namespace,
            "modeldeployment": parent.name,
            "track": Track.PRIMARY.value,
        }
        self._model = model

    def __call__(self, metric: str, *, model: bool = True, **extra: str) -> str:
        labels = {**self._base, **({"model": self._model} if model else {}), **extra}
        return metric + "{" + ",".join(f"{k}={_quote(v)}" for k, v in labels.items()) + "}"


def _rate_sum(selector: str, window: str, offset: str | None = None) -> str:
    return f"sum(rate({selector}[{window}]{f' offset {offset}' if offset else ''}))"


def _rule(alert: str, expr: str, for_: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    return {
        "alert": alert,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description},
    }


def alert_rules(parent: ObjectRef, spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    """The alerting rules `spec.alerts` asks for, in a stable order."""
    alerts: Alerts = spec.alerts
    if not alerts.enabled:
        return []
    sel = _Selectors(parent, spec.model.name)
    window = alerts.window
    who = f"{parent.namespace}/{parent.name}"
    rules: list[dict[str, Any]] = []

    if alerts.error_rate.enabled:
        failed = _rate_sum(sel(FAILURE), window)
        ok = _rate_sum(sel(SUCCESS), window)
        # No failure series (Triton creates it at the first failure) means no alert, as it should;
        # no traffic gives 0/0 = NaN, which compares false.
        rules.append(
            _rule(
                ERROR_RATE,
                f"{failed} / ({ok} + {failed}) > {_number(alerts.error_rate.max)}",
                alerts.error_rate.for_,
                "critical",
                f"{who}: {{{{ $value | humanizePercentage }}}} of requests fail",
                f"More than {_number(alerts.error_rate.max * 100)}% of the requests to model "
                f"{spec.model.name} failed over {window}, for {alerts.error_rate.for_}.",
            )
        )

    latency = alerts.latency_p95
    if latency.max is not None:
        p95 = sel(REQUEST_SUMMARY, quantile="0.95")
        # A summary's quantiles are per pod and cannot be averaged: the worst pod's p95 counts.
        rules.append(
            _rule(
                LATENCY,
                f"max({p95}) / 1000 > {_ms(latency.max)}",
                latency.for_,
                "warning",
                f"{who}: p95 request latency {{{{ $value | humanize }}}}ms is over its SLA of {latency.max}",
                f"The slowest pod's p95 end-to-end request latency for model {spec.model.name} (Triton's "
                f"nv_inference_request_summary_us) has been above {latency.max} for {latency.for_}.",
            )
        )
        # Without summaries the rule above can never fire: say so rather than stay silent.
        rules.append(
            _rule(
                LATENCY_UNMEASURED,
                f"{_rate_sum(sel(SUCCESS), window)} > 0 unless on() count({p95})",
                UNMEASURED_FOR,
                "info",
                f"{who}: serving requests, but Triton reports no latency summary",
                "The latency SLA alert needs --metrics-config=summary_latencies=true in "
                "spec.runtime.args (and no response cache, which turns the summary off).",
            )
        )

    queue = alerts.queue_time
    if queue.enabled:

        def mean_queue_ms(offset: str | None = None) -> str:
            return (
                f"{_rate_sum(sel(QUEUE_DURATION), window, offset)}"
                f" / {_rate_sum(sel(SUCCESS), window, offset)} / 1000"
            )

        rules.append(
            _rule(
                QUEUE_TIME,
                f"({mean_queue_ms()} > {_number(queue.factor)} * ({mean_queue_ms(queue.baseline)}))"
                f" and ({mean_queue_ms()} > {_ms(queue.floor)})",
                queue.for_,
                "warning",
                f"{who}: mean queue time {{{{ $value | humanize }}}}ms is growing",
                f"Requests to model {spec.model.name} wait in Triton's queue more than "
                f"{_number(queue.factor)} times as long as {queue.baseline} ago (and over {queue.floor}), "
                f"for {queue.for_}: the deployment needs more replicas or a bigger batch.",
            )
        )

    gpu = alerts.gpu_utilization
    if gpu.enabled and spec.runtime.gpus > 0:
        utilization = sel(GPU_UTILIZATION, model=False)  # per GPU, not per model
        rules.append(
            _rule(
                GPU,
                f"avg(avg_over_time({utilization}[{window}])) > {_number(gpu.max)}",
                gpu.for_,
                "warning",
                f"{who}: GPUs {{{{ $value | humanizePercentage }}}} busy",
                f"The primary's GPUs have averaged above {_number(gpu.max * 100)}% utilisation for "
                f"{gpu.for_}: scale out before requests queue.",
            )
        )

    identity = {"namespace": parent.namespace, "modeldeployment": parent.name}
    for rule in rules:
        # The user's labels route (and may override severity); identity labels come last and win.
        rule["labels"] = {**rule["labels"], **alerts.labels, **identity}
    return rules


def prometheus_rule(
    parent: ObjectRef, spec: ModelDeploymentSpec, options: RenderOptions
) -> dict[str, Any] | None:
    """The PrometheusRule `<name>`, where the Prometheus Operator's CRD is installed and any alert is on.

    It carries the PodMonitor's labels: a Prometheus's ruleSelector matches the same release label
    as its podMonitorSelector (kube-prometheus-stack)."""
    if not options.prometheus_rule:
        return None
    rules = alert_rules(parent, spec)
    if not rules:
        return None
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata(parent, parent.name, dict(options.pod_monitor_labels)),
        "spec": {"groups": [{"name": f"modeldeploy.{parent.namespace}.{parent.name}", "rules": rules}]},
    }
