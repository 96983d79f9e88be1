"""`modeldeploy demo` end to end, as `make demo` runs it: on the real control plane, and on the
emulator fallback when the binaries are missing. One example each, to keep them short."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, require_assets
from mlserver_fixture import mlserver_venv
from modeldeploy import demo
from prometheus_fixture import require_prometheus

pytestmark = pytest.mark.integration


def run_demo(tmp_path: Path, assets: Path, *args: str) -> str:
    examples = tmp_path / "examples"
    examples.mkdir()
    shutil.copy(REPO_ROOT / "examples" / "gateway-canary.yaml", examples)
    return run_demo_in(tmp_path, assets, examples, *args)


def run_demo_in(tmp_path: Path, assets: Path, examples: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "MODELDEPLOY_"))}
    env["KUBEBUILDER_ASSETS"] = str(assets)
    result = subprocess.run(
        [sys.executable, "-m", "modeldeploy.cli", "demo", f"--examples={examples}", *args],
        cwd=tmp_path,  # no ../shared/k8s/bin to fall back on
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"demo failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_demo_falls_back_to_the_emulator(tmp_path: Path) -> None:
    empty = tmp_path / "no-binaries"
    empty.mkdir()
    out = run_demo(tmp_path, empty, "--no-rollouts")
    assert "kmock's EMULATOR" in out
    assert "no etcd, kube-apiserver, kube-controller-manager in" in out
    assert "--server=" not in out  # how the operator finds the emulator is the demo's business
    assert "ml/recommender: ConfigMap/recommender-config-" in out
    assert re.search(r"^  recommender +Stable +recommender +12 +3/3 ", out, re.MULTILINE), out
    assert "[3/4] skipped (--no-rollouts)\n[4/4] skipped (--no-rollouts)\n" in out


@pytest.mark.real_api  # counted in the run's "tests ran on the real API server" line
def test_demo_on_the_real_control_plane(tmp_path: Path) -> None:
    assets = require_assets()
    require_prometheus()
    mlserver_venv()  # part four's; the demo itself only says why it skips the part without it
    out = run_demo(tmp_path, assets)
    assert "a REAL kube-apiserver v1.36" in out
    assert "EMULATOR" not in out
    # The real Deployment controller counted the pods the kubelet stand-in reported Ready.
    assert re.search(r"^  recommender +Stable +recommender +12 +3/3 ", out, re.MULTILINE), out
    assert "=> Promoted: analysis passed at every step" in out
    assert "=> RolledBack: 2 failed checks: success-rate" in out
    # Then what a user looks at next: `modeldeploy status` (a process) with the history, and the Events.
    assert "$ modeldeploy status recommender -n ml-rollouts" in out
    assert re.search(r"^ +history: +\S+ RolledBack \S+ v14: 2 failed checks", out, re.MULTILINE), out
    assert re.search(r"^  Warning +RolledBack +revision \S+: 2 failed checks", out, re.MULTILINE), out
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


def test_demo_names_its_folder_and_defaults_a_missing_namespace(tmp_path: Path) -> None:
    empty = tmp_path / "no-binaries"
    empty.mkdir()
    examples = tmp_path / "examples"
    examples.mkdir()
    text = (REPO_ROOT / "examples" / "gateway-canary.yaml").read_text()
    (examples / "no-namespace.yaml").write_text(re.sub(r"(?m)^  namespace: ml\n", "", text, count=1))
    out = run_demo_in(tmp_path, empty, examples, "--no-rollouts")
    assert f"[1/4] 1 ModelDeployment from {examples}/, applied server-side" in out
    assert "no kubectl runs" in out
    assert "default/recommender: ConfigMap/recommender-config-" in out
    # While the pods load, READY counts against the wanted replicas, not 0/0.
    assert re.search(r"^  recommender +Progressing +recommender +12 +0/3 ", out, re.MULTILINE), out


def test_demo_without_its_folder_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = subprocess.run(
        [sys.executable, "-m", "modeldeploy.cli", "demo", f"--examples={missing}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"demo failed: --examples {missing}: no such directory\n"


def test_demo_says_why_an_example_has_no_children(tmp_path: Path) -> None:
    empty = tmp_path / "no-binaries"
    empty.mkdir()
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "bad.yaml").write_text(
        "apiVersion: modeldeploy.io/v1alpha1\nkind: ModelDeployment\n"
        "metadata: {name: bad-query, namespace: ml}\n"
        "spec:\n  model: {name: m, version: '1', storageUri: 's3://bucket/m/1'}\n  runtime: {gpus: 0}\n"
        "  rollout:\n    analysis:\n      metrics:\n"
        "        - {name: custom, query: 'sum(x{pod=\"{{nope}}\"})', max: 1}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "MODELDEPLOY_"))}
    env["KUBEBUILDER_ASSETS"] = str(empty)
    result = subprocess.run(
        [sys.executable, "-m", "modeldeploy.cli", "demo", f"--examples={examples}", "--no-rollouts"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1
    # The object's own status says why, not a bare timeout.
    first = result.stderr.splitlines()[0]
    assert first.startswith(
        f"demo failed: {examples}/bad.yaml: ml/bad-query is Failed: invalid spec: "
        "spec.rollout.analysis.metrics[0].query: unknown template variable {{nope}}"
    ), result.stderr
    assert "Degraded (InvalidSpec)" in first


def test_demo_skips_the_gate_part_on_the_emulator(capsys: pytest.CaptureFixture[str]) -> None:
    # The emulator has no pods, so no pod IPs to ask a model at: one line says so.
    demo.part_four(object())  # type: ignore[arg-type]  # not a RealCluster
    assert capsys.readouterr().out == (
        "\n[4/4] A model-quality gate stops a worse model before it gets any traffic\n"
        "  skipped: the emulator has no pods, so no pod IPs for the operator to ask the models at\n"
    )


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
