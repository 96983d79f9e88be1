"""Canary analysis, pure: PromQL for a round (templates) and three-valued verdicts (verdicts).

The I/O half, running the queries, is modeldeploy.adapters.prometheus.
"""

from modeldeploy.analysis.templates import (
    Query,
    QueryContext,
    QueryKind,
    TemplateError,
    Track,
    check,
    context_for,
    plan,
)
from modeldeploy.analysis.verdicts import ProviderFailure, Result, explain, judge_round, overall

__all__ = [
    "ProviderFailure",
    "Query",
    "QueryContext",
    "QueryKind",
    "Result",
    "TemplateError",
    "Track",
    "check",
    "context_for",
    "explain",
    "judge_round",
    "overall",
    "plan",
]
