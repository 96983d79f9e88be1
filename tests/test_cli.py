"""What a user sees from `modeldeploy` on bad input or an unreachable cluster: one line naming the
file, field or server and the problem, exit status 1, never a traceback. The commands run as the
user runs them, as a process (`python -m modeldeploy.cli`), so a traceback would show in stderr.
The refusals of the control verbs and the README's example run on the real API server."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.api.spec import FREE_FORM_MAX_DEPTH
from modeldeploy.manifest_yaml import MAX_DEPTH, MAX_NODES, UnreadableError, load_all
from testbed.controlplane import ADMIN_USER, ControlPlane, Credentials
from validation import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "fraud-scorer.yaml"
NO_CONFIG = "no in-cluster configuration and no usable kubeconfig"


def modeldeploy(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    merged = {**os.environ, **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "modeldeploy.cli", *args],
        capture_output=True,
        text=True,
        env=merged,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def one_error_line(rc: int, err: str) -> str:
    """The error line, after asserting it is the only output line and the exit status is 1."""
    assert rc == 1, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: connection refused


def kubeconfig_for(server: str, path: Path) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ml"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return path


# --------------------------------------------------------------------------- no cluster at all

CLUSTER_VERBS = ["status", "promote", "pause", "resume", "abort", "retry"]


@pytest.mark.parametrize("verb", CLUSTER_VERBS)
def test_a_verb_without_a_kubeconfig_says_so(verb: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-kubeconfig"
    rc, _, err = modeldeploy(verb, "fraud-scorer", "-n", "ml", env={"KUBECONFIG": str(missing)})
    assert one_error_line(rc, err) == (
        f"error: {NO_CONFIG} ({missing}): Invalid kube-config file. No configuration found."
    )


def test_run_without_a_kubeconfig_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-kubeconfig"
    rc, _, err = modeldeploy("run", "--health-port=0", "--metrics-port=0", env={"KUBECONFIG": str(missing)})
    assert one_error_line(rc, err) == (
        f"error: {NO_CONFIG} ({missing}): Invalid kube-config file. No configuration found."
    )


def test_an_unknown_context_is_named(tmp_path: Path) -> None:
    config = kubeconfig_for("https://127.0.0.1:1", tmp_path / "kubeconfig")
    rc, _, err = modeldeploy("status", "fraud-scorer", f"--kubeconfig={config}", "--context=nope")
    assert one_error_line(rc, err) == (
        f"error: {NO_CONFIG} ({config}): Invalid kube-config file. "
        f"Expected object with name nope in {config}/contexts list"
    )


def test_a_kubeconfig_that_is_not_yaml_is_named(tmp_path: Path) -> None:
    config = write(tmp_path / "kubeconfig", "clusters: [a\n")
    rc, _, err = modeldeploy("status", "fraud-scorer", f"--kubeconfig={config}")
    assert one_error_line(rc, err) == (
        f'error: {NO_CONFIG} ({config}): while parsing a flow sequence in "{config}", line 1, column 11 '
        f"expected ',' or ']', but got '<stream end>' in \"{config}\", line 2, column 1"
    )


def test_a_server_with_an_untrusted_certificate_is_named(control_plane: ControlPlane, tmp_path: Path) -> None:
    config = kubeconfig_for(control_plane.url, tmp_path / "kubeconfig")  # no certificate-authority
    rc, _, err = modeldeploy("status", "fraud-scorer", f"--kubeconfig={config}")
    line = one_error_line(rc, err)
    assert line.startswith(
        f"error: ModelDeployment ml/fraud-scorer: cannot reach the API server {control_plane.url}: "
    )
    assert "CERTIFICATE_VERIFY_FAILED" in line


@pytest.mark.parametrize("verb", ["status", "pause"])
def test_an_unreachable_server_is_named(verb: str, tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{closed_port()}"
    config = kubeconfig_for(server, tmp_path / "kubeconfig")
    rc, _, err = modeldeploy(verb, "fraud-scorer", f"--kubeconfig={config}")
    assert one_error_line(rc, err) == (
        f"error: ModelDeployment ml/fraud-scorer: cannot reach the API server {server}: Connection refused"
    )


def test_run_against_an_unreachable_server_stops_with_one_error(tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{closed_port()}"
    config = kubeconfig_for(server, tmp_path / "kubeconfig")
    rc, _, err = modeldeploy("run", f"--kubeconfig={config}", "--health-port=0", "--metrics-port=0")
    assert rc == 1
    assert "Traceback" not in err
    # Before it: the client's log lines for each retry; the last line is the verdict.
    assert err.strip().splitlines()[-1] == f"error: cannot reach the API server {server}: Connection refused"


# ------------------------------------------------------------------------------- bad input files


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


EXAMPLE_TEXT = EXAMPLE.read_text()
EXAMPLE_DOC = yaml.safe_load(EXAMPLE_TEXT)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "{f}: no such file or directory", id="missing-file"),
        pytest.param(
            "a: [b\n",
            "{f}: not YAML or JSON at line 2, column 1: expected ',' or ']', but got '<stream end>'",
            id="not-yaml",
        ),
        pytest.param(b"\x7fELF\x02\x01\x01\x00\x00\xff\xfe", "{f}: not a text file (not UTF-8)", id="binary"),
        pytest.param("", "{f}: no ModelDeployment (modeldeploy.io/v1alpha1) to render", id="empty-file"),
        pytest.param(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
            "{f}: no ModelDeployment (modeldeploy.io/v1alpha1) to render (found only: Deployment)",
            id="only-a-deployment",
        ),
        pytest.param(
            EXAMPLE_TEXT.replace("modeldeploy.io/v1alpha1", "modeldeploy.io/v1beta1"),
            "{f}: document 1: apiVersion 'modeldeploy.io/v1beta1': not served; this version of modeldeploy "
            "serves modeldeploy.io/v1alpha1",
            id="wrong-version",
        ),
        pytest.param(
            EXAMPLE_TEXT.replace("kind: ModelDeployment", "kind: modeldeployment"),
            "{f}: document 1: kind 'modeldeployment': kinds are case-sensitive; "
            "did you mean ModelDeployment?",
            id="lower-case-kind",
        ),
        pytest.param(
            EXAMPLE_TEXT.replace("name: fraud-scorer", "name: Fraud_Scorer"),
            "{f}: document 1: metadata.name 'Fraud_Scorer': must be lower-case letters, digits and '-', "
            "starting with a letter (children and Services are named after it)",
            id="invalid-name",
        ),
        pytest.param(
            EXAMPLE_TEXT + "---\n" + EXAMPLE_TEXT,
            "{f}: document 2: ModelDeployment ml/fraud-scorer is also defined in {f}: document 1",
            id="same-name-twice",
        ),
        pytest.param("- a\n- b\n", "{f}: document 1: a list, not an object", id="a-yaml-list"),
    ],
)
def test_render_refuses(content: str | bytes | None, expected: str, tmp_path: Path) -> None:
    target = tmp_path / "input.yaml"
    if content is not None:
        write(target, content)
    rc, out, err = modeldeploy("render", "-f", str(target))
    assert out == ""
    assert one_error_line(rc, err) == "error: " + expected.format(f=target)


def _model_deployment(runtime_line: str) -> str:
    """The README's minimal ModelDeployment with one extra line under spec.runtime."""
    return (
        "apiVersion: modeldeploy.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: a}\nspec:\n"
        '  model: {name: m, version: "1", storageUri: s3://models/m/1}\n'
        f"  runtime:\n    {runtime_line}\n"
    )


