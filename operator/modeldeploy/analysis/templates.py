"""PromQL for one analysis round: the built-in templates over Triton's metrics, and custom queries.

Pure: strings in, strings out. The labels are the ones render/podmonitor.py gives Triton's series
(`namespace`, `modeldeployment`, `track`, plus Triton's own `model`); docs/analysis.md shows every
query. A round measures the canary, the primary too for metrics compared relative to it, and the
request count per track for `minSampleCount`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from modeldeploy.api.base import Track as Track  # the values of the PodMonitor's `track` label
from modeldeploy.api.spec import Analysis, AnalysisMetric, AnalysisTemplate


class QueryKind(StrEnum):
    METRIC = "metric"
    SAMPLES = "samples"


class TemplateError(ValueError):
    """A custom query the operator cannot run: the spec is invalid, not the canary."""

    def __init__(self, metric: str, message: str) -> None:
        super().__init__(f"analysis metric {metric!r}: {message}")
        self.metric = metric


# Prometheus's duration syntax, a superset of the spec's Go durations ("1m30s", "500ms").
_PROM_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


@dataclass(frozen=True)
class QueryContext:
    """What the templates fill in. primary/canary are the Deployment names, interval the window."""

    namespace: str
    name: str
    primary: str
    canary: str
    interval: str
    model: str

    def __post_init__(self) -> None:
        # The interval goes into range selectors unquoted, so it must be a duration and nothing else.
        if not _PROM_DURATION.match(self.interval):
            raise ValueError(f"interval {self.interval!r} is not a Prometheus duration such as 1m or 90s")


@dataclass(frozen=True)
class Query:
    key: str
    kind: QueryKind
    track: Track
    promql: str
    metric: str | None = None  # None for the samples queries, which every metric shares


def metric_key(metric: str, track: Track) -> str:
    # Metric names are DNS labels, so ":" cannot occur in them and keys never collide.
    return f"metric:{metric}:{track.value}"


def samples_key(track: Track) -> str:
    return f"samples:{track.value}"


# ------------------------------------------------------------------------------------ escaping


def escape_label_value(value: str) -> str:
    """`value` as the inside of a double-quoted PromQL string (Go string-literal escapes)."""
    return (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )


def _selector(metric_name: str, ctx: QueryContext, track: Track) -> str:
    labels = {
        "namespace": ctx.namespace,
        "modeldeployment": ctx.name,
        "track": track.value,
        "model": ctx.model,
    }
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
    return f"{metric_name}{{{inner}}}"


def _sum(fn: str, metric_name: str, ctx: QueryContext, track: Track) -> str:
    return f"sum({fn}({_selector(metric_name, ctx, track)}[{ctx.interval}]))"


# ----------------------------------------------------------------------------------- templates

SUCCESS = "nv_inference_request_success"
FAILURE = "nv_inference_request_failure"
REQUEST_DURATION = "nv_inference_request_duration_us"
QUEUE_DURATION = "nv_inference_queue_duration_us"


def _failures(fn: str, ctx: QueryContext, track: Track) -> str:
    # Triton creates failure series lazily in some versions (and per `reason` label in newer ones):
    # a model that never failed may have none, which must count as zero, not as "no data".
    return f"({_sum(fn, FAILURE, ctx, track)} or vector(0))"


def success_rate(ctx: QueryContext, track: Track) -> str:
    ok = _sum("rate", SUCCESS, ctx, track)
    # No traffic gives 0/0 = NaN, which the provider reports as no data (Inconclusive).
    return f"{ok} / ({ok} + {_failures('rate', ctx, track)})"


def _per_success_ms(duration_metric: str, ctx: QueryContext, track: Track) -> str:
    # Triton adds to the duration counters on successful requests only, so divide by successes.
    return f"{_sum('rate', duration_metric, ctx, track)} / {_sum('rate', SUCCESS, ctx, track)} / 1000"


def request_latency_ms(ctx: QueryContext, track: Track) -> str:
    return _per_success_ms(REQUEST_DURATION, ctx, track)


def queue_time_ms(ctx: QueryContext, track: Track) -> str:
    return _per_success_ms(QUEUE_DURATION, ctx, track)


def samples(ctx: QueryContext, track: Track) -> str:
    """Requests (successful or not) the track served over the interval: the sample count."""
    return f"{_sum('increase', SUCCESS, ctx, track)} + {_failures('increase', ctx, track)}"


TEMPLATES: Mapping[AnalysisTemplate, Callable[[QueryContext, Track], str]] = {
    AnalysisTemplate.SUCCESS_RATE: success_rate,
    AnalysisTemplate.REQUEST_LATENCY_MS: request_latency_ms,
    AnalysisTemplate.QUEUE_TIME_MS: queue_time_ms,
}

# What a reason calls each template's value, and its unit ("request latency 41.2ms > max 30ms").
TEMPLATE_LABELS: Mapping[AnalysisTemplate, tuple[str, str]] = {
    AnalysisTemplate.SUCCESS_RATE: ("success rate", ""),
    AnalysisTemplate.REQUEST_LATENCY_MS: ("request latency", "ms"),
    AnalysisTemplate.QUEUE_TIME_MS: ("queue time", "ms"),
}

# ------------------------------------------------------------------------------- custom queries

VARIABLES = ("namespace", "name", "primary", "canary", "interval", "model", "target", "track")
_VARIABLE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_TRACK_VARIABLES = frozenset({"target", "track"})


def variables_in(query: str) -> list[str]:
    """The template variables a custom query uses, in order of first use."""
    return list(dict.fromkeys(_VARIABLE.findall(query)))


def check_custom(metric: AnalysisMetric) -> None:
    """Raise TemplateError when a custom query cannot be rendered, before anything is queried."""
    if metric.query is None:
        return
    used = variables_in(metric.query)
    unknown = [v for v in used if v not in VARIABLES]
    if unknown:
        known = ", ".join("{{" + v + "}}" for v in VARIABLES)
        raise TemplateError(
            metric.name, f"unknown template variable {{{{{unknown[0]}}}}} in query; known: {known}"
        )
    if metric.relative_to_primary is not None and not _TRACK_VARIABLES.intersection(used):
        # Without {{target}} or {{track}} the primary's query would be the canary's, and the
        # comparison would always see a ratio of 1: refuse rather than pass silently.
        raise TemplateError(
            metric.name,
            "relativeToPrimary needs the query to measure the track under test: "
            "use {{target}} (the Deployment name) or {{track}} (primary or canary) in it",
        )


def check(analysis: Analysis) -> list[str]:
    """Every problem with the analysis's custom queries, as messages for the Ready condition."""
    problems = []
    for metric in analysis.metrics:
        try:
            check_custom(metric)
        except TemplateError as err:
            problems.append(str(err))
    return problems


