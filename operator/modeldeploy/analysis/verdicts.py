"""Three-valued verdicts: the numbers one analysis round measured -> Pass, Fail or Inconclusive.

Pure. Fail means the canary was measured, with enough traffic, and broke a threshold. Everything
that leaves the question open is Inconclusive, never Fail and never Pass: no data (an empty result
or NaN), fewer requests than `minSampleCount` on a track being judged, and the metrics provider
unreachable or erroring. The rollout holds the step on Inconclusive until `inconclusive.limit`,
then runs `inconclusive.action` (docs/analysis.md). `canary_unmeasured()` tells the rounds in which
nothing of the canary was measured yet, which the rollout does not count for a while (a new pod's
series exist only once Prometheus has discovered and scraped it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modeldeploy.analysis.templates import TEMPLATE_LABELS, Track, metric_key, samples_key
from modeldeploy.api.spec import Analysis, AnalysisMetric, AnalysisTemplate
from modeldeploy.api.status import MetricResult, Verdict


@dataclass(frozen=True)
class ProviderFailure:
    """A query the provider could not answer. `reason` is one line, safe to show (no credentials)."""

    reason: str
    # True when the provider could not be reached at all (as opposed to rejecting the query).
    unreachable: bool = False


Result = float | None | ProviderFailure

# A label set as Prometheus prints one: `{pod="a", namespace="b"}`, nested ones included.
_LABEL_SET = re.compile(r"\{[^{}]*\}")


def without_label_sets(text: str) -> str:
    """`text` with every `{...}` taken out. Reasons go to status and Events, which whoever made the
    object can read, while the series' labels are the whole cluster's (docs/security.md): a
    provider's message may count series and show values, never label sets."""
    for _ in range(8):  # innermost first; a bound, as the text is a server's
        scrubbed = _LABEL_SET.sub("\0", text)
        if scrubbed == text:
            break
        text = scrubbed
    if "{" in text:
        text = text[: text.index("{")] + "\0"  # nested deeper than that: cut the rest
    return text.replace("}", "").replace("\0", "{...}")


# How the reasons of "nothing of the canary measured" begin: its series match nothing (not
# discovered or scraped yet), hold only NaN (no traffic in the window), or count no requests.
NO_CANARY_DATA = f"no data for the {Track.CANARY.value}"
NO_CANARY_REQUESTS = f"only 0 requests on the {Track.CANARY.value},"


def _number(result: Result) -> float | None:
    # NaN (0/0 with no traffic) and infinities carry no measurement; providers map them to None
    # already, and this keeps a careless provider from turning them into a Fail.
    if isinstance(result, int | float) and math.isfinite(result):
        return float(result)
    return None


def _fmt(value: float) -> str:
    # Six significant digits: enough that "0.98995 < min 0.99" never prints as "0.99 < min 0.99".
    return f"{value:.6g}"


def _label(metric: AnalysisMetric) -> tuple[str, str]:
    if metric.template is not None:
        return TEMPLATE_LABELS[AnalysisTemplate(metric.template)]
    return metric.name, ""


def _ratio(canary: float, primary: float) -> float:
    # A zero primary is explicit: equal zeros are a ratio of 1 (no change); a non-zero canary
    # against a zero primary is unbounded, so it breaks any maxRatio (use maxDelta for metrics
    # that are often zero, such as error counts).
    if primary == 0:
        return 1.0 if canary == 0 else math.copysign(math.inf, canary)
    return canary / primary


def _fmt_ratio(ratio: float) -> str:
    return "unbounded" if math.isinf(ratio) else f"{ratio:.3g}x"


@dataclass(frozen=True)
class _Judgement:
    verdict: Verdict
    reason: str


def _samples_gap(analysis: Analysis, results: Mapping[str, Result], tracks: Sequence[Track]) -> str | None:
    need = analysis.min_sample_count
    if need <= 0:
        return None
    for track in tracks:
        count = _number(results.get(samples_key(track)))
        if count is None or count < need:
            # increase() extrapolates to fractions: floor, so 99.6 never reads as "100, need 100".
            got = 0 if count is None else max(0, math.floor(count))
            return f"only {got} requests on the {track.value}, need {need}"
    return None


