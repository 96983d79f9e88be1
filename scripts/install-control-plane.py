#!/usr/bin/env python3
"""Finds, or fetches, what the real-API tests and the demo run on; `make test` and `make demo` call it.

1. The control plane (etcd, kube-apiserver, kube-controller-manager of Kubernetes v1.36.2), the first
   of: $KUBEBUILDER_ASSETS; ../shared/k8s/bin beside the clone; .tools/k8s/bin. When none has it, it
   fetches into .tools/k8s/bin controller-tools' envtest archive (etcd, kube-apiserver; envtest has
   no controller manager) and the official kube-controller-manager release binary.
2. The upstream CRDs (Gateway API, Istio, Prometheus Operator, KEDA), the first of:
   $MODELDEPLOY_THIRD_PARTY_CRDS; ../shared/third-party-crds; .tools/third-party-crds, which it fetches.

Every download is checked against a checksum pinned below before anything is unpacked, and lands in
place only whole. Offline and with nothing found, it prints ONE line naming what is missing and the
ways to provide it, and exits 1. `--from DIR` takes the downloads from DIR (files named as the last
part of each URL) instead of the network: for a machine that cannot reach them.

Only the standard library, plus PyYAML (the project's dependency) to split Istio's one CRD file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
TOOLS_BIN = ROOT / ".tools" / "k8s" / "bin"
TOOLS_CRDS = ROOT / ".tools" / "third-party-crds"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")

KUBERNETES = "v1.36.2"
# The envtest archive: controller-tools' "envtest-releases", on its GitHub releases. The sha512 is the
# one published in controller-tools' envtest-releases.yaml (releases.v1.36.2, linux-amd64; read at
# its commit 434758187ddd). The archive holds controller-tools/envtest/{etcd,kube-apiserver,kubectl}.
ENVTEST_URL = (
    "https://github.com/kubernetes-sigs/controller-tools/releases/download/"
    f"envtest-{KUBERNETES}/envtest-{KUBERNETES}-linux-amd64.tar.gz"
)
ENVTEST_SHA512 = (
    "ea743186c8a799f5cf8faf16969f86189d003cb7d130e0ac4b58789f1e5748dc"
    "f30ebe91c837a10d5ac415383da3e10b9e64d65785c938c23e739781cfb76f08"
)
ENVTEST_MEMBERS = {
    "controller-tools/envtest/etcd": "etcd",
    "controller-tools/envtest/kube-apiserver": "kube-apiserver",
}
# The official release binary. The sha256 is its published `<url>.sha256` as another project
# recorded it after checking (the machine this was written on could not reach dl.k8s.io to read it
# itself), so a fetch also reads the published .sha256 and refuses the binary unless the file, that
# .sha256 and this pin all agree. (../shared/k8s/bin is built from source: not the same artefact.)
CONTROLLER_MANAGER_URL = f"https://dl.k8s.io/release/{KUBERNETES}/bin/linux/amd64/kube-controller-manager"
CONTROLLER_MANAGER_SHA256 = "6332e45474baf6362f50394d8f7c6002274db04d68fe51dbe2229ef5c0b21e3c"

# The CRDs, pinned by upstream commit: the commits ../shared/third-party-crds was copied from (see its
# README), so the schema checks see the same bytes. They are main-branch commits newer than every
# release tag (the Gateway API files say bundle-version v0.0.0-dev), so no release asset has these
# bytes; a commit URL is as immutable. Each sha256 is computed from the upstream file at that commit,
# byte-identical to its copy in ../shared/third-party-crds (tests/test_install_control_plane.py
# checks the pins against those copies). Istio's is its one generated file, split here into the two
# CRDs the project renders; the split reproduces the shared copies byte for byte.
RAW = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
GATEWAY_API = ("kubernetes-sigs/gateway-api", "4564255ac2c35d582249b3cdf261bdf51c8bca32")
PROMETHEUS_OPERATOR = ("prometheus-operator/prometheus-operator", "6adcebc5076c34f4f55f8f5f7b1e528929373ac7")
KEDA = ("kedacore/keda", "8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a")
ISTIO = ("istio/api", "b8f8791d9653b2edc77a071d48887e582cfe84bf")
ISTIO_CRDS = ("virtualservices", "destinationrules")


@dataclass(frozen=True)
class Download:
    url: str
    algorithm: str  # a hashlib name
    digest: str
    install: Callable[[Path, Path], None]  # (the checked file, the folder being filled)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]


class Refused(Exception):
    """A download that must not be used; the message is the one line to print."""


class Offline(Exception):
    """A download that could not be had."""


def _copy_as(name: str, mode: int = 0o644) -> Callable[[Path, Path], None]:
    def install(file: Path, folder: Path) -> None:
        shutil.copyfile(file, folder / name)
        (folder / name).chmod(mode)

    return install


def unpack_envtest(archive: Path, folder: Path) -> None:
    """etcd and kube-apiserver out of the envtest archive, by name: no other member is written."""
    with tarfile.open(archive, "r:gz") as tar:
        found = set()
        for member in tar.getmembers():
            name = ENVTEST_MEMBERS.get(member.name.removeprefix("./"))
            if name is None or not member.isfile():
                continue
            source = tar.extractfile(member)
            assert source is not None  # a regular file
            with source, (folder / name).open("wb") as out:
                shutil.copyfileobj(source, out)
            (folder / name).chmod(0o755)
            found.add(name)
    missing = sorted(set(ENVTEST_MEMBERS.values()) - found)
    if missing:
        raise Refused(f"{archive.name} has no {', '.join(missing)} (expected {', '.join(ENVTEST_MEMBERS)})")


def split_istio(file: Path, folder: Path) -> None:
    import yaml  # the project's dependency; only this part needs it

    docs = [doc for doc in yaml.safe_load_all(file.read_text()) if isinstance(doc, dict)]
    for plural in ISTIO_CRDS:
        (crd,) = (doc for doc in docs if doc["metadata"]["name"] == f"{plural}.networking.istio.io")
        (folder / f"istio.{plural}.yaml").write_text(yaml.safe_dump(crd, sort_keys=False))


def _raw(source: tuple[str, str], path: str) -> str:
    return RAW.format(repo=source[0], commit=source[1], path=path)


CONTROL_PLANE = (
    Download(ENVTEST_URL, "sha512", ENVTEST_SHA512, unpack_envtest),
    Download(
        CONTROLLER_MANAGER_URL,
        "sha256",
        CONTROLLER_MANAGER_SHA256,
        _copy_as("kube-controller-manager", 0o755),
    ),
)
_GATEWAY = "config/crd/standard/gateway.networking.k8s.io_{}.yaml"
_MONITORING = "example/prometheus-operator-crd/monitoring.coreos.com_{}.yaml"
CRDS = (
    *(
        Download(
            _raw(GATEWAY_API, _GATEWAY.format(plural)),
            "sha256",
            digest,
            _copy_as(f"gateway-api.{plural}.yaml"),
        )
        for plural, digest in (
            ("gatewayclasses", "4c0b7eac1d0979defa6d2b54dd89c5fd6a40ec918e464974229aaa927cc1b646"),
            ("gateways", "161791d534b1ef582573cad99f9163eb8761715e6e934dd93374a5999ad17356"),
            ("grpcroutes", "7c9663161de4131ececfe60a652dae3dacd373bc024f1ac2eb22c1ee8d34f657"),
            ("httproutes", "5b746e5dd696239cdf7d1a6dc6293d103fb78056598aa3f2e14f7512dc8c362b"),
            ("referencegrants", "068bebe134b7f594e1a929bd7e32e722057548b47d485c5a3f3e55be34f0e4a0"),
        )
    ),
    *(
        Download(
            _raw(PROMETHEUS_OPERATOR, _MONITORING.format(plural)),
            "sha256",
            digest,
            _copy_as(f"prometheus-operator.{plural}.yaml"),
        )
        for plural, digest in (
            ("podmonitors", "45a93443daa687d3654f7e9631909ff7edcdf3ec09c5e60251b74aa2722aee5d"),
            ("prometheusrules", "78be98554b9c8506ab2b4f4feb91c5f3a56e536a0a510f3a8e876a459970d56d"),
            ("servicemonitors", "a99047972c9dd7679ce2050b9968e8a08773492e671b3e17abd476d42aa78a32"),
        )
    ),
    Download(
        _raw(KEDA, "config/crd/bases/keda.sh_scaledobjects.yaml"),
        "sha256",
        "207afc4ca44fd9e3f4bbfb1c8fae08f3a365e098a52714fe8eb672bbd239cbcd",
        _copy_as("keda.scaledobjects.yaml"),
    ),
    Download(
        _raw(ISTIO, "kubernetes/customresourcedefinitions.gen.yaml"),
        "sha256",
        "c98c49e3435f7ca04938cc710f929bbfe952472b177c3a7384b31e383c6b6c7a",
        split_istio,
    ),
)
CRD_FILES = (
    *(
        f"gateway-api.{p}.yaml"
        for p in ("gatewayclasses", "gateways", "grpcroutes", "httproutes", "referencegrants")
    ),
    *(f"prometheus-operator.{p}.yaml" for p in ("podmonitors", "prometheusrules", "servicemonitors")),
    "keda.scaledobjects.yaml",
    *(f"istio.{p}.yaml" for p in ISTIO_CRDS),
)

HOW_TO_PROVIDE = (
    "set KUBEBUILDER_ASSETS to a folder with etcd, kube-apiserver and kube-controller-manager (and"
    " MODELDEPLOY_THIRD_PARTY_CRDS to one with the CRDs), put the shared folder at ../shared (k8s/bin,"
    " third-party-crds), or run scripts/install-control-plane.py with network access (or --from DIR"
    " holding its downloads) to fetch them into .tools/"
)


@dataclass(frozen=True)
class Part:
    """One thing to find: a folder that must hold `files`, looked for in order."""

    what: str
    variable: str
    files: tuple[str, ...]
    shared: Path
    tools: Path
    downloads: tuple[Download, ...]
    executable: bool

    def complete(self, folder: Path) -> bool:
        mode = os.X_OK if self.executable else os.R_OK
        return all(os.access(folder / name, mode) and (folder / name).is_file() for name in self.files)

    def missing(self, folder: Path) -> list[str]:
        return [name for name in self.files if not (folder / name).is_file()]


PARTS = (
    Part(
        f"the control plane of Kubernetes {KUBERNETES}", "KUBEBUILDER_ASSETS", BINARIES,
        SHARED / "k8s" / "bin", TOOLS_BIN, CONTROL_PLANE, executable=True,
    ),
    Part(
        "the third-party CRDs", "MODELDEPLOY_THIRD_PARTY_CRDS", CRD_FILES,
        SHARED / "third-party-crds", TOOLS_CRDS, CRDS, executable=False,
    ),
)  # fmt: skip


def locate(part: Part, env: Mapping[str, str]) -> tuple[Path | None, Path | None]:
    """(the folder that has it, or None; the folder to fetch into, or None when the user named one)."""
    named = env.get(part.variable, "")
    if named and Path(named).resolve() != part.tools.resolve():
        # Named by the user: used as it is, never written into.
        return (Path(named), None) if part.complete(Path(named)) else (None, None)
    for folder in (part.shared, part.tools):
        if part.complete(folder):
            return folder, None
    return None, part.tools


def checked(download: Download, file: Path) -> None:
    digest = hashlib.new(download.algorithm)
    with file.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != download.digest:
        raise Refused(
            f"refused {download.filename}: its {download.algorithm} is {digest.hexdigest()},"
            f" the pinned one is {download.digest}; nothing was installed"
        )


def fetch(url: str, dest: Path, say: Callable[[str], None]) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, dest.open("wb") as out:  # noqa: S310  # fixed https URLs
            say(f"setup: downloading {url}")
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise Offline(f"cannot download {url}: {reason}") from error


def obtain(download: Download, into: Path, source: Path | None, say: Callable[[str], None]) -> Path:
    """The download as a local file: from `source` when given, else from its URL."""
    if source is not None:
        local = source / download.filename
        if not local.is_file():
            raise Offline(f"no {download.filename} in {source}")
        return local
    dest = into / download.filename
    fetch(download.url, dest, say)
    if download.url == CONTROLLER_MANAGER_URL:
        published = into / "published.sha256"
        fetch(CONTROLLER_MANAGER_URL + ".sha256", published, say)
        if published.read_text().split()[:1] != [download.digest]:
            raise Refused(
                f"refused kube-controller-manager: the published {CONTROLLER_MANAGER_URL}.sha256 says"
                f" {published.read_text().strip()}, the pinned one is {download.digest};"
                " nothing was installed"
            )
    return dest


def install(part: Part, target: Path, source: Path | None, say: Callable[[str], None]) -> None:
    """Every download checked, then unpacked into a fresh folder that replaces `target` whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as tmp:
        work, staged = Path(tmp) / "downloads", Path(tmp) / "staged"
        work.mkdir()
        staged.mkdir()
        for download in part.downloads:
            file = obtain(download, work, source, say)
            checked(download, file)
            download.install(file, staged)
        if not part.complete(staged):
            raise Refused(f"{part.what}: the downloads gave no {', '.join(part.missing(staged))}")
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)