def _block_mapping(depth: int) -> str:
    return "".join(f"{'  ' * level}a:\n" for level in range(depth)) + "  " * depth + "1\n"


def _laughs(levels: int) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


BIG = 10 * 1024 * 1024  # a 10 MiB scalar


# Input that once printed a traceback (RecursionError, ValueError) or a line as long as the input.
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            "[" * 100_000 + "]" * 100_000,
            "{f}: cannot read it at line 1, column 101: nested deeper than 100 levels",
            id="deep-flow-lists",
        ),
        pytest.param(
            "{a: " * 5000 + "1" + "}" * 5000,
            "{f}: cannot read it at line 1, column 398: nested deeper than 100 levels",
            id="deep-flow-mappings",
        ),
        pytest.param(
            _block_mapping(2000),
            "{f}: cannot read it at line 100, column 199: nested deeper than 100 levels",
            id="deep-block-mappings",
        ),
        pytest.param(
            "- " * 3000 + "x\n",
            "{f}: cannot read it at line 1, column 201: nested deeper than 100 levels",
            id="deep-block-sequences",
        ),
        pytest.param(
            _model_deployment("affinity: " + "{a: [" * 1000 + "1" + "]}" * 1000),
            "{f}: cannot read it at line 7, column 256: nested deeper than 100 levels",
            id="deep-inside-a-model-deployment",
        ),
        pytest.param(
            "a: &a [*a]\n",
            "{f}: cannot read it at line 1, column 4: an alias refers to a node that contains it",
            id="recursive-alias",
        ),
        pytest.param(
            _model_deployment("affinity: &a {x: [1, *a]}"),
            "{f}: cannot read it at line 7, column 15: an alias refers to a node that contains it",
            id="recursive-alias-in-a-model-deployment",
        ),
        pytest.param(
            _laughs(8),
            "{f}: cannot read it at line 6, column 5: more than 1000000 values with aliases expanded",
            id="billion-laughs",
        ),
        pytest.param(
            "x: &x [1]\n" + "".join(f"x{i}: &x{i} [*x{i - 1 if i else ''}]\n" for i in range(120)),
            "{f}: cannot read it at line 100, column 6: nested deeper than 100 levels with aliases expanded",
            id="aliases-nested-past-the-bound",
        ),
        pytest.param(
            "a: " + "9" * 5000 + "\n",
            "{f}: cannot read it at line 1, column 4: Exceeds the limit (4300 digits) for integer string "
            "conversion: value has 5000 digits",
            id="integer-of-5000-digits",
        ),
        pytest.param(
            "a: 2026-13-45\n", "{f}: cannot read it at line 1, column 4: month must be in 1..12", id="date"
        ),
        pytest.param(
            "a: \x00\x01\x02\n",
            "{f}: not YAML or JSON: unacceptable character #x0000: special characters are not allowed",
            id="control-characters",
        ),
        pytest.param(
            _model_deployment(f"image: {'x' * BIG}"),
            "{f}: document 1: ModelDeployment a: spec.runtime.image: must be at most 512 characters",
            id="a-10-MiB-value",
        ),
        pytest.param(
            _model_deployment('{"a\\nb\\u2028c\\x00": 1}'),
            "{f}: document 1: ModelDeployment a: spec.runtime.a\\nb\\u2028c\\x00: unknown field; the "
            "fields here are image, imagePullPolicy, gpus, gpuResource, resources, nodeSelector, "
            "tolerations, affinity, runtimeClassName, args, volumes, modelLoadTimeout",
            id="a-key-with-a-newline",
        ),
    ],
)
def test_render_answers_any_input_with_one_line(content: str, expected: str, tmp_path: Path) -> None:
    target = write(tmp_path / "input.yaml", content)
    rc, out, err = modeldeploy("render", "-f", str(target))
    assert out == ""
    assert one_error_line(rc, err) == "error: " + expected.format(f=target)


