"""scripts/install-control-plane.py: where `make test` and `make demo` get the real control plane and
the upstream CRDs on a machine without ../shared.

Its downloads cannot run here (no route to GitHub or dl.k8s.io), so these prove what a user meets:
offline with nothing found, the script and `make control-plane` each print one line and exit
non-zero; a download whose checksum differs is refused and nothing is installed; matching ones are
unpacked, only the binaries named; the pinned CRD checksums are those of the copies the tests use;
and a pytest run without a control plane says so once, or fails with CI=true.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from assets import REPO_ROOT, SCRIPT, THIRD_PARTY_CRDS, setup
from validation import missing_third_party_crds

ENVTEST_ARCHIVE = f"envtest-{setup.KUBERNETES}-linux-amd64.tar.gz"
STAND_IN = b"#!/bin/sh\nexit 0\n"


def clone(tmp_path: Path) -> Path:
    """The files `make control-plane` needs, in a folder with no ../shared beside it."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "scripts")
    shutil.copy(REPO_ROOT / "Makefile", repo)
    shutil.copy(REPO_ROOT / "pyproject.toml", repo)
    (repo / "stamp").touch()  # stands for the .venv stamp: this test's Python is the venv's
    return repo


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def offline_env(**extra: str) -> dict[str, str]:
    """No assets named, no CI, and every https request sent to a closed loopback port: offline, the
    same on a machine that has a network (so no test here ever downloads)."""
    drop = ("KUBEBUILDER_ASSETS", "MODELDEPLOY_THIRD_PARTY_CRDS", "CI", "NO_PROXY", "no_proxy")
    env = {key: value for key, value in os.environ.items() if key not in drop}
    proxy = f"http://127.0.0.1:{closed_port()}"
    env.update(https_proxy=proxy, HTTPS_PROXY=proxy, **extra)
    return env


def script(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(repo / "scripts" / SCRIPT.name), *args],
        cwd=repo,
        env=offline_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_how_to_provide(line: str) -> None:
    for way in ("KUBEBUILDER_ASSETS", "../shared", "scripts/install-control-plane.py with network access"):
        assert way in line, line


@pytest.mark.parametrize(
    "named",
    [pytest.param(None, id="KUBEBUILDER_ASSETS unset"), pytest.param("", id="KUBEBUILDER_ASSETS empty")],
)
def test_offline_and_nothing_found_the_script_says_one_line(tmp_path: Path, named: str | None) -> None:
    repo = clone(tmp_path)
    result = script(repo, **({} if named is None else {"KUBEBUILDER_ASSETS": named}))
    assert (result.returncode, result.stdout) == (1, "")
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"setup failed: missing the control plane of Kubernetes {setup.KUBERNETES} (cannot download"
        f" {setup.ENVTEST_URL}: "
    ), line
    assert " and the third-party CRDs: not in $KUBEBUILDER_ASSETS or $MODELDEPLOY_THIRD_PARTY_CRDS" in line
    assert_how_to_provide(line)
    assert not (repo / ".tools" / "k8s" / "bin").exists()


def test_offline_and_nothing_found_make_says_one_line(tmp_path: Path) -> None:
    # `make test` and `make demo` run this target first; the venv is this test's.
    repo = clone(tmp_path)
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "control-plane",
            "STAMP=stamp",
            f"BIN={Path(sys.executable).parent}",
        ],
        cwd=repo,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    (line,) = (result.stdout + result.stderr).splitlines()
    assert line.startswith("Makefile:"), line
    assert f"*** setup failed: missing the control plane of Kubernetes {setup.KUBERNETES} (" in line
    assert_how_to_provide(line)


def test_a_named_folder_without_the_binaries_is_named_and_left_alone(tmp_path: Path) -> None:
    repo = clone(tmp_path)
    named = tmp_path / "assets"
    named.mkdir()
    result = script(repo, KUBEBUILDER_ASSETS=str(named))
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"setup failed: KUBEBUILDER_ASSETS={named} has no etcd, kube-apiserver, kube-controller-manager; "
    ), line
    assert list(named.iterdir()) == []


def envtest_archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return path


ENVTEST_MEMBERS = {
    "controller-tools/envtest/etcd": STAND_IN,
    "controller-tools/envtest/kube-apiserver": STAND_IN,
    "controller-tools/envtest/kubectl": STAND_IN,  # in the archive, not wanted
    "../escaped": b"outside",  # never written, wherever it points
}


def downloads_folder(tmp_path: Path, members: dict[str, bytes] = ENVTEST_MEMBERS) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    envtest_archive(folder / ENVTEST_ARCHIVE, members)
    (folder / "kube-controller-manager").write_bytes(STAND_IN)
    return folder


def test_the_script_refuses_a_download_whose_checksum_differs(tmp_path: Path) -> None:
    repo = clone(tmp_path)
    source = downloads_folder(tmp_path)
    result = script(repo, f"--from={source}")
    actual = hashlib.sha512((source / ENVTEST_ARCHIVE).read_bytes()).hexdigest()
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"setup failed: refused {ENVTEST_ARCHIVE}: its sha512 is {actual}, the pinned one is"
        f" {setup.ENVTEST_SHA512}; nothing was installed\n"
    )
    assert not (repo / ".tools" / "k8s" / "bin").exists()


