"""`operator/` is a source root, not a package: the stdlib already owns the name `operator`.

With an `__init__.py` there, any process whose sys.path starts at the repository (a `python -c` run from
the checkout, pytest's rootdir insertion, an IDE) would import the project directory instead of the
stdlib module, and break everything that uses operator.itemgetter, from dataclasses to kopf.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from validation import REPO_ROOT

SOURCE_ROOT = REPO_ROOT / "operator"
STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()

PROBE = """
import json, operator, modeldeploy
print(json.dumps({
    "operator": getattr(operator, "__file__", None),
    "itemgetter": hasattr(operator, "itemgetter"),
    "modeldeploy": modeldeploy.__file__,
}))
"""


def test_operator_directory_is_not_a_package() -> None:
    assert SOURCE_ROOT.is_dir()
    assert not (SOURCE_ROOT / "__init__.py").exists(), "operator/__init__.py would shadow the stdlib module"
    assert (SOURCE_ROOT / "modeldeploy" / "__init__.py").is_file()


@pytest.mark.parametrize(
    "pythonpath",
    [
        [],
        [REPO_ROOT],
        [REPO_ROOT, SOURCE_ROOT],
        [SOURCE_ROOT, REPO_ROOT],
    ],
    ids=["installed", "repo-root-on-path", "repo-root-then-source-root", "source-root-then-repo-root"],
)
def test_import_operator_gives_the_stdlib(pythonpath: list[Path]) -> None:
    # Run from the checkout, so that "" (the current directory) is on sys.path too, as for `python -c`.
    env_path = ":".join(str(p) for p in pythonpath)
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["itemgetter"], f"`import operator` gave {found['operator']}, not the stdlib module"
    assert Path(found["operator"]).resolve().parent == STDLIB
    # ...and the project's own package still imports from the source root.
    assert Path(found["modeldeploy"]).resolve().is_relative_to(SOURCE_ROOT.resolve())


def test_in_process_operator_is_the_stdlib() -> None:
    import operator

    assert operator.itemgetter(1)([0, 1]) == 1
    assert Path(operator.__file__).resolve().parent == STDLIB
