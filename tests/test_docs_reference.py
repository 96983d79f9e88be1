"""The reference docs follow the code.

docs/reference.md must name every field of the generated CRD (spec and status), every phase,
condition type, verdict, condition reason, history result, annotation and CLI verb, and name no
field that does not exist. The YAML in docs/autoscaling.md and docs/metrics.md must parse, and
the objects shown there must be what the operator renders.

Path convention (documented in docs/reference.md): `spec.a.b`; `[]` for any list item and `{}` for
any map value, written only before a sub-field (`spec.rollout.match[].headers{}.exact`); lists and
maps of scalars are documented at their own path.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.api import base
from modeldeploy.api.crd import crd
from modeldeploy.api.resource import ObjectRef, parse_spec
from modeldeploy.api.spec import Scaling
from modeldeploy.api.status import ConditionType, Phase, Verdict
from modeldeploy.cli import parser
from modeldeploy.render.autoscaler import QUEUE_TIME_METRIC, autoscaler
from modeldeploy.render.options import RenderOptions
from modeldeploy.render.podmonitor import RELABELINGS, pod_monitor
from modeldeploy.render.prometheusrule import prometheus_rule

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
ROLLOUT_SOURCES = [
    REPO / "operator" / "modeldeploy" / "rollout" / "machine.py",
    REPO / "operator" / "modeldeploy" / "rollout" / "steady.py",
]
# The example object the docs render: fraud-scorer in ml.
EXAMPLE = ObjectRef(name="fraud-scorer", namespace="ml", uid="00000000-0000-0000-0000-000000000000")


def _text(name: str) -> str:
    return (DOCS / name).read_text()


def _schema(section: str) -> dict[str, Any]:
    root: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema: dict[str, Any] = root["properties"][section]
    return schema


def _walk(node: dict[str, Any], path: str) -> list[str]:
    found = [path]
    for key, sub in node.get("properties", {}).items():
        found += _walk(sub, f"{path}.{key}")
    for key, marker in (("items", "[]"), ("additionalProperties", "{}")):
        inner = node.get(key)
        if isinstance(inner, dict) and inner.get("properties"):
            # The item itself is documented through its parent; only its fields get a path.
            found += _walk(inner, path + marker)[1:]
    return found


def field_paths() -> list[str]:
    return _walk(_schema("spec"), "spec") + _walk(_schema("status"), "status")


FIELD_PATHS = field_paths()


def _cli_verbs() -> list[str]:
    subparsers = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(subparsers) == 1
    return list(subparsers[0].choices)


def _annotations() -> list[str]:
    return [value for name, value in sorted(vars(base).items()) if name.endswith("_ANNOTATION")]


def _string_arg(call: ast.Call, index: int) -> str | None:
    if len(call.args) > index:
        arg = call.args[index]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


# Where the reason is among the arguments: cond(type, status, reason, message), rollback(reason, message).
REASON_ARGUMENT = {"cond": 2, "rollback": 0}


def _rollout_literals() -> tuple[set[str], set[str]]:
    """(condition reasons, history results) written as literals in the rollout code.

    Reasons appear as arguments of `cond` and `rollback` (REASON_ARGUMENT) and as the third item of
    the `(type, status, reason, message)` tuples given to `with_conditions`; history results as the
    first argument of `record(result, reason)`.
    """
    reasons: set[str] = set()
    results: set[str] = set()
    for source in ROLLOUT_SOURCES:
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in REASON_ARGUMENT and (reason := _string_arg(node, REASON_ARGUMENT[name])):
                reasons.add(reason)
            elif name == "record" and (result := _string_arg(node, 0)):
                results.add(result)
            elif name == "with_conditions":
                for entry in node.args[3:]:
                    if isinstance(entry, ast.Tuple) and len(entry.elts) == 4:
                        value = entry.elts[2]
                        if isinstance(value, ast.Constant) and isinstance(value.value, str):
                            reasons.add(value.value)
    return reasons, results


REASONS, HISTORY_RESULTS = _rollout_literals()


def _yaml_blocks(name: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", _text(name), re.MULTILINE | re.DOTALL)


def _documents(name: str) -> list[Any]:
    return [doc for block in _yaml_blocks(name) for doc in yaml.safe_load_all(block)]


def _find(name: str, predicate: Any) -> list[Any]:
    return [doc for doc in _documents(name) if isinstance(doc, dict) and predicate(doc)]


# ------------------------------------------------------------------------------ reference.md


def test_the_schema_walk_finds_the_fields() -> None:
    # Guards the walk itself: an empty or shallow walk would make every case below vacuous.
    assert len(FIELD_PATHS) > 140
    for path in (
        "spec.rollout.analysis.inconclusive.limit",
        "spec.rollout.match[].headers{}.exact",
        "spec.scaling.metrics[].queueTimeMicroseconds.averageValue",
        "status.conditions[].lastTransitionTime",
    ):
        assert path in FIELD_PATHS


def _undocumented() -> list[str]:
    """Everything a user can meet (fields, phases, conditions, verdicts, reasons, history results,
    annotations, CLI verbs) that docs/reference.md does not name, each as one line."""
    text = _text("reference.md")
    missing = [f"field {path}" for path in FIELD_PATHS if f"`{path}`" not in text]
    for what, values in (
        ("phase", [p.value for p in Phase]),
        ("condition type", [c.value for c in ConditionType]),
        ("verdict", [v.value for v in Verdict]),
        ("history result", sorted(HISTORY_RESULTS)),
        ("annotation", _annotations()),
    ):
        missing += [f"{what} {value}" for value in values if f"`{value}`" not in text]
    missing += [f"condition reason {r} (a table row)" for r in sorted(REASONS) if f"| `{r}` |" not in text]
    missing += [f"CLI verb {verb}" for verb in _cli_verbs() if f"`modeldeploy {verb}" not in text]
    if "kubectl modeldeploy" not in text:
        missing.append("the kubectl plugin")
    return missing


def test_the_reference_documents_everything_a_user_can_meet() -> None:
    # One lint-style check, not a test per name: the list says what to add.
    missing = _undocumented()
    assert not missing, "docs/reference.md lacks:\n" + "\n".join(missing)


def test_no_documented_field_is_missing_from_the_crd() -> None:
    documented = set(re.findall(r"`((?:spec|status)(?:\.[A-Za-z]+(?:\[\]|\{\})?)*)`", _text("reference.md")))
    unknown = sorted(documented - set(FIELD_PATHS))
    assert not unknown, f"docs/reference.md documents fields the CRD does not have: {unknown}"


def test_the_rollout_code_sets_condition_reasons() -> None:
    # Guards the AST walk: an empty walk would make the check above vacuous.
    assert len(REASONS) >= 15, REASONS
    # One from each way the code sets a reason: the steady path's tuples, cond() and rollback().
    assert {"ModelReady", "InvalidSpec", "PrimaryServing", "AnalysisFailed"} <= REASONS, REASONS
    assert {"Promoted", "RolledBack", "Superseded"} <= HISTORY_RESULTS


def test_the_annotations_are_found() -> None:
    assert len(_annotations()) == 5


# ---------------------------------------------------------------------- YAML in the other docs


YAML_BLOCKS = [
    pytest.param(name, index, id=f"{name}-block-{index + 1}")
    for name in ("autoscaling.md", "metrics.md")
    for index in range(len(_yaml_blocks(name)))
]


@pytest.mark.parametrize("name", ["autoscaling.md", "metrics.md"])
def test_the_doc_has_yaml_blocks(name: str) -> None:
    assert len(_yaml_blocks(name)) >= 2


@pytest.mark.parametrize(("name", "index"), YAML_BLOCKS)
def test_yaml_block_parses(name: str, index: int) -> None:
    docs = list(yaml.safe_load_all(_yaml_blocks(name)[index]))
    assert docs and all(isinstance(doc, dict) for doc in docs)


def test_the_documented_pod_monitor_is_the_rendered_one() -> None:
    (documented,) = _find("metrics.md", lambda d: d.get("kind") == "PodMonitor")
    rendered = pod_monitor(EXAMPLE, RenderOptions())
    assert rendered is not None
    assert documented["apiVersion"] == rendered["apiVersion"]
    assert documented["metadata"] == {"name": EXAMPLE.name, "namespace": EXAMPLE.namespace}
    assert documented["spec"] == rendered["spec"]


def test_the_documented_prometheus_rule_is_the_rendered_one() -> None:
    (section,) = _find("metrics.md", lambda d: set(d) == {"runtime", "alerts"})
    (documented,) = _find("metrics.md", lambda d: d.get("kind") == "PrometheusRule")
    model = {"name": "fraud_scorer", "version": "7", "storageUri": "s3://models/fraud_scorer/7"}
    rendered = prometheus_rule(EXAMPLE, parse_spec({"model": model, **section}), RenderOptions())
    assert rendered is not None
    assert documented["apiVersion"] == rendered["apiVersion"]
    assert documented["metadata"] == {"name": EXAMPLE.name, "namespace": EXAMPLE.namespace}
    assert documented["spec"] == rendered["spec"]


def test_the_documented_routes_match_the_alert_labels() -> None:
    (config,) = _find("metrics.md", lambda d: "route" in d and "receivers" in d)
    matchers = [m for route in config["route"]["routes"] for m in route["matchers"]]
    assert 'team="payments"' in matchers and 'severity="info"' in matchers


def test_the_plain_scrape_job_sets_the_pod_monitor_labels() -> None:
    (config,) = _find("metrics.md", lambda d: "scrape_configs" in d)
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    replaced = [
        {
            "sourceLabels": rule["source_labels"],
            "targetLabel": rule["target_label"],
            "action": "replace",
            **({"separator": rule["separator"]} if "separator" in rule else {}),
        }
        for rule in job["relabel_configs"]
        if rule.get("action") == "replace"
    ]
    assert replaced == RELABELINGS
    kept = {tuple(rule["source_labels"]) for rule in job["relabel_configs"] if rule["action"] == "keep"}
    assert ("__meta_kubernetes_pod_container_port_name",) in kept


def test_the_documented_hpa_is_the_rendered_one() -> None:
    (section,) = _find("autoscaling.md", lambda d: set(d) == {"scaling"})
    (documented,) = _find("autoscaling.md", lambda d: d.get("kind") == "HorizontalPodAutoscaler")
    scaling = Scaling.model_validate(section["scaling"])
    rendered = autoscaler(EXAMPLE, EXAMPLE.name, f"{EXAMPLE.name}-primary", scaling)
    assert rendered is not None
    assert documented["apiVersion"] == rendered["apiVersion"]
    assert documented["spec"] == rendered["spec"]


def test_the_adapter_rule_serves_the_metric_the_hpa_asks_for() -> None:
    (config,) = _find("autoscaling.md", lambda d: set(d) == {"rules"})
    (values,) = _find("autoscaling.md", lambda d: "prometheus" in d and "rules" in d)
    (rule,) = config["rules"]
    assert values["rules"]["custom"] == [rule]
    assert rule["name"]["as"] == QUEUE_TIME_METRIC
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    query = " ".join(rule["metricsQuery"].split())
    assert query == (
        "sum by (<<.GroupBy>>) (rate(nv_inference_queue_duration_us{<<.LabelMatchers>>}[1m])) / "
        "sum by (<<.GroupBy>>) (rate(nv_inference_request_success{<<.LabelMatchers>>}[1m]))"
    )