def render_custom(metric: AnalysisMetric, ctx: QueryContext, track: Track) -> str:
    assert metric.query is not None
    check_custom(metric)
    values = {
        "namespace": ctx.namespace,
        "name": ctx.name,
        "primary": ctx.primary,
        "canary": ctx.canary,
        # A duration goes into a range selector, not a string: QueryContext validated it.
        "interval": ctx.interval,
        "model": ctx.model,
        "target": ctx.primary if track is Track.PRIMARY else ctx.canary,
        "track": track.value,
    }
    escaped = {k: v if k == "interval" else escape_label_value(v) for k, v in values.items()}
    return _VARIABLE.sub(lambda m: escaped[m.group(1)], metric.query)


def metric_query(metric: AnalysisMetric, ctx: QueryContext, track: Track) -> Query:
    if metric.template is not None:
        promql = TEMPLATES[AnalysisTemplate(metric.template)](ctx, track)
    else:
        promql = render_custom(metric, ctx, track)
    return Query(
        key=metric_key(metric.name, track),
        kind=QueryKind.METRIC,
        track=track,
        promql=promql,
        metric=metric.name,
    )


# One round's queries together: a slow or hostile Prometheus costs a round this much at most (each
# query has the provider's own 5 s deadline within it), and the machine looks again after it.
ROUND_DEADLINE_SECONDS = 10.0


def plan(analysis: Analysis, ctx: QueryContext) -> list[Query]:
    """Every query one analysis round needs, in a stable order. Raises TemplateError."""
    queries: list[Query] = []
    relative = False
    for metric in analysis.metrics:
        queries.append(metric_query(metric, ctx, Track.CANARY))
        if metric.relative_to_primary is not None:
            relative = True
            queries.append(metric_query(metric, ctx, Track.PRIMARY))
    if analysis.metrics and analysis.min_sample_count > 0:
        # Once per track, shared by every metric of the round.
        queries.append(
            Query(samples_key(Track.CANARY), QueryKind.SAMPLES, Track.CANARY, samples(ctx, Track.CANARY))
        )
        if relative:
            queries.append(
                Query(
                    samples_key(Track.PRIMARY), QueryKind.SAMPLES, Track.PRIMARY, samples(ctx, Track.PRIMARY)
                )
            )
    return queries


def context_for(namespace: str, name: str, interval: str, model: str) -> QueryContext:
    """The context for a ModelDeployment; the Deployment names follow render/names.py."""
    return QueryContext(
        namespace=namespace,
        name=name,
        primary=f"{name}-{Track.PRIMARY.value}",
        canary=f"{name}-{Track.CANARY.value}",
        interval=interval,
        model=model,
    )
