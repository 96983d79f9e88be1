"""PodMonitor labels: from the chart value, through the operator flag, onto every PodMonitor."""

from __future__ import annotations

import pytest

from helm_tools import render_chart
from modeldeploy.api.resource import ObjectRef
from modeldeploy.cli import _label, parser
from modeldeploy.render.options import RenderOptions
from modeldeploy.render.podmonitor import pod_monitor

PARENT = ObjectRef(name="scorer", namespace="ml", uid="u-1")


def test_rendered_pod_monitors_carry_the_configured_labels() -> None:
    options = RenderOptions(pod_monitor_labels=(("release", "kube-prometheus-stack"),))
    monitor = pod_monitor(PARENT, options)
    assert monitor is not None
    labels = monitor["metadata"]["labels"]
    assert labels["release"] == "kube-prometheus-stack"
    assert labels["modeldeploy.io/name"] == "scorer"  # our own labels stay


def test_the_chart_passes_each_label_as_a_flag() -> None:
    manifests = render_chart({"podMonitorLabels": {"release": "prom", "team": "ml"}})
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--pod-monitor-label=release=prom" in args
    assert "--pod-monitor-label=team=ml" in args
    # ...and the operator's CLI accepts exactly that form.
    parsed = parser().parse_args(["run", *args[1:]])
    assert sorted(parsed.pod_monitor_label) == ["release=prom", "team=ml"]


@pytest.mark.parametrize("bad", ["novalue", "=x"], ids=["no-equals", "no-key"])
def test_a_malformed_flag_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(SystemExit, match="--pod-monitor-label"):
        _label(bad)
