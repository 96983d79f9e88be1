"""The demo end to end, as `make demo` runs it (`python -m testbed.demo`): on the real control plane,
and the one line it prints when the binaries are missing. One example each, to keep them short."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT, ci, require_assets
from mlserver_fixture import mlserver_venv
from prometheus_fixture import require_prometheus
from testbed import demo

pytestmark = pytest.mark.integration


TOOLS_BIN = REPO_ROOT / ".tools" / "bin"


def demo_env(assets: Path | None) -> dict[str, str]:
    """As `make demo` runs it: .tools/bin first on PATH, nothing of the caller's cluster."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "MODELDEPLOY_"))}
    if assets is not None:
        env["KUBEBUILDER_ASSETS"] = str(assets)
    env["PYTHONPATH"] = str(REPO_ROOT)  # testbed/ is not installed: it is imported from the checkout
    env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def require_kubectl() -> Path:
    """The kubectl the demo runs (`make tools-helm`); missing, a skip here and a failure under CI."""
    found = shutil.which("kubectl", path=f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        message = "kubectl not found: run `make tools-helm` (scripts/install-tools.sh)"
        if ci():
            pytest.fail(message)
        pytest.skip(message)
    return Path(found)


def demo_process(
    cwd: Path, assets: Path | None, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`python -m testbed.demo` in `cwd` (a folder with no ../shared/k8s/bin to fall back on)."""
    return subprocess.run(
        [sys.executable, "-m", "testbed.demo", *args],
        cwd=cwd,
        env=demo_env(assets),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_without_the_control_plane_says_what_is_missing(tmp_path: Path) -> None:
    empty = tmp_path / "no-binaries"
    empty.mkdir()
    result = demo_process(tmp_path, empty, f"--examples={REPO_ROOT / 'examples'}", timeout=120)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    # The line names what is missing and where it looked (how to get it is the test bed's wording).
    assert lines[0].startswith("demo: the real control plane is missing: "), lines
    assert "kube-apiserver" in lines[0] and str(empty) in lines[0], lines


@pytest.mark.real_api  # counted in the run's "tests ran on the real API server" line
def test_demo_on_the_real_control_plane(tmp_path: Path) -> None:
    assets = require_assets()
    require_prometheus()
    require_kubectl()
    mlserver_venv()  # part four's; the demo itself only says why it skips the part without it
    examples = tmp_path / "examples"
    examples.mkdir()
    # Without its namespace, as a user's file may be: the demo puts it in `default`, as kubectl would.
    text = (REPO_ROOT / "examples" / "gateway-canary.yaml").read_text()
    (examples / "no-namespace.yaml").write_text(re.sub(r"(?m)^  namespace: ml\n", "", text, count=1))
    result = demo_process(tmp_path, assets, f"--examples={examples}")
    assert result.returncode == 0, f"demo failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    out = result.stdout
    assert "a REAL kube-apiserver v1.36" in out
    assert f"[1/4] 1 ModelDeployment from {examples}/, applied server-side" in out
    assert "default/recommender: Deployment/recommender-primary" in out  # no ConfigMap child first
    # While the pods load, READY counts against the wanted replicas, not 0/0.
    assert re.search(r"^  recommender +Progressing +recommender +12 +0/3 ", out, re.MULTILINE), out
    # The real Deployment controller counted the pods the kubelet stand-in reported Ready.
    assert re.search(r"^  recommender +Stable +recommender +12 +3/3 ", out, re.MULTILINE), out
    assert "=> Promoted: analysis passed at every step" in out
    assert "=> RolledBack: 2 failed checks: success-rate" in out
    # Then what a user looks at next: `modeldeploy status` (a process) with the history, and the Events.
    assert "$ modeldeploy status recommender -n ml-rollouts" in out
    assert re.search(r"^ +history: +\S+ RolledBack \S+ v14: 2 failed checks", out, re.MULTILINE), out
    # The Events as the real kubectl prints them, with its columns; every `$ ` line is a command run.
    assert "$ kubectl get events -n ml-rollouts --field-selector " in out
    assert re.search(r"^  LAST SEEN +TYPE +REASON +OBJECT +MESSAGE$", out, re.MULTILINE), out
    assert re.search(
        r"^  \S+ +Warning +RolledBack +modeldeployment/recommender +revision \S+: 2 failed checks", out, re.M
    ), out
    shown = {line.strip() for line in out.splitlines() if line.strip().startswith("$ ")}
    assert {line.split()[1] for line in shown} == {"modeldeploy", "kubectl"}, shown
    # Part four: the model-quality gate, against real MLServers at the pods' IPs.
    four = out[out.index("[4/4] A model-quality gate stops a worse model before it gets any traffic") :]
    assert "MLServer: iris-primary as model 'iris' on 127.0.0.2:8000 (primary pods' IP)" in four
    good, worse = four.split("Version 3: iris-worse")
    assert "MLServer: iris-good as model 'iris' on 127.0.0.3:8000 (canary pods' IP)" in good
    assert "=> Promoted: " in good
    assert re.search(r"^ +accuracy +1 +0\.92 +Pass +accuracy 1 >= min 0\.92 \(45 labelled\)$", good, re.M), (
        good
    )
    assert "MLServer: iris-worse as model 'iris' on 127.0.0.3:8000 (canary pods' IP)" in worse
    assert "=> RolledBack: the gate failed: accuracy: accuracy 0.6667 < min 0.92 (45 labelled)" in worse
    assert "condition Degraded=True reason GateFailed" in worse
    for check in (
        r"contract +0 +0 +Pass +same contract as the primary",
        r"accuracy +0\.6667 +0\.92 +Fail +accuracy 0\.6667 < min 0\.92 \(45 labelled\)",
        r"agreement +0\.6667 +0\.9 +Fail +agreement 0\.6667 < min 0\.9 \(45 examples\)",
        r"latencyP95 +\S+ +0\.5 +Pass +p95 latency \S+ <= max 500ms",
    ):
        assert re.search(rf"^ +{check}", worse, re.MULTILINE), worse
    assert re.search(r"^ +history\[0\]: RolledBack revision \S+ v3 at \S+: the gate failed: ", worse, re.M)
    assert "The primary was untouched (Deployment iris-primary at generation" in worse
    assert (
        "No traffic moved: canaryWeight stayed 0 in every status seen, and the Service selected track "
        "primary while the gate ran." in worse
    )


def test_demo_without_its_folder_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = demo_process(tmp_path, None, f"--examples={missing}", timeout=120)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"demo failed: --examples {missing}: no such directory\n"


@pytest.mark.real_api
def test_demo_says_why_an_example_has_no_children(tmp_path: Path) -> None:
    assets = require_assets()
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "bad.yaml").write_text(
        "apiVersion: modeldeploy.io/v1alpha1\nkind: ModelDeployment\n"
        "metadata: {name: bad-query, namespace: ml}\n"
        "spec:\n  model: {name: m, version: '1', storageUri: 's3://bucket/m/1'}\n  runtime: {gpus: 0}\n"
        "  rollout:\n    analysis:\n      metrics:\n"
        "        - {name: custom, query: 'sum(x{pod=\"{{nope}}\"})', max: 1}\n"
    )
    result = demo_process(tmp_path, assets, f"--examples={examples}", "--no-rollouts", timeout=300)
    assert result.returncode == 1
    # The object's own status says why, not a bare timeout.
    first = result.stderr.splitlines()[0]
    assert first.startswith(
        f"demo failed: {examples}/bad.yaml: ml/bad-query is Failed: invalid spec: "
        "spec.rollout.analysis.metrics[0].query: unknown template variable {{nope}}"
    ), result.stderr
    assert "Degraded (InvalidSpec)" in first


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param("[" * 5000 + "]" * 5000, "nested deeper than 100 levels", id="deep"),
        pytest.param("a: &a [*a]\n", "an alias refers to a node that contains it", id="recursive-alias"),
    ],
)
def test_examples_past_the_yaml_bounds_stop_the_demo_with_one_line(
    content: str, problem: str, tmp_path: Path
) -> None:
    (tmp_path / "bad.yaml").write_text(content)
    with pytest.raises(demo.DemoFailed) as caught:
        demo.load_examples(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'bad.yaml'}: not YAML: {problem}"


@pytest.mark.real_api
def test_demo_keep_leaves_a_cluster_to_look_at_until_ctrl_c(tmp_path: Path) -> None:
    """`make demo DEMO_ARGS=--keep`, as the README shows it: the kubeconfig line, a control plane
    `kubectl get mdep -A` answers with the demo's objects, and Ctrl-C tears it all down, exit 0."""
    assets = require_assets()
    kubectl = require_kubectl()
    examples = tmp_path / "examples"
    examples.mkdir()
    shutil.copy(REPO_ROOT / "examples" / "gateway-canary.yaml", examples)
    # A session of its own, signalled as a terminal's Ctrl-C is: the whole process group.
    with subprocess.Popen(
        [sys.executable, "-m", "testbed.demo", f"--examples={examples}", "--no-rollouts", "--keep"],
        cwd=tmp_path,
        env=demo_env(assets),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        lines: list[str] = []
        kubeconfig: dict[str, Any] = {}
        found = threading.Event()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if line.startswith("  kubeconfig: "):
                    kubeconfig["path"] = Path(line.removeprefix("  kubeconfig: ").strip())
                if line.startswith("  try: "):  # the last line before the demo waits
                    found.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            if not found.wait(timeout=300):
                os.killpg(os.getpgid(process.pid), signal.SIGINT)  # it tears its processes down
                _, err = process.communicate(timeout=120)
                pytest.fail(f"no kubeconfig line:\n{''.join(lines)[-3000:]}\n{err[-3000:]}")
            path = kubeconfig["path"]
            out = "".join(lines)
            assert f"  try:        kubectl --kubeconfig {path} get mdep -A -w\n" in out
            listed = subprocess.run(
                [str(kubectl), "--kubeconfig", str(path), "get", "mdep", "-A", "--no-headers"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert listed.returncode == 0, listed.stderr
            assert re.search(r"^ml +recommender +Stable ", listed.stdout, re.MULTILINE), listed.stdout
            # The control plane's and the operator's processes: the demo's children.
            children = subprocess.run(
                ["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=False
            ).stdout.split()
            names = {Path(os.readlink(f"/proc/{pid}/exe")).name for pid in children}
            assert {"etcd", "kube-apiserver", "kube-controller-manager"} <= names, names
            os.killpg(os.getpgid(process.pid), signal.SIGINT)
            assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
        finally:
            if process.poll() is None:  # a failed assertion: Ctrl-C, so that it stops what it started
                os.killpg(os.getpgid(process.pid), signal.SIGINT)
                try:
                    process.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        reader.join(timeout=10)  # it read to the end of the output: the pipe closes after this
    out = "".join(lines)
    assert "Ctrl-C: tearing down." in out and "has been torn down" in out, out
    # Nothing of it is left: no etcd, kube-apiserver, controller manager or operator of this run.
    assert [pid for pid in children if Path(f"/proc/{pid}").exists()] == []


@pytest.mark.parametrize(
    ("seen", "current", "expected"),
    [
        pytest.param(
            {"status": ("Progressing", "gating", 0), "gate": ("t1", "Running")},
            {
                "phase": "Progressing",
                "message": "canary at 50%",
                "canaryWeight": 50,
                "gate": {"startedAt": "t1", "state": "Passed", "stage": "pre-traffic"},
            },
            ["gate (pre-traffic) Passed", "Progressing weight 50% canary at 50%"],
            id="gate-passed-before-the-weight-it-let-through",
        ),
        pytest.param(
            {"status": ("Progressing", "gating", 0), "gate": ("t1", "Running")},
            {
                "phase": "RolledBack",
                "message": "the gate failed",
                "canaryWeight": 0,
                "gate": {"startedAt": "t1", "state": "Failed", "stage": "pre-traffic", "message": "bad"},
            },
            ["gate (pre-traffic) Failed: bad", "RolledBack weight 0% the gate failed"],
            id="gate-failed-before-the-rollback",
        ),
        pytest.param(
            {"status": ("Stable", "", 0)},
            {
                "phase": "Progressing",
                "message": "gating",
                "canaryWeight": 0,
                "gate": {"startedAt": "t1", "state": "Running", "stage": "pre-traffic"},
            },
            ["Progressing weight 0% gating", "gate (pre-traffic) Running"],
            id="gate-started-after-the-phase-that-started-it",
        ),
        pytest.param(
            {"status": ("Progressing", "gating", 0), "gate": ("t1", "Running")},
            {
                "phase": "Progressing",
                "message": "gating",
                "canaryWeight": 0,
                "gate": {"startedAt": "t1", "state": "Running", "stage": "pre-traffic"},
            },
            [],
            id="nothing-new",
        ),
    ],
)
def test_gate_timeline_orders_one_status_by_cause(
    seen: dict[str, tuple[Any, ...]], current: dict[str, Any], expected: list[str]
) -> None:
    lines = demo.gate_timeline(seen, current, 3.0)
    assert all(line.startswith("  + 3.0s  ") for line in lines), lines
    assert [" ".join(line.split()[2:]) for line in lines] == expected