def test_a_10_mib_kind_is_cut_short_on_one_line(tmp_path: Path) -> None:
    target = write(tmp_path / "input.yaml", "apiVersion: v1\nkind: " + "x" * BIG + "\n")
    rc, _, err = modeldeploy("render", "-f", str(target))
    line = one_error_line(rc, err)
    assert line.startswith(
        f"error: {target}: no ModelDeployment (modeldeploy.io/v1alpha1) to render (found only: xxx"
    )
    assert re.search(r"x\.\.\. \([0-9]+ more characters\)$", line), line[-100:]
    assert len(line) < 1100


def test_render_reads_the_deepest_affinity_the_spec_allows(tmp_path: Path) -> None:
    # FREE_FORM_MAX_DEPTH levels of affinity, rendered into the Deployment as written.
    affinity = "{a: " * FREE_FORM_MAX_DEPTH + "1" + "}" * FREE_FORM_MAX_DEPTH
    target = write(tmp_path / "deep.yaml", _model_deployment(f"affinity: {affinity}"))
    rc, out, err = modeldeploy("render", "-f", str(target))
    assert rc == 0, err
    deployment = next(d for d in yaml.safe_load_all(out) if d["kind"] == "Deployment")
    node = deployment["spec"]["template"]["spec"]["affinity"]
    for _ in range(FREE_FORM_MAX_DEPTH):
        node = node["a"]
    assert node == 1


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        # Past `run`'s raised recursion limit too (cli.RUN_RECURSION_LIMIT).
        pytest.param(
            "clusters: " + "[" * 40_000 + "]" * 40_000 + "\n", "nested too deeply to read", id="deep"
        ),
        pytest.param(
            "clusters: " + "9" * 5000 + "\n",
            "Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits",
            id="integer-of-5000-digits",
        ),
    ],
)
@pytest.mark.parametrize("verb", ["status", "run"])
def test_a_kubeconfig_past_the_yaml_bounds_is_named(
    content: str, detail: str, verb: str, tmp_path: Path
) -> None:
    config = write(tmp_path / "kubeconfig", content)
    extra = ["--health-port=0", "--metrics-port=0"] if verb == "run" else ["fraud-scorer"]
    rc, _, err = modeldeploy(verb, *extra, f"--kubeconfig={config}")
    assert one_error_line(rc, err) == f"error: {NO_CONFIG} ({config}): {detail}"


