"""`kubectl modeldeploy`: the package installs the CLI a second time as `kubectl-modeldeploy`, which
kubectl finds on PATH and runs as a plugin. The plugin offers what a kubectl user does with a
ModelDeployment (look at it, steer its rollout, render a manifest for review), not the operator
(`run`) or the CRD (`crd`), which the chart deploys. Run through the real kubectl binary."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ci
from modeldeploy.cli import PLUGIN, PLUGIN_VERBS, RENDER_HEADER, parser
from test_cli import admin_kubeconfig, one_error_line
from test_demo import require_kubectl
from testbed.controlplane import ControlPlane
from validation import REPO_ROOT

ALL_VERBS = {"run", "render", "crd", "promote", "abort", "retry", "pause", "resume", "status"}


def verbs(top: argparse.ArgumentParser) -> set[str]:
    (sub,) = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def test_the_plugin_offers_only_the_verbs_of_a_kubectl_user() -> None:
    assert verbs(parser(PLUGIN)) == set(PLUGIN_VERBS) == ALL_VERBS - {"run", "crd"}
    assert verbs(parser("modeldeploy")) == ALL_VERBS


def plugin_path() -> str:
    """PATH with the installed `kubectl-modeldeploy` (beside this Python) and the test's kubectl."""
    installed = Path(sys.executable).parent / "kubectl-modeldeploy"
    if not installed.exists():
        message = f"{installed} is missing: install the package (`make`, pip install -e '.[dev]')"
        if ci():
            pytest.fail(message)
        pytest.skip(message)
    return os.pathsep.join([str(installed.parent), str(require_kubectl().parent), os.environ.get("PATH", "")])


def kubectl(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env["PATH"] = plugin_path()
    done = subprocess.run(
        ["kubectl", *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120, check=False
    )
    return done.returncode, done.stdout, done.stderr


def test_kubectl_finds_the_plugin_and_its_help_lists_its_verbs() -> None:
    rc, out, err = kubectl("modeldeploy", "--help")
    assert (rc, err) == (0, "")
    assert out.startswith(f"usage: {PLUGIN} ")
    usage = out.splitlines()[0] + out.splitlines()[1]
    listed = usage[usage.index("{") + 1 : usage.index("}")].split(",")
    assert sorted(listed) == sorted(PLUGIN_VERBS)
    assert "`modeldeploy run`" in out  # says where the operator went


@pytest.mark.parametrize(
    ("verb", "expected"),
    [
        pytest.param(
            "run",
            "error: `run` is not a kubectl modeldeploy verb: it runs the operator, which the chart deploys; "
            "run it as `modeldeploy run`",
            id="run",
        ),
        pytest.param(
            "crd",
            "error: `crd` is not a kubectl modeldeploy verb: the chart installs the CRD; "
            "print it with `modeldeploy crd`",
            id="crd",
        ),
    ],
)
def test_the_plugin_says_where_the_operator_verbs_are(verb: str, expected: str) -> None:
    rc, out, err = kubectl("modeldeploy", verb)
    assert (rc, out) == (2, "")
    assert err.strip() == expected


def test_the_plugin_refuses_demo_as_any_unknown_verb() -> None:
    rc, out, err = kubectl("modeldeploy", "demo")
    assert (rc, out) == (2, "")
    assert "invalid choice: 'demo'" in err


def test_the_plugin_renders() -> None:
    rc, out, err = kubectl("modeldeploy", "render", "-f", "examples/fraud-scorer.yaml")
    assert (rc, err) == (0, "")
    assert out.startswith(RENDER_HEADER + "---\n# Source: examples/fraud-scorer.yaml\n")


def test_the_plugin_reads_the_cluster(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    config = admin_kubeconfig(control_plane, tmp_path / "kubeconfig")
    rc, _, err = kubectl("modeldeploy", "status", "nope", "-n", namespace, f"--kubeconfig={config}")
    assert one_error_line(rc, err) == f"error: ModelDeployment {namespace}/nope not found"
