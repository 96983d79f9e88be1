"""The math of the quality checks, over the top-1 predictions of the examples that were answered.

Pure, stdlib only. A prediction is one example's top-1: the value itself when the prediction
output holds one value per example (a class label, or a score), the index of the largest value
when it holds several (class probabilities or logits). See docs/gates.md.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import Counter
from collections.abc import Sequence

from modeldeploy.gates.golden import Scalar

# A share of 0 makes ln(a/e) infinite; empty bins count as this share instead (a common floor that
# keeps one empty bin of a small golden set from dominating the index).
PSI_EPSILON = 1e-4
PSI_BINS = 10  # deciles of the reference, for continuous outputs
FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64", "BF16"})


def top1(values: Sequence[Scalar | bytes]) -> Scalar:
    """One example's top-1: its single value, or the argmax index of several (first on ties)."""
    if not values:
        raise ValueError("no values for the example")
    if len(values) == 1:
        return _normal(values[0])
    numbers = [float(v) for v in values]
    return max(range(len(numbers)), key=numbers.__getitem__)


def continuous(datatype: str, values_per_example: int) -> bool:
    """A scalar float per example is a score (binned by deciles); anything else is a class."""
    return datatype.upper() in FLOAT_DATATYPES and values_per_example == 1


def _normal(value: Scalar | bytes) -> Scalar:
    # Labels come from JSON, predictions from numpy: 1, 1.0 and True must compare equal, "a" and b"a" too.
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def same(a: Scalar, b: Scalar) -> bool:
    return _normal(a) == _normal(b)


def accuracy(predictions: Sequence[Scalar], labels: Sequence[Scalar]) -> float:
    """The share of predictions equal to their label."""
    if len(predictions) != len(labels) or not predictions:
        raise ValueError("accuracy needs as many predictions as labels, at least one")
    return sum(same(p, y) for p, y in zip(predictions, labels, strict=True)) / len(predictions)


def agreement(canary: Sequence[Scalar], primary: Sequence[Scalar]) -> float:
    """The share of examples whose top-1 is the same on the canary as on the primary."""
    return accuracy(canary, primary)


def decile_edges(reference: Sequence[float], bins: int = PSI_BINS) -> list[float]:
    """The inner bin edges: the reference's quantiles (inclusive method), duplicates dropped."""
    if len(reference) < 2:
        return []
    edges = statistics.quantiles(reference, n=bins, method="inclusive")
    return sorted(set(edges))


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [max(c / total, PSI_EPSILON) for c in counts]


def psi_from_counts(expected: Sequence[int], actual: Sequence[int]) -> float:
    """PSI = sum over bins of (a - e) * ln(a / e), shares floored at PSI_EPSILON."""
    if len(expected) != len(actual) or not expected or sum(expected) == 0 or sum(actual) == 0:
        raise ValueError("PSI needs the same bins on both sides, each with at least one value")
    return sum((a - e) * math.log(a / e) for e, a in zip(_shares(expected), _shares(actual), strict=True))


def psi(reference: Sequence[Scalar], actual: Sequence[Scalar], *, continuous_values: bool) -> float:
    """PSI of `actual` against `reference`.

    Continuous: bins are the reference's deciles, right-closed ((-inf, q1], (q1, q2], ... (q9, inf));
    tied quantiles merge bins. Classes: one bin per value seen on either side.
    """
    if not reference or not actual:
        raise ValueError("PSI needs at least one value on each side")
    if continuous_values:
        ref = [float(v) for v in reference]
        edges = decile_edges(ref)
        expected = [0] * (len(edges) + 1)
        observed = [0] * (len(edges) + 1)
        for v in ref:
            expected[bisect.bisect_left(edges, v)] += 1
        for a in actual:
            observed[bisect.bisect_left(edges, float(a))] += 1
        return psi_from_counts(expected, observed)
    ref_counts = Counter(_normal(v) for v in reference)
    act_counts = Counter(_normal(v) for v in actual)
    categories = sorted(set(ref_counts) | set(act_counts), key=repr)
    return psi_from_counts([ref_counts[c] for c in categories], [act_counts[c] for c in categories])


def as_text(value: Scalar | bytes) -> str:
    """A prediction as the spec writes classes: 1, 1.0 and True read "1"; b"yes" reads "yes"."""
    return str(_normal(value))


def positive_rates(
    predictions: Sequence[Scalar], groups: Sequence[str], positive: Scalar
) -> dict[str, float]:
    """Per group, the share of its examples predicted `positive`, compared as text (positiveClass)."""
    total: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    want = as_text(positive)
    for p, g in zip(predictions, groups, strict=True):
        total[g] += 1
        hits[g] += as_text(p) == want
    return {g: hits[g] / total[g] for g in sorted(total)}


def demographic_parity(rates: dict[str, float]) -> float:
    """The lowest group's positive rate over the highest's (1 = parity); no positives at all is parity."""
    if len(rates) < 2:
        raise ValueError("demographic parity needs at least two groups")
    high = max(rates.values())
    return 1.0 if high == 0 else min(rates.values()) / high


def p95(latencies: Sequence[float]) -> float:
    """The 95th percentile by nearest rank: the smallest latency >= 95% of them."""
    if not latencies:
        raise ValueError("p95 needs at least one latency")
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
