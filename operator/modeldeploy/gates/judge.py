"""A gate run's answers -> one three-valued result per check, and their combined verdict.

Pure. Fail means the check was measured on enough answered examples and broke its threshold.
Inconclusive means it could not be measured: too few examples answered (`minAnswered`), no labels
for accuracy, no primary for agreement, fewer than two groups for parity, or a model that could
not be asked at all. Only configured checks (a threshold set) are reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modeldeploy.api.base import parse_duration
from modeldeploy.api.spec import Gates
from modeldeploy.api.status import GateCheck, Verdict
from modeldeploy.gates import checks
from modeldeploy.gates.contract import Change
from modeldeploy.gates.golden import GoldenSet, Scalar

CONTRACT = "contract"
ACCURACY = "accuracy"
AGREEMENT = "agreement"
PSI = "psi"
LATENCY_P95 = "latencyP95"
DEMOGRAPHIC_PARITY = "demographicParity"

DEFAULT_MIN_ANSWERED = 20


@dataclass(frozen=True)
class Thresholds:
    min_accuracy: float | None = None
    min_agreement: float | None = None
    max_psi: float | None = None
    max_latency_p95: float | None = None  # seconds
    min_demographic_parity: float | None = None
    positive_value: Scalar = "1"
    min_answered: int = DEFAULT_MIN_ANSWERED

    def any_quality_check(self) -> bool:
        return any(
            t is not None
            for t in (
                self.min_accuracy,
                self.min_agreement,
                self.max_psi,
                self.max_latency_p95,
                self.min_demographic_parity,
            )
        )


def thresholds_of(gates: Gates) -> Thresholds:
    """The thresholds of `spec.rollout.gates`, latency in seconds."""
    latency = gates.max_latency_p95
    return Thresholds(
        min_accuracy=gates.min_accuracy,
        min_agreement=gates.min_agreement,
        max_psi=gates.max_psi,
        max_latency_p95=None if latency is None else parse_duration(latency),
        min_demographic_parity=gates.min_demographic_parity,
        positive_value=gates.positive_class,
        min_answered=gates.golden_set.min_answered if gates.golden_set is not None else DEFAULT_MIN_ANSWERED,
    )


@dataclass(frozen=True)
class Answers:
    """What one model answered: a top-1 per golden-set example (None: not answered), whether they
    are continuous scores, each request's client-side latency, and the first failure, if any."""

    predictions: tuple[Scalar | None, ...]
    continuous: bool = False
    latencies: tuple[float, ...] = ()
    error: str | None = None

    @property
    def answered(self) -> int:
        return sum(p is not None for p in self.predictions)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.4g}ms"


def _bound(name: str, value: float, threshold: float, *, upper: bool, shown: str, detail: str) -> GateCheck:
    holds = value <= threshold if upper else value >= threshold
    if upper:
        said = f"{shown} {'<=' if holds else '>'} max {_show(name, threshold)}"
    else:
        said = f"{shown} {'>=' if holds else '<'} min {_show(name, threshold)}"
    return GateCheck(
        name=name,
        value=value,
        threshold=threshold,
        verdict=Verdict.PASS if holds else Verdict.FAIL,
        message=f"{said} ({detail})" if detail else said,
    )


def _show(name: str, value: float) -> str:
    return _ms(value) if name == LATENCY_P95 else _fmt(value)


def _open(name: str, threshold: float, message: str) -> GateCheck:
    return GateCheck(name=name, threshold=threshold, verdict=Verdict.INCONCLUSIVE, message=message)


def contract_check(changes: Sequence[Change], *, allow_breaking: bool) -> GateCheck:
    """Fail on a breaking change unless allowed; the message lists every change."""
    breaking = [c for c in changes if c.breaking]
    compatible = [c for c in changes if not c.breaking]
    if breaking and not allow_breaking:
        verdict, said = Verdict.FAIL, "breaking: " + "; ".join(c.reason for c in breaking)
    elif breaking:
        verdict = Verdict.PASS
        said = "breaking changes accepted by allowContractChange: " + "; ".join(c.reason for c in breaking)
    else:
        verdict, said = Verdict.PASS, "no breaking change"
    if compatible:
        said += "; compatible: " + "; ".join(c.reason for c in compatible)
    elif not breaking:
        said = "same contract as the primary"
    return GateCheck(name=CONTRACT, value=float(len(breaking)), threshold=0.0, verdict=verdict, message=said)