def test_render_of_an_empty_directory_says_what_it_looked_for(tmp_path: Path) -> None:
    write(tmp_path / "notes.txt", "not a manifest")
    rc, _, err = modeldeploy("render", "-f", str(tmp_path))
    assert one_error_line(rc, err) == f"error: {tmp_path}: a directory with no *.yaml, *.yml or *.json file"


def test_crd_into_a_missing_directory_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "crd.yaml"
    rc, _, err = modeldeploy("crd", "-o", str(target))
    assert one_error_line(rc, err) == f"error: cannot write {target}: No such file or directory"


# ------------------------------------------------------------------------- what render accepts


def rendered(out: str) -> list[dict[str, object]]:
    assert out.startswith("# Rendered offline by `modeldeploy render`, for review. Do not apply")
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_render_reads_a_directory_like_kubectl(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", EXAMPLE_TEXT)
    write(tmp_path / "b.json", json.dumps({**EXAMPLE_DOC, "metadata": {"name": "other", "namespace": "ml"}}))
    write(tmp_path / "c.yml", "apiVersion: v1\nkind: Secret\nmetadata: {name: model-store-creds}\n")
    rc, out, err = modeldeploy("render", "-f", str(tmp_path))
    assert (rc, err) == (0, "")
    names = {doc["metadata"]["name"] for doc in rendered(out) if doc["kind"] == "Deployment"}  # type: ignore[index]
    assert names == {"fraud-scorer-primary", "other-primary"}


def test_render_expands_a_kind_list(tmp_path: Path) -> None:
    target = write(
        tmp_path / "list.json", json.dumps({"apiVersion": "v1", "kind": "List", "items": [EXAMPLE_DOC]})
    )
    rc, out, err = modeldeploy("render", "-f", str(target))
    assert (rc, err) == (0, "")
    direct = modeldeploy("render", "-f", str(EXAMPLE))[1]
    # The same documents; only their `# Source:` comments name the other file.
    assert out == direct.replace(f"# Source: {EXAMPLE}\n", f"# Source: {target}\n")


def readme_example() -> str:
    (block,) = re.findall(
        r"## A ModelDeployment\n\n```yaml\n(.*?)```", (REPO_ROOT / "README.md").read_text(), re.S
    )
    return str(block)


def test_the_readme_example_renders(tmp_path: Path) -> None:
    target = write(tmp_path / "readme.yaml", readme_example())
    rc, out, err = modeldeploy("render", "-f", str(target))
    assert (rc, err) == (0, "")
    kinds = sorted({str(doc["kind"]) for doc in rendered(out)})
    assert kinds == [
        "Deployment",
        "HTTPRoute",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodMonitor",
        "PrometheusRule",
        "Service",
    ]


@pytest.mark.parametrize(
    ("flags", "absent"),
    [
        pytest.param([], set(), id="both"),
        pytest.param(["--no-pod-monitor"], {"PodMonitor"}, id="no-pod-monitor"),
        pytest.param(["--no-prometheus-rule"], {"PrometheusRule"}, id="no-prometheus-rule"),
    ],
)
def test_render_without_the_prometheus_operator_crds(
    tmp_path: Path, flags: list[str], absent: set[str]
) -> None:
    target = write(tmp_path / "readme.yaml", readme_example())
    rc, out, err = modeldeploy("render", "-f", str(target), *flags)
    assert (rc, err) == (0, "")
    kinds = {str(doc["kind"]) for doc in rendered(out)}
    assert absent.isdisjoint(kinds)
    assert {"PodMonitor", "PrometheusRule"} - absent <= kinds


def test_the_readme_example_is_accepted_by_the_api_server(
    control_plane: ControlPlane, namespace: str
) -> None:
    doc = yaml.safe_load(readme_example())
    doc["metadata"]["namespace"] = namespace
    stored = control_plane.admin.apply(doc)
    assert stored["spec"]["scaling"]["minReplicas"] == 2


# --------------------------------------------------------- control verbs on the real API server


def admin_kubeconfig(control_plane: ControlPlane, path: Path) -> Path:
    return control_plane.kubeconfig(Credentials(user=ADMIN_USER, token=control_plane.admin_token), path)


@pytest.mark.parametrize(
    ("verb", "expected"),
    [
        pytest.param(
            "promote", "no rollout in progress (phase not yet reconciled): nothing to promote", id="promote"
        ),
        pytest.param(
            "abort", "no rollout in progress (phase not yet reconciled): nothing to abort", id="abort"
        ),
        pytest.param("retry", "phase not yet reconciled, not RolledBack: nothing to retry", id="retry"),
        pytest.param("resume", "not paused (phase not yet reconciled): nothing to resume", id="resume"),
    ],
)
def test_a_verb_with_nothing_to_act_on_writes_nothing(
    verb: str, expected: str, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    doc = {**EXAMPLE_DOC, "metadata": {"name": "fraud-scorer", "namespace": namespace}}
    before = control_plane.admin.apply(doc)["metadata"]["resourceVersion"]
    config = admin_kubeconfig(control_plane, tmp_path / "kubeconfig")
    rc, out, err = modeldeploy(verb, "fraud-scorer", "-n", namespace, f"--kubeconfig={config}")
    assert out == ""
    assert one_error_line(rc, err) == f"error: ModelDeployment {namespace}/fraud-scorer: {expected}"
    after = control_plane.admin.get("modeldeploy.io/v1alpha1", "ModelDeployment", namespace, "fraud-scorer")
    assert after is not None and after["metadata"]["resourceVersion"] == before


def test_pause_without_a_rollout_says_what_it_will_do(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    control_plane.admin.apply({**EXAMPLE_DOC, "metadata": {"name": "fraud-scorer", "namespace": namespace}})
    config = admin_kubeconfig(control_plane, tmp_path / "kubeconfig")
    rc, out, err = modeldeploy("pause", "fraud-scorer", "-n", namespace, f"--kubeconfig={config}")
    assert (rc, err) == (0, "")
    assert out.splitlines() == [
        f"ModelDeployment {namespace}/fraud-scorer: pause requested",
        "  no rollout is in progress: the next one will hold at its first step until resumed",
    ]
    after = control_plane.admin.get("modeldeploy.io/v1alpha1", "ModelDeployment", namespace, "fraud-scorer")
    assert after is not None and after["metadata"]["annotations"]["modeldeploy.io/paused"] == "true"


def test_status_of_a_missing_object(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    config = admin_kubeconfig(control_plane, tmp_path / "kubeconfig")
    rc, _, err = modeldeploy("status", "nope", "-n", namespace, f"--kubeconfig={config}")
    assert one_error_line(rc, err) == f"error: ModelDeployment {namespace}/nope not found"


# ------------------------------------------------------------------------------------- help


def test_the_kubectl_plugin_names_itself_as_kubectl_runs_it() -> None:
    from modeldeploy.cli import parser, prog_name

    assert prog_name("/usr/local/bin/kubectl-modeldeploy") == "kubectl modeldeploy"
    assert parser(prog_name("kubectl-modeldeploy")).format_usage().startswith("usage: kubectl modeldeploy")


@pytest.mark.parametrize(
    ("verb", "shown"),
    [
        pytest.param(
            "status", ["the ModelDeployment", "kubeconfig context's namespace", "--context"], id="status"
        ),
        pytest.param(
            "run", ["(default: 8080)", "(default: 60.0)", "init container", "one JSON object"], id="run"
        ),
    ],
)
def test_help_explains_every_argument(verb: str, shown: list[str]) -> None:
    rc, out, _ = modeldeploy(verb, "--help")
    assert rc == 0
    flat = " ".join(out.split())
    for text in shown:
        assert text in flat


@pytest.mark.parametrize(
    ("args", "refused"),
    [
        # One way to a cluster: the credentials a user has (in-cluster, else the kubeconfig).
        pytest.param(["run", "--server", "http://127.0.0.1:1"], "unrecognized arguments", id="run"),
        # The demo is the test bed's (`make demo`), not the operator's.
        pytest.param(["demo"], "invalid choice: 'demo'", id="demo"),
    ],
)
def test_what_left_the_operator_is_refused(args: list[str], refused: str) -> None:
    rc, out, err = modeldeploy(*args)
    assert (rc, out) == (2, "")
    assert refused in err


# ------------------------------------------------------------------ the bounded YAML reader


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "a: &a {x: 1}\nb: *a\nc: [*a, *a]\n",
            [{"a": {"x": 1}, "b": {"x": 1}, "c": [{"x": 1}] * 2}],
            id="alias-reused",
        ),
        pytest.param(
            "base: &b {k: v}\nm:\n  <<: *b\n  j: w\n",
            [{"base": {"k": "v"}, "m": {"k": "v", "j": "w"}}],
            id="merge-key",
        ),
        pytest.param("[" * 100 + "]" * 100, None, id="100-levels"),
        pytest.param("a: 1\n---\nb: 2\n", [{"a": 1}, {"b": 2}], id="two-documents"),
        pytest.param(_laughs(5), None, id="100000-values-with-aliases"),
    ],
)
def test_the_bounded_reader_reads_what_is_within_the_bounds(text: str, expected: list[Any] | None) -> None:
    docs = load_all(text)
    if expected is not None:
        assert docs == expected
    else:
        assert len(docs) == 1


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("[" * 101 + "]" * 101, f"nested deeper than {MAX_DEPTH} levels", id="101-levels"),
        pytest.param("a: &a [*a]\n", "an alias refers to a node that contains it", id="cycle"),
        pytest.param(
            "a: &a {b: {c: *a}}\n", "an alias refers to a node that contains it", id="cycle-two-down"
        ),
        pytest.param(_laughs(7), f"more than {MAX_NODES} values with aliases expanded", id="laughs"),
        pytest.param(
            "a: 1e400000\nb: -" + "9" * 5000, "Exceeds the limit", id="negative-integer-of-5000-digits"
        ),
    ],
)
def test_the_bounded_reader_refuses_with_a_place(text: str, problem: str) -> None:
    with pytest.raises(UnreadableError) as caught:
        load_all(text)
    assert (caught.value.problem or "").startswith(problem)
    assert caught.value.problem_mark is not None
