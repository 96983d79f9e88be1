"""`modeldeploy render` as a reviewer reads it: a key written twice is refused with its file and line
(PyYAML would keep the last value without a word), and every rendered document names the file it
came from, as `helm template` does, in output that kubectl still reads as plain multi-document YAML."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.cli import RENDER_HEADER
from modeldeploy.manifest_yaml import DuplicateKeyError, load_all
from test_cli import admin_kubeconfig, modeldeploy, one_error_line, write
from test_demo import require_kubectl
from testbed.controlplane import ControlPlane
from validation import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
MD_HEAD = "apiVersion: modeldeploy.io/v1alpha1\nkind: ModelDeployment\n"


def model_deployment(
    name: str = "a", model: str = '{name: m, version: "1", storageUri: s3://models/m/1}'
) -> str:
    return f"{MD_HEAD}metadata: {{name: {name}}}\nspec:\n  model: {model}\n"


# ------------------------------------------------------------------------- duplicate keys, the reader


@pytest.mark.parametrize(
    ("text", "key", "line", "first_line"),
    [
        pytest.param("a: 1\nb: 2\na: 3\n", "a", 3, 1, id="top-level"),
        pytest.param("x:\n  y:\n    v: 1\n    w: 2\n    v: 3\n", "v", 5, 3, id="nested"),
        pytest.param("l:\n- a: 1\n  b: 2\n  a: 3\n", "a", 4, 2, id="in-a-list-item"),
        pytest.param("a: 1\n---\nb: 1\nc: 2\nb: 3\n", "b", 5, 3, id="second-document"),
        pytest.param("x: {v: 1, w: 2, v: 3}\n", "v", 1, 1, id="flow-mapping"),
        pytest.param('{"a": 1,\n "a": 2}', "a", 2, 1, id="json"),
        pytest.param('version: "7"\n"version": "8"\n', "version", 2, 1, id="plain-and-quoted"),
        pytest.param("0x1: a\n1: b\n", 1, 2, 1, id="one-integer-written-twice"),
        pytest.param("base: &b {k: 1, k: 2}\nm: {<<: *b}\n", "k", 1, 1, id="inside-a-merged-mapping"),
    ],
)
def test_the_reader_refuses_a_key_given_twice(text: str, key: Any, line: int, first_line: int) -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        load_all(text)
    assert (caught.value.key, caught.value.line, caught.value.first_line) == (key, line, first_line)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a: {v: 1}\nb: {v: 2}\n", [{"a": {"v": 1}, "b": {"v": 2}}], id="same-key-two-mappings"),
        pytest.param("l:\n- a: 1\n- a: 2\n", [{"l": [{"a": 1}, {"a": 2}]}], id="same-key-two-list-items"),
        pytest.param("a: 1\n---\na: 2\n", [{"a": 1}, {"a": 2}], id="same-key-two-documents"),
        pytest.param('1: a\n"1": b\n', [{1: "a", "1": "b"}], id="integer-and-string"),
        # A merge key's pairs are overridden by the mapping's own: that is how YAML extends a mapping.
        pytest.param(
            "base: &b {k: 1, j: 1}\nm:\n  <<: *b\n  k: 2\n",
            [{"base": {"k": 1, "j": 1}, "m": {"k": 2, "j": 1}}],
            id="merge-key-overridden",
        ),
        pytest.param(
            "a: &a {k: 1}\nx:\n  b: &b {<<: *a, k: 2}\nc: {<<: *b, k: 3}\n",
            [{"a": {"k": 1}, "x": {"b": {"k": 2}}, "c": {"k": 3}}],
            id="merge-of-a-merge",
        ),
    ],
)
def test_the_reader_reads_a_key_once_per_mapping(text: str, expected: list[Any]) -> None:
    assert load_all(text) == expected


# ------------------------------------------------------------------------ duplicate keys, the CLI


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            model_deployment() + '  runtime:\n    image: x\n    image: "y"\n',
            '{f}:8: duplicate key "image" (first at line 7)',
            id="in-the-spec",
        ),
        pytest.param(
            MD_HEAD + "metadata:\n  name: a\n  name: b\nspec: {}\n",
            '{f}:5: duplicate key "name" (first at line 4)',
            id="in-metadata",
        ),
        pytest.param(
            model_deployment() + "---\n" + model_deployment("b", '{name: m, version: "7", version: "8"}'),
            '{f}:11: duplicate key "version" (first at line 11)',
            id="second-document",
        ),
        pytest.param(
            model_deployment() + "  scaling:\n    metrics:\n    - cpu: {averageUtilization: 70}\n"
            "      cpu: {averageUtilization: 80}\n",
            '{f}:9: duplicate key "cpu" (first at line 8)',
            id="in-a-list-item",
        ),
        pytest.param(
            json.dumps({"apiVersion": "v1", "kind": "List"})[:-1] + ', "kind": "List"}',
            '{f}:1: duplicate key "kind" (first at line 1)',
            id="json",
        ),
    ],
)
def test_render_refuses_a_duplicate_key_with_its_line(content: str, expected: str, tmp_path: Path) -> None:
    target = write(tmp_path / "input.yaml", content)
    rc, out, err = modeldeploy("render", "-f", str(target))
    assert out == ""
    assert one_error_line(rc, err) == "error: " + expected.format(f=target)


def test_render_names_the_file_of_a_directory_that_has_the_duplicate(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", model_deployment("a"))
    write(tmp_path / "b.yaml", model_deployment("b") + "  runtime: {}\n  runtime: {}\n")
    rc, out, err = modeldeploy("render", "-f", str(tmp_path))
    assert out == ""
    assert (
        one_error_line(rc, err)
        == f'error: {tmp_path / "b.yaml"}:7: duplicate key "runtime" (first at line 6)'
    )


# ------------------------------------------------------------------------------- source comments

SOURCE = re.compile(r"^---\n# Source: (.*)\n", re.M)


def sources(out: str) -> list[tuple[str, dict[str, Any]]]:
    """(the source comment, the object) of each rendered document, after checking the layout."""
    assert out.startswith(RENDER_HEADER + "---\n# Source: ")
    body = out[len(RENDER_HEADER) :]
    parts = SOURCE.split(body)  # ["", source1, doc1, source2, doc2, ...]
    assert parts[0] == ""
    return [(parts[i], yaml.safe_load(parts[i + 1])) for i in range(1, len(parts), 2)]


def test_each_document_names_its_file(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", model_deployment("a"))
    write(tmp_path / "b.json", json.dumps(yaml.safe_load(model_deployment("b"))))
    rc, out, err = modeldeploy("render", "-f", str(tmp_path))
    assert (rc, err) == (0, "")
    owners = [(src, doc["metadata"]["labels"]["modeldeploy.io/name"]) for src, doc in sources(out)]
    assert set(owners) == {(str(tmp_path / "a.yaml"), "a"), (str(tmp_path / "b.json"), "b")}
    assert len(owners) == len(list(yaml.safe_load_all(out)))  # no document without its comment


def test_one_file_names_its_file_too_and_the_names_are_as_given(tmp_path: Path) -> None:
    # Like helm (which always prints it): one file's output is its part of a directory's, verbatim.
    write(tmp_path / "a.yaml", model_deployment("a"))
    write(tmp_path / "b.yaml", model_deployment("b"))
    one = modeldeploy("render", "-f", "a.yaml", cwd=tmp_path)
    both = modeldeploy("render", "-f", ".", cwd=tmp_path)
    assert (one[0], one[2], both[0], both[2]) == (0, "", 0, "")
    assert {src for src, _ in sources(one[1])} == {"a.yaml"}
    assert {src for src, _ in sources(both[1])} == {"a.yaml", "b.yaml"}
    assert both[1].startswith(one[1])


def test_stdin_is_named_as_kubectl_names_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modeldeploy.cli", "render", "-f", "-"],
        input=model_deployment("a"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert {src for src, _ in sources(done.stdout)} == {"STDIN"}


def test_kubectl_applies_the_rendering_of_every_example(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """`render -f examples/` output, source comments and all, through `kubectl apply -f -` (a server
    dry run: every object is admitted and validated, nothing is stored). The examples live in `ml`;
    here in this test's namespace, so the shared control plane keeps no `ml`."""
    kubectl = require_kubectl()
    folder = tmp_path / "examples"
    folder.mkdir()
    for example in sorted(EXAMPLES.glob("*.yaml")):
        write(
            folder / example.name, example.read_text().replace("namespace: ml\n", f"namespace: {namespace}\n")
        )
    rc, out, err = modeldeploy("render", "-f", str(folder))
    assert (rc, err) == (0, "")
    documents = sources(out)
    assert {Path(src).name for src, _ in documents} == {e.name for e in EXAMPLES.glob("*.yaml")}
    config = admin_kubeconfig(control_plane, tmp_path / "kubeconfig")
    done = subprocess.run(
        [str(kubectl), f"--kubeconfig={config}", "apply", "--dry-run=server", "-f", "-"],
        input=out,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == len(documents), done.stdout
    assert all(line.endswith("(server dry run)") for line in done.stdout.strip().splitlines()), done.stdout
