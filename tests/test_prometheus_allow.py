"""Who may point the operator at which Prometheus (docs/security.md): the allow-list as a table, the
flag, and the refusal on the real API server, where no request reaches a URL off the list."""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from loopback_http import serving
from modeldeploy.adapters.kube import KubeClient, configuration
from modeldeploy.analysis.endpoints import allowed, refusal
from modeldeploy.api.resource import object_ref
from modeldeploy.cli import _prometheus_allow
from modeldeploy.handlers.reconciler import Reconciler
from modeldeploy.render.options import RenderOptions
from modeldeploy.rollout.validate import validate
from test_real_api_defects import admin_kubeconfig, apply_md, md, model, reconcile_until
from testbed.controlplane import ControlPlane

DEFAULT = "http://prometheus-operated.monitoring.svc:9090"


@pytest.mark.parametrize(
    ("url", "allow", "expected"),
    [
        pytest.param(DEFAULT, [DEFAULT], True, id="the-default"),
        pytest.param(DEFAULT + "/", [DEFAULT], True, id="trailing-slash"),
        pytest.param("HTTP://Prometheus-Operated.Monitoring.SVC:9090", [DEFAULT], True, id="case-of-host"),
        pytest.param("http://thanos", ["http://thanos:80"], True, id="default-port-written-or-not"),
        pytest.param("https://thanos", ["http://thanos"], False, id="other-scheme"),
        pytest.param("http://thanos:9091", ["http://thanos:9090"], False, id="other-port"),
        pytest.param("http://thanos.evil", ["http://thanos"], False, id="host-suffix"),
        pytest.param("http://thanos/tenant-a/api", ["http://thanos/tenant-a"], True, id="sub-path"),
        pytest.param(
            "http://thanos/tenant-ab", ["http://thanos/tenant-a"], False, id="path-prefix-not-segment"
        ),
        pytest.param("http://thanos/", ["http://thanos/tenant-a"], False, id="parent-path"),
        pytest.param("http://169.254.169.254/latest", [DEFAULT], False, id="metadata-service"),
        pytest.param("http://anything:1/x", ["*"], True, id="star-allows-any"),
        pytest.param("http://thanos:99999", ["http://thanos"], False, id="bad-port"),
        pytest.param("ftp://thanos", ["*", "http://thanos"], True, id="star-wins"),
        pytest.param("thanos:9090", ["http://thanos:9090"], False, id="no-scheme"),
        pytest.param("http://thanos", [], False, id="empty-list"),
    ],
)
def test_allowed(url: str, allow: list[str], expected: bool) -> None:
    assert allowed(url, allow) is expected


def test_refusal_names_the_field_and_the_flag_not_the_urls() -> None:
    assert refusal(None, DEFAULT, ()) is None
    assert refusal(DEFAULT, DEFAULT, ()) is None
    assert refusal("http://thanos/t", DEFAULT, ("http://thanos",)) is None
    problem = refusal("http://10.0.0.7:8080/secret", DEFAULT, ("http://thanos",))
    assert problem is not None
    assert problem.startswith("spec.rollout.analysis.prometheusUrl: this operator may not query")
    assert "--prometheus-allow" in problem
    assert "10.0.0.7" not in problem and "thanos" not in problem and DEFAULT not in problem


@pytest.mark.parametrize(
    ("flags", "entries"),
    [
        pytest.param([], (), id="none"),
        pytest.param(["http://a:9090", "https://b/t"], ("http://a:9090", "https://b/t"), id="repeated"),
        pytest.param(["http://a:9090, *"], ("http://a:9090", "*"), id="comma-separated"),
    ],
)
def test_the_flag(flags: list[str], entries: tuple[str, ...]) -> None:
    assert _prometheus_allow(flags) == entries


@pytest.mark.parametrize("bad", ["prometheus:9090", "ftp://x", "http://"])
def test_a_bad_flag_is_one_line(bad: str) -> None:
    with pytest.raises(SystemExit, match=r"^error: --prometheus-allow wants") as raised:
        _prometheus_allow([bad])
    assert "\n" not in str(raised.value)


# ---------------------------------------------------------------------- on the real API server


@contextmanager
def counting_server() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server that records every request it gets (and answers one Prometheus sample)."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = b'{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    with serving(Handler) as url:
        yield url, seen


def reconciler(
    control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allow: tuple[str, ...]
) -> Reconciler:
    monkeypatch.setenv("KUBECONFIG", str(admin_kubeconfig(control_plane, tmp_path / "kubeconfig")))
    return Reconciler(
        KubeClient(configuration()), RenderOptions(), lambda *_: None, DEFAULT, prometheus_allow=allow
    )


@pytest.mark.parametrize("listed", [pytest.param(False, id="off-the-list"), pytest.param(True, id="listed")])
def test_an_object_naming_a_prometheus_off_the_list_is_refused_unasked(
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    listed: bool,
) -> None:
    api = control_plane.admin
    with counting_server() as (url, seen):
        rec = reconciler(control_plane, tmp_path, monkeypatch, (url,) if listed else ())
        analysis = {"prometheusUrl": url, "metrics": [{"name": "ok", "query": "vector(1)", "min": 0}]}
        apply_md(api, namespace, model("probe", rollout={"analysis": analysis}))
        status = reconcile_until(rec, api, namespace, "probe", lambda s: s.get("phase"))
        if listed:
            # The witness works: an allowed URL is queried when a round asks it.
            body = md(api, namespace, "probe")
            (result,) = rec.analysis_round(validate(body), object_ref(body))
            assert result.value == 1.0
            assert seen
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    deployment = api.get("apps/v1", "Deployment", namespace, "probe-primary")
    if listed:
        assert degraded["status"] == "False"
        assert deployment is not None
    else:
        assert (degraded["status"], degraded["reason"]) == ("True", "PrometheusNotAllowed")
        assert "spec.rollout.analysis.prometheusUrl: this operator may not query" in degraded["message"]
        assert url not in degraded["message"]
        assert deployment is None  # refused as an invalid spec is: nothing acted on
        assert seen == []