def _judge(
    metric: AnalysisMetric,
    analysis: Analysis,
    results: Mapping[str, Result],
    value: float | None,
    primary_value: float | None,
) -> _Judgement:
    label, unit = _label(metric)
    relative = metric.relative_to_primary
    tracks = [Track.CANARY, Track.PRIMARY] if relative is not None else [Track.CANARY]

    # 1. The provider failed: say so first, it is what an operator must fix.
    keys = [metric_key(metric.name, t) for t in tracks]
    if analysis.min_sample_count > 0:
        keys += [samples_key(t) for t in tracks]
    for key in keys:
        if key not in results:
            return _Judgement(Verdict.INCONCLUSIVE, f"not measured: no result for {key}")
        result = results[key]
        if isinstance(result, ProviderFailure):
            return _Judgement(Verdict.INCONCLUSIVE, without_label_sets(result.reason))

    # 2. Too little traffic to judge: even a bad-looking value is noise at this sample size.
    gap = _samples_gap(analysis, results, tracks)
    if gap is not None:
        if value is not None:
            gap += f" ({label} {_fmt(value)}{unit} not judged yet)"
        return _Judgement(Verdict.INCONCLUSIVE, gap)

    # 3. No data: nothing scraped yet, no traffic in the window, or a query matching nothing.
    for track, measured in zip(tracks, (value, primary_value), strict=False):
        if measured is None:
            return _Judgement(
                Verdict.INCONCLUSIVE,
                f"no data for the {track.value}: the query returned nothing or NaN "
                "(no traffic in the interval, not scraped yet, or labels that match no series)",
            )
    assert value is not None

    # 4. Thresholds. Every broken one is reported, so one round tells the whole story.
    shown = f"{label} {_fmt(value)}{unit}"
    checks: list[tuple[bool, str, str]] = []  # (holds, the bound, what to say when broken)
    if metric.min is not None:
        low = f"min {_fmt(metric.min)}{unit}"
        checks.append((value >= metric.min, low, f"{shown} < {low}"))
    if metric.max is not None:
        high = f"max {_fmt(metric.max)}{unit}"
        checks.append((value <= metric.max, high, f"{shown} > {high}"))
    if relative is not None:
        assert primary_value is not None
        versus = f"{shown} vs primary {_fmt(primary_value)}{unit}"
        ratio, delta = _ratio(value, primary_value), value - primary_value
        if relative.max_ratio is not None:
            text = f"maxRatio {_fmt(relative.max_ratio)}"
            checks.append(
                (ratio <= relative.max_ratio, text, f"{versus}: ratio {_fmt_ratio(ratio)} > {text}")
            )
        if relative.min_ratio is not None:
            text = f"minRatio {_fmt(relative.min_ratio)}"
            checks.append(
                (ratio >= relative.min_ratio, text, f"{versus}: ratio {_fmt_ratio(ratio)} < {text}")
            )
        if relative.max_delta is not None:
            text = f"maxDelta {_fmt(relative.max_delta)}{unit}"
            checks.append((delta <= relative.max_delta, text, f"{versus}: delta {delta:+.6g}{unit} > {text}"))
        if relative.min_delta is not None:
            text = f"minDelta {_fmt(relative.min_delta)}{unit}"
            checks.append((delta >= relative.min_delta, text, f"{versus}: delta {delta:+.6g}{unit} < {text}"))
        shown = versus

    broken = [said for holds, _, said in checks if not holds]
    if broken:
        return _Judgement(Verdict.FAIL, "; ".join(broken))
    return _Judgement(Verdict.PASS, f"{shown} within {', '.join(b for _, b, _ in checks)}")


def judge_round(analysis: Analysis, results: Mapping[str, Result], now: str) -> list[MetricResult]:
    """One MetricResult per configured metric, in spec order. `results` is keyed as plan() keys them."""
    out = []
    for metric in analysis.metrics:
        value = _number(results.get(metric_key(metric.name, Track.CANARY)))
        primary_value = None
        if metric.relative_to_primary is not None:
            primary_value = _number(results.get(metric_key(metric.name, Track.PRIMARY)))
        judgement = _judge(metric, analysis, results, value, primary_value)
        out.append(
            MetricResult(
                name=metric.name,
                value=value,
                primary_value=primary_value,
                verdict=judgement.verdict,
                reason=judgement.reason,
                at=now,
            )
        )
    return out


def overall(results: Sequence[MetricResult]) -> Verdict:
    """Any Fail fails the round; else any Inconclusive leaves it open; else it passes.

    No metrics configured is a Pass: the step is then gated by the canary's readiness alone, as
    with Flagger and Argo Rollouts when no analysis is declared.
    """
    return Verdict.combined(r.verdict for r in results)


def canary_unmeasured(results: Sequence[MetricResult]) -> bool:
    """Whether a round is open only because nothing of the canary was measured.

    True when no metric failed and every Inconclusive one has no canary value for want of canary
    data or requests: not a provider failure, not a primary without data, not a canary measured
    on too few requests. That is what every round looks like until Prometheus has discovered and
    scraped a new canary pod twice (`rate()` needs two samples).
    """
    unsure = [r for r in results if Verdict(r.verdict) == Verdict.INCONCLUSIVE]
    if not unsure or any(Verdict(r.verdict) == Verdict.FAIL for r in results):
        return False
    return all(r.value is None and r.reason.startswith((NO_CANARY_DATA, NO_CANARY_REQUESTS)) for r in unsure)


def explain(results: Sequence[MetricResult]) -> str:
    """One line for a condition message: the metrics that decided the overall verdict."""
    verdict = overall(results)
    deciding = [r for r in results if Verdict(r.verdict) == verdict] if verdict != Verdict.PASS else []
    if not results:
        return "no analysis metrics configured: readiness alone gates the step"
    if not deciding:
        return f"all {len(results)} analysis metrics passed"
    return "; ".join(f"{r.name}: {r.reason}" for r in deciding)