def pinned_to(source: Path, wrong: str | None) -> object:
    """The control-plane part with its pins replaced by the checksums of the files in `source`,
    except the download named `wrong`, which keeps a checksum that does not match."""
    part = setup.PARTS[0]
    downloads = []
    for download in part.downloads:
        digest = hashlib.new(download.algorithm, (source / download.filename).read_bytes()).hexdigest()
        if download.filename == wrong:
            digest = "0" * len(digest)
        downloads.append(dataclasses.replace(download, digest=digest))
    return dataclasses.replace(part, downloads=tuple(downloads))


def test_matching_downloads_are_unpacked_by_name(tmp_path: Path) -> None:
    source = downloads_folder(tmp_path)
    target = tmp_path / "tools" / "k8s" / "bin"
    setup.install(pinned_to(source, None), target, source, print)
    assert sorted(p.name for p in target.iterdir()) == ["etcd", "kube-apiserver", "kube-controller-manager"]
    for binary in target.iterdir():
        assert binary.read_bytes() == STAND_IN
        assert os.access(binary, os.X_OK), binary
    assert not (tmp_path / "tools" / "k8s" / "escaped").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["bin"]  # no staging left behind


@pytest.mark.parametrize(
    "wrong",
    [pytest.param(ENVTEST_ARCHIVE, id="envtest archive"), pytest.param("kube-controller-manager", id="kcm")],
)
def test_one_mismatch_installs_nothing_and_keeps_what_was_there(tmp_path: Path, wrong: str) -> None:
    source = downloads_folder(tmp_path)
    target = tmp_path / "tools" / "k8s" / "bin"
    target.mkdir(parents=True)
    (target / "etcd").write_bytes(b"the one from before")
    with pytest.raises(
        setup.Refused, match=rf"^refused {wrong}: its sha\d+ is [0-9a-f]+, the pinned one is 0+;"
    ):
        setup.install(pinned_to(source, wrong), target, source, print)
    assert [p.name for p in target.iterdir()] == ["etcd"]
    assert (target / "etcd").read_bytes() == b"the one from before"


def test_an_archive_without_the_api_server_is_refused(tmp_path: Path) -> None:
    source = downloads_folder(tmp_path, {"controller-tools/envtest/etcd": STAND_IN})
    target = tmp_path / "tools" / "k8s" / "bin"
    with pytest.raises(setup.Refused, match=rf"^{ENVTEST_ARCHIVE} has no kube-apiserver "):
        setup.install(pinned_to(source, None), target, source, print)
    assert not target.exists()


# The upstream file names of the CRDs copied verbatim into ../shared/third-party-crds, by prefix.
SHARED_NAMES = {
    "gateway.networking.k8s.io_": "gateway-api.",
    "monitoring.coreos.com_": "prometheus-operator.",
    "keda.sh_": "keda.",
}


def test_the_pinned_crd_checksums_are_those_of_the_copies_the_tests_use() -> None:
    if not THIRD_PARTY_CRDS.is_dir():
        missing_third_party_crds()
    checked = []
    for download in setup.CRDS:
        if download.install is setup.split_istio:
            continue  # one generated file upstream, split here: see the next test
        prefix = next(p for p in SHARED_NAMES if download.filename.startswith(p))
        name = SHARED_NAMES[prefix] + download.filename.removeprefix(prefix)
        setup.checked(download, THIRD_PARTY_CRDS / name)
        checked.append(name)
    assert len(checked) == 9, checked


def test_istio_split_gives_the_copies_the_tests_use(tmp_path: Path) -> None:
    if not THIRD_PARTY_CRDS.is_dir():
        missing_third_party_crds()
    copies = {plural: (THIRD_PARTY_CRDS / f"istio.{plural}.yaml").read_text() for plural in setup.ISTIO_CRDS}
    other = (
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: x.istio.io}\n"
    )
    generated = tmp_path / "customresourcedefinitions.gen.yaml"
    generated.write_text("# generated\n" + "---\n".join([other, *copies.values()]))
    out = tmp_path / "out"
    out.mkdir()
    setup.split_istio(generated, out)
    assert {p.name: p.read_text() for p in out.iterdir()} == {f"istio.{k}.yaml": v for k, v in copies.items()}


def run_real_api_modules(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "no-binaries"
    empty.mkdir()
    return subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "tests/test_faults.py", "tests/test_rbac_proof.py",
        ],
        cwd=REPO_ROOT,
        env={**offline_env(**env), "KUBEBUILDER_ASSETS": str(empty)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip


def test_without_a_control_plane_the_summary_says_so_once(tmp_path: Path) -> None:
    result = run_real_api_modules(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    (line,) = skipped  # two modules, many tests: one line
    assert (
        line.startswith("SKIPPED [") and "tests/conftest.py:1: real API server tier not run: no etcd" in line
    )
    assert_how_to_provide(line)


def test_without_a_control_plane_ci_fails_the_run_with_that_line(tmp_path: Path) -> None:
    result = run_real_api_modules(tmp_path, CI="true")
    assert result.returncode == 1, result.stdout[-3000:]
    lines = [line for line in result.stdout.splitlines() if "real API server tier not run" in line]
    (line,) = lines
    assert line.endswith("-- CI=true, so the run fails !"), line