def unreachable(thresholds: Thresholds, reason: str, *, contract: bool = False) -> list[GateCheck]:
    """Every configured check Inconclusive for one reason: the model unreachable, the set unreadable."""
    out = [GateCheck(name=CONTRACT, verdict=Verdict.INCONCLUSIVE, message=reason)] if contract else []
    for name, threshold in _configured(thresholds):
        out.append(_open(name, threshold, reason))
    return out


def refused(thresholds: Thresholds, reason: str) -> list[GateCheck]:
    """Every configured quality check Fail for one reason: the golden set is invalid as the user
    gave it (too large, too deep, not JSON lines, shapes that differ), which no retry can mend."""
    return [
        GateCheck(name=name, threshold=threshold, verdict=Verdict.FAIL, message=reason)
        for name, threshold in _configured(thresholds)
    ]


def check_names(gates: Gates) -> list[str]:
    """The checks a gate run of `gates` reports, in the order it reports them."""
    names = [CONTRACT] if gates.contract.enabled else []
    return names + [name for name, _ in _configured(thresholds_of(gates))]


def _configured(t: Thresholds) -> list[tuple[str, float]]:
    pairs = [
        (ACCURACY, t.min_accuracy),
        (AGREEMENT, t.min_agreement),
        (PSI, t.max_psi),
        (LATENCY_P95, t.max_latency_p95),
        (DEMOGRAPHIC_PARITY, t.min_demographic_parity),
    ]
    return [(name, value) for name, value in pairs if value is not None]


def judge_run(
    golden: GoldenSet, thresholds: Thresholds, canary: Answers, primary: Answers | None
) -> list[GateCheck]:
    """One GateCheck per configured quality check, in a fixed order. `primary` None: none serves."""
    if len(canary.predictions) != len(golden.examples):
        raise ValueError("one canary prediction per golden-set example")
    if primary is not None and len(primary.predictions) != len(golden.examples):
        raise ValueError("one primary prediction per golden-set example")
    need = thresholds.min_answered
    total = len(golden.examples)
    if canary.answered < need:
        why = f"only {canary.answered} of {total} examples answered by the canary, need {need}"
        return unreachable(thresholds, f"{why}: {canary.error}" if canary.error else why)

    out = []
    for name, threshold in _configured(thresholds):
        if name == ACCURACY:
            out.append(_accuracy(golden, thresholds, canary, threshold))
        elif name == AGREEMENT:
            out.append(_agreement(thresholds, canary, primary, threshold))
        elif name == PSI:
            out.append(_psi(golden, thresholds, canary, primary, threshold))
        elif name == LATENCY_P95:
            value = checks.p95(canary.latencies)
            detail = f"{len(canary.latencies)} requests, client-side"
            out.append(
                _bound(name, value, threshold, upper=True, shown=f"p95 latency {_ms(value)}", detail=detail)
            )
        else:
            out.append(_parity(golden, thresholds, canary, threshold))
    return out


def _accuracy(golden: GoldenSet, t: Thresholds, canary: Answers, threshold: float) -> GateCheck:
    if canary.continuous:
        return _open(
            ACCURACY, threshold, "accuracy needs class outputs; the prediction output is a float score"
        )
    pairs = [
        (p, e.label)
        for p, e in zip(canary.predictions, golden.examples, strict=True)
        if p is not None and e.label is not None
    ]
    if len(pairs) < t.min_answered:
        return _open(
            ACCURACY, threshold, f"only {len(pairs)} answered examples have a label, need {t.min_answered}"
        )
    value = checks.accuracy([p for p, _ in pairs], [y for _, y in pairs])
    return _bound(
        ACCURACY,
        value,
        threshold,
        upper=False,
        shown=f"accuracy {_fmt(value)}",
        detail=f"{len(pairs)} labelled",
    )