def run(env: Mapping[str, str], source: Path | None, say: Callable[[str], None]) -> str | None:
    """None when every part is there (each said in one line), else the ONE line saying what is missing
    and how to provide it. The lines about parts that were found wait until the end, so that a
    failure is the only thing printed."""
    found_lines: list[str] = []
    missing: list[str] = []
    for part in PARTS:
        found, fetch_into = locate(part, env)
        if found is not None:
            found_lines.append(f"setup: {part.what}: {found}")
            continue
        if fetch_into is None:  # named by the user, incomplete: not ours to fill
            named = Path(env[part.variable])
            lacks = ", ".join(part.missing(named))
            return f"setup failed: {part.variable}={named} has no {lacks}; {HOW_TO_PROVIDE}"
        if missing:  # offline already: do not wait for a second timeout
            missing.append(part.what)
            continue
        try:
            install(part, fetch_into, source, say)
        except Refused as refused:
            return f"setup failed: {refused}"
        except Offline as offline:
            missing.append(f"{part.what} ({offline})")
            continue
        found_lines.append(f"setup: {part.what}: fetched into {fetch_into}")
    if missing:
        variables = " or ".join(f"${part.variable}" for part in PARTS)
        where = f"not in {variables}, ../shared or .tools/"
        return f"setup failed: missing {' and '.join(missing)}: {where}; {HOW_TO_PROVIDE}"
    for line in found_lines:
        say(line)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--from", dest="source", type=Path, help="take the downloads from this folder")
    parser.add_argument(
        "--for-make",
        action="store_true",
        help="print the failure line on stdout, for the Makefile to show as its one error line",
    )
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    failure = None
    if (platform.system(), platform.machine()) != ("Linux", "x86_64") and not all(
        locate(part, os.environ)[0] for part in PARTS
    ):
        failure = f"setup failed: the pinned downloads are Linux amd64 builds; {HOW_TO_PROVIDE}"
    else:
        failure = run(os.environ, args.source, say)
    if failure is None:
        return 0
    print(failure, file=sys.stdout if args.for_make else sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