def _agreement(t: Thresholds, canary: Answers, primary: Answers | None, threshold: float) -> GateCheck:
    if primary is None:
        return _open(AGREEMENT, threshold, "no primary serving to compare with")
    if canary.continuous:
        return _open(
            AGREEMENT, threshold, "agreement needs class outputs; the prediction output is a float score"
        )
    pairs = [
        (c, p)
        for c, p in zip(canary.predictions, primary.predictions, strict=True)
        if c is not None and p is not None
    ]
    if len(pairs) < t.min_answered:
        why = f"only {len(pairs)} examples answered by both canary and primary, need {t.min_answered}"
        return _open(AGREEMENT, threshold, f"{why}: {primary.error}" if primary.error else why)
    value = checks.agreement([c for c, _ in pairs], [p for _, p in pairs])
    return _bound(
        AGREEMENT,
        value,
        threshold,
        upper=False,
        shown=f"agreement {_fmt(value)}",
        detail=f"{len(pairs)} examples",
    )


def _psi(
    golden: GoldenSet, t: Thresholds, canary: Answers, primary: Answers | None, threshold: float
) -> GateCheck:
    actual = [p for p in canary.predictions if p is not None]
    if primary is not None:
        reference = [p for p in primary.predictions if p is not None]
        against = "the primary"
        if len(reference) < t.min_answered:
            why = f"only {len(reference)} examples answered by the primary, need {t.min_answered}"
            return _open(PSI, threshold, f"{why}: {primary.error}" if primary.error else why)
    elif golden.has_labels:
        reference = [e.label for e in golden.examples if e.label is not None]
        against = "the labels"
    else:
        return _open(
            PSI, threshold, "no reference distribution: no primary serving and no labels in the golden set"
        )
    binning = "reference deciles" if canary.continuous else "one bin per class"
    try:
        value = checks.psi(reference, actual, continuous_values=canary.continuous)
    except ValueError as err:  # a float score against string labels, say
        return _open(PSI, threshold, f"PSI against {against} not computable: {err}")
    return _bound(
        PSI,
        value,
        threshold,
        upper=True,
        shown=f"PSI {_fmt(value)} vs {against}",
        detail=f"{binning}, {len(actual)} examples",
    )


def _parity(golden: GoldenSet, t: Thresholds, canary: Answers, threshold: float) -> GateCheck:
    pairs = [
        (p, e.group)
        for p, e in zip(canary.predictions, golden.examples, strict=True)
        if p is not None and e.group is not None
    ]
    groups = {g for _, g in pairs}
    if len(groups) < 2:
        return _open(
            DEMOGRAPHIC_PARITY,
            threshold,
            f"demographic parity needs 2 or more groups in the answered examples, found {len(groups)}",
        )
    rates = checks.positive_rates([p for p, _ in pairs], [g for _, g in pairs], t.positive_value)
    value = checks.demographic_parity(rates)
    low = min(rates, key=rates.__getitem__)
    high = max(rates, key=rates.__getitem__)
    positive = f"positive ({checks.as_text(t.positive_value)}) rate"
    detail = (
        f"{positive} {_fmt(rates[low])} in group {low}, {_fmt(rates[high])} in {high}"
        if rates[low] != rates[high]
        else f"{positive} {_fmt(rates[low])} in every group"
    )
    return _bound(
        DEMOGRAPHIC_PARITY,
        value,
        threshold,
        upper=False,
        shown=f"demographic parity {_fmt(value)}",
        detail=detail,
    )


def overall(results: Sequence[GateCheck]) -> Verdict:
    """Any Fail fails the gate; else any Inconclusive holds it; else (or with no checks) it passes."""
    return Verdict.combined(r.verdict for r in results)


def explain(results: Sequence[GateCheck]) -> str:
    """One line for a condition or Event: the checks that decided the verdict, named."""
    verdict = overall(results)
    if not results:
        return "no gate checks configured"
    if verdict == Verdict.PASS:
        return f"all {len(results)} gate checks passed"
    return "; ".join(f"{r.name}: {r.message}" for r in results if Verdict(r.verdict) == verdict)
