"""The model puller (runtime-images/model-puller/puller.py), against real servers on loopback.

- https: a real TLS server (http.server + a throwaway self-signed certificate made by openssl),
  serving good and malicious tar.gz/zip archives; the puller runs in-process, loaded from its path.
- pvc: a temporary directory stands in for the claim's mount (--pvc-mount-root).
- s3 and gs: moto's S3 server and gcp-storage-emulator on loopback, with the puller run as a
  subprocess by the Python of a separate virtualenv (.tools/puller-venv, built on first use) that
  mirrors the image (requirements.txt) plus the two emulators: boto3's botocore pins
  python-dateutil<3, which the operator's kubernetes client (>=3) cannot share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.protobuf import text_format

from modeldeploy.api.spec import ModelSource
from modeldeploy.render import model_config_pb2
from modeldeploy.render.modelconfig import config_pbtxt

ROOT = Path(__file__).resolve().parents[1]
PULLER_PATH = ROOT / "runtime-images" / "model-puller" / "puller.py"
PULLER_REQUIREMENTS = PULLER_PATH.parent / "requirements.txt"
PULLER_VENV = ROOT / ".tools" / "puller-venv"
# The emulators the s3/gs tests run, installed beside the image's own requirements.
PULLER_TEST_DEPS = ("moto[server]==5.2.5", "gcp-storage-emulator==2026.7.19")

TOKEN = "s3cr3t-bearer-token-value"  # a test token that must never be printed
SIGNATURE = "X-Amz-Signature=deadbeefcafe0123"
CONFIG = b'name: "simple"\nbackend: "onnxruntime"\nmax_batch_size: 8\n'
MODEL_FILES = {"config.pbtxt": CONFIG, "1/model.onnx": b"\x08\x07onnx-bytes-v1"}


def _load_puller() -> ModuleType:
    spec = importlib.util.spec_from_file_location("modeldeploy_model_puller", PULLER_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


puller = _load_puller()


# ------------------------------------------------------------------------------ archive builders

# Each archive is a list of (kind, name, payload): kind is file, dir, symlink, hardlink or fifo;
# payload is the file's bytes or the link target.
Member = tuple[str, str, Any]


def make_tar(members: list[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o600 if kind == "file" else 0o700  # owner-only: the puller must widen it
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
                "chardev": tarfile.CHRTYPE,
            }[kind]
            if kind in ("symlink", "hardlink"):
                info.linkname = payload
            tar.addfile(info)
    return buf.getvalue()


def make_zip(members: list[Member]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for kind, name, payload in members:
            info = zipfile.ZipInfo(name + ("/" if kind == "dir" else ""))
            info.create_system = 3  # unix, so external_attr carries a mode
            if kind == "symlink":
                info.external_attr = (0o120777 << 16) & 0xFFFF0000
                archive.writestr(info, payload)
            elif kind == "dir":
                info.external_attr = (0o40755 << 16) | 0x10
                archive.writestr(info, b"")
            else:
                info.external_attr = 0o100600 << 16
                archive.writestr(info, payload)
    return buf.getvalue()


def model_members(prefix: str = "", files: dict[str, bytes] = MODEL_FILES) -> list[Member]:
    return [("file", prefix + name, data) for name, data in files.items()]


# ------------------------------------------------------------------------------ the https server


@dataclass
class Route:
    responses: list[tuple[int, bytes, dict[str, str]]]  # served in turn; the last one repeats


@dataclass
class HttpsServer:
    base_url: str
    ca_file: Path
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def serve(self, path: str, body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> str:
        self.routes[path] = Route([(status, body, headers or {})])
        return self.base_url + path

    def serve_sequence(self, path: str, responses: list[tuple[int, bytes]]) -> str:
        self.routes[path] = Route([(status, body, {}) for status, body in responses])
        return self.base_url + path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test server's certificate (Debian package openssl)")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture(scope="session")
def ca_signed_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate it signed: (ca.crt, server cert, server key)."""
    d = tmp_path_factory.mktemp("ca")
    ca, ca_key, csr, cert, key = (
        d / n for n in ("ca.crt", "ca.key", "server.csr", "server.crt", "server.key")
    )
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    steps = [
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=modeldeploy test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            str(ca_key),
            "-out",
            str(ca),
        ],
        [
            "openssl",
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(csr),
        ],
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(ext),
            "-out",
            str(cert),
        ],
    ]
    for step in steps:
        subprocess.run(step, check=True, capture_output=True, timeout=60)
    return ca, cert, key


@pytest.fixture
def https_server(tls_files: tuple[Path, Path]) -> Iterator[HttpsServer]:
    cert, key = tls_files
    with serve_https(cert, key, cert) as state:
        yield state


@contextlib.contextmanager
def serve_https(cert: Path, key: Path, ca_file: Path) -> Iterator[HttpsServer]:
    state = HttpsServer(base_url="", ca_file=ca_file)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            with lock:
                state.requests.append((self.path, dict(self.headers.items())))
                route = state.routes.get(path)
                if route is None:
                    status, body, headers = 404, b"not found", {}
                else:
                    status, body, headers = route.responses[0]
                    if len(route.responses) > 1:
                        route.responses.pop(0)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest's output clean

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that hangs up mid-body (a refused download) is no error of the server's

    server = Server(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.base_url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# ---------------------------------------------------------------------------------- run helpers


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    repository: Path

    @property
    def model_dir(self) -> Path:
        return self.repository / "simple"

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def assert_clean_failure(self, *fragments: str) -> None:
        """Exit 1, exactly one line on stderr naming the problem, and nothing left in the repository."""
        assert self.code == 1, self.stdout + self.stderr
        lines = self.stderr.splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("model-puller: "), lines
        for fragment in fragments:
            assert fragment in lines[0], lines[0]
        assert list(self.repository.iterdir()) == [], list(self.repository.iterdir())


@pytest.fixture
def run_puller(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    repository = tmp_path / "models"
    repository.mkdir()
    # No ambient credentials or CA overrides leak into the tests.
    for name in ("STORAGE_BEARER_TOKEN", "SSL_CERT_FILE", "SSL_CERT_DIR", "MODEL_PULLER_MAX_BYTES"):
        monkeypatch.delenv(name, raising=False)

    def run(source: str, *extra: str, env: dict[str, str] | None = None) -> Result:
        args = [
            "--source", source, "--model-name", "simple", "--repository", str(repository),
            "--pvc-mount-root", str(tmp_path / "mnt"), "--secret-dir", str(tmp_path / "secret"),
            "--termination-log", str(tmp_path / "termination-log"),
            "--retries", "3", "--retry-base-delay", "0.01", "--timeout", "10", *extra,
        ]  # fmt: skip
        code = puller.main(args, env={**os.environ, **(env or {})})
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err, repository)

    return run


def tree(path: Path) -> dict[str, bytes | str]:
    """A directory as {relative path: contents, or '-> target' for a symlink}."""
    out: dict[str, bytes | str] = {}
    for item in sorted(path.rglob("*")):
        rel = item.relative_to(path).as_posix()
        if item.is_symlink():
            out[rel] = "-> " + os.readlink(item)
        elif item.is_file():
            out[rel] = item.read_bytes()
    return out


# ------------------------------------------------------------------------------- https archives


GOOD_ARCHIVES = [
    pytest.param("m.tar.gz", make_tar(model_members()), id="tar.gz"),
    pytest.param("m.tgz", make_tar([("dir", "simple", None), *model_members("simple/")]), id="tgz-in-folder"),
    pytest.param("m.zip", make_zip(model_members()), id="zip"),
    pytest.param("m.zip", make_zip(model_members("./export/")), id="zip-in-folder"),
]


@pytest.mark.parametrize(("name", "archive"), GOOD_ARCHIVES)
def test_https_archive_is_pulled(
    https_server: HttpsServer, run_puller: Callable[..., Result], name: str, archive: bytes
) -> None:
    url = https_server.serve(f"/store/{name}", archive)
    result = run_puller(url, "--ca-file", str(https_server.ca_file))
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    files = tree(result.model_dir)
    assert files["config.pbtxt"] == CONFIG
    assert files["1/model.onnx"] == MODEL_FILES["1/model.onnx"]
    # Only the model directory is left: no staging directory, no downloaded archive.
    assert [p.name for p in result.repository.iterdir()] == ["simple"]
    # Triton runs as another uid: owner-only modes from the archive are widened to readable.
    assert (result.model_dir / "1" / "model.onnx").stat().st_mode & 0o777 == 0o644
    assert result.model_dir.stat().st_mode & 0o777 == 0o755
    done = result.events[-1]
    assert (done["event"], done["versions"]) == ("pull.done", ["1"])


def test_inner_links_are_kept_inside(https_server: HttpsServer, run_puller: Callable[..., Result]) -> None:
    archive = make_tar([
        *model_members(),
        ("symlink", "1/current.onnx", "model.onnx"),
        ("hardlink", "2/model.onnx", "1/model.onnx"),
    ])  # fmt: skip
    result = run_puller(https_server.serve("/m.tar.gz", archive), "--ca-file", str(https_server.ca_file))
    assert result.code == 0, result.stderr
    files = tree(result.model_dir)
    assert files["1/current.onnx"] == "-> model.onnx"
    # A hardlink becomes an independent copy: nothing can link to a file outside.
    assert files["2/model.onnx"] == MODEL_FILES["1/model.onnx"]
    assert not (result.model_dir / "2" / "model.onnx").is_symlink()


def bad(kind: str, extra: list[Member], problem: str, id: str, base: bool = True) -> Any:
    return pytest.param(kind, [*(model_members() if base else []), *extra], problem, id=id)


ESCAPE = "escapes the target"
MALICIOUS = [
    bad("tar.gz", [("file", "../evil", b"x")], "path traversal", "tar-path-traversal"),
    bad("tar.gz", [("file", "1/../../evil", b"x")], "path traversal", "tar-nested-traversal"),
    bad("tar.gz", [("file", "/tmp/evil", b"x")], "absolute path", "tar-absolute-path"),
    bad("tar.gz", [("symlink", "1/escape", "../../../evil")], ESCAPE, "tar-symlink-escape"),
    bad("tar.gz", [("symlink", "1/abs", "/etc/passwd")], "is absolute", "tar-symlink-absolute"),
    # p/q/up -> ../.. is the root itself; out -> p/q/up/.. looks inside lexically but lands above root.
    bad(
        "tar.gz",
        [("symlink", "p/q/up", "../.."), ("symlink", "out", "p/q/up/..")],
        "resolves outside",
        "tar-symlink-chain-escape",
    ),
    # A file written through a symlink would land wherever the link points.
    bad(
        "tar.gz",
        [("symlink", "link", "1"), ("file", "link/evil", b"x")],
        "lies below symlink",
        "tar-file-through-symlink",
    ),
    bad("tar.gz", [("hardlink", "1/h", "../../etc/passwd")], "path traversal", "tar-hardlink-escape"),
    bad("tar.gz", [("hardlink", "1/h", "no/such")], "does not point at a regular", "tar-hardlink-dangling"),
    bad("tar.gz", [("fifo", "1/pipe", None)], "device, fifo", "tar-fifo"),
    bad("tar.gz", [("chardev", "1/null", None)], "device, fifo", "tar-device"),
    bad("tar.gz", [("file", "1/model.onnx", b"again")], "appears twice", "tar-duplicate-member"),
    bad("zip", [("file", "../evil", b"x")], "path traversal", "zip-path-traversal"),
    bad("zip", [("file", "/tmp/evil", b"x")], "absolute path", "zip-absolute-path"),
    bad("zip", [("symlink", "1/escape", "../../evil")], ESCAPE, "zip-symlink-escape"),
    bad(
        "tar.gz",
        [("file", "config.pbtxt", CONFIG)],
        "no numeric version directory",
        "not-a-triton-model",
        base=False,
    ),
]


@pytest.mark.parametrize(("kind", "members", "problem"), MALICIOUS)
def test_malicious_or_broken_archive_is_refused(
    https_server: HttpsServer,
    run_puller: Callable[..., Result],
    tmp_path: Path,
    kind: str,
    members: list[Member],
    problem: str,
) -> None:
    archive = make_zip(members) if kind == "zip" else make_tar(members)
    url = https_server.serve(f"/bad.{kind}", archive)
    result = run_puller(url, "--ca-file", str(https_server.ca_file))
    result.assert_clean_failure(f"model-puller: {https_server.base_url}/bad.{kind}: ", problem)
    assert not (tmp_path / "evil").exists()
    assert not Path("/tmp/evil").exists()
    assert result.events[-1]["event"] == "pull.failed"
    # The same line reaches the pod's termination message, for `kubectl describe pod`.
    assert (tmp_path / "termination-log").read_text() == result.stderr


@pytest.mark.parametrize(
    ("limit", "problem"),
    [
        # The download is small (zeros compress well): the limit trips while extracting.
        pytest.param(("--max-bytes", "50000"), "over the size limit", id="extracted-bytes"),
        # The archive itself is over the limit: refused from its Content-Length.
        pytest.param(("--max-bytes", "100"), "over the size limit", id="download-bytes"),
        pytest.param(("--max-files", "2"), "over the file-count limit", id="file-count"),
    ],
)
def test_size_limits(
    https_server: HttpsServer, run_puller: Callable[..., Result], limit: tuple[str, str], problem: str
) -> None:
    files = {"config.pbtxt": CONFIG, "1/model.onnx": bytes(100_000), "1/extra.bin": b"x"}
    archive = make_tar(model_members(files=files))
    assert 100 < len(archive) < 50_000
    url = https_server.serve("/big.tar.gz", archive)
    run_puller(url, "--ca-file", str(https_server.ca_file), *limit).assert_clean_failure(problem)


def test_archive_is_deleted_once_extracted(
    https_server: HttpsServer, run_puller: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []
    find = puller.find_model_root

    def spy(tree: Path) -> Path:
        seen.append(sorted(p.name for p in tree.parent.iterdir()))  # the staging directory
        return find(tree)

    monkeypatch.setattr(puller, "find_model_root", spy)
    url = https_server.serve("/m.tar.gz", make_tar(model_members()))
    assert run_puller(url, "--ca-file", str(https_server.ca_file)).code == 0
    assert seen == [["tree"]]  # no archive beside the extracted tree


RANDOM = os.urandom(60_000)  # incompressible: the archive is about as large as the model


@pytest.mark.parametrize(
    ("max_bytes", "problem"),
    [
        # Archive (~60 kB) and model (~60 kB) are on the volume together while it is extracted.
        pytest.param(100_000, "with the ", id="archive-and-model-together"),
        pytest.param(50_000, "the archive is ", id="archive-alone"),
        pytest.param(200_000, None, id="fits"),
    ],
)
def test_archive_counts_against_the_limit_until_deleted(
    https_server: HttpsServer, run_puller: Callable[..., Result], max_bytes: int, problem: str | None
) -> None:
    archive = make_tar(model_members(files={"config.pbtxt": CONFIG, "1/model.onnx": RANDOM}))
    assert len(archive) > 60_000
    url = https_server.serve("/big.tar.gz", archive)
    result = run_puller(url, "--ca-file", str(https_server.ca_file), "--max-bytes", str(max_bytes))
    if problem is None:
        assert result.code == 0, result.stderr
        return
    result.assert_clean_failure(
        problem,
        f"over the size limit (--max-bytes {max_bytes}, below the model volume's sizeLimit",
        "raise spec.runtime.volumes.modelsSizeLimit",
    )


def test_earlier_result_counts_against_the_limit(run_puller: Callable[..., Result], tmp_path: Path) -> None:
    """An initContainer restart finds the last pull's model on the volume: both count until the swap."""
    write_tree(tmp_path / "mnt" / "store" / "simple", {"config.pbtxt": CONFIG, "1/model.onnx": RANDOM})
    assert run_puller("pvc://store/simple", "--max-bytes", "100000").code == 0
    failed = run_puller("pvc://store/simple", "--max-bytes", "100000")
    assert failed.code == 1
    assert "with the earlier pull's" in failed.stderr
    assert run_puller("pvc://store/simple", "--max-bytes", "200000").code == 0


def test_corrupt_archive(https_server: HttpsServer, run_puller: Callable[..., Result]) -> None:
    url = https_server.serve("/corrupt.tar.gz", b"\x1f\x8b\x08 this is not gzip at all")
    run_puller(url, "--ca-file", str(https_server.ca_file)).assert_clean_failure(
        "cannot read the tar archive"
    )


# --------------------------------------------------------------------------------- https errors


@pytest.mark.parametrize(
    ("status", "problem"),
    [
        pytest.param(404, "HTTP 404 Not Found", id="404"),
        pytest.param(403, "HTTP 403 Forbidden (check STORAGE_BEARER_TOKEN", id="403"),
    ],
)
def test_http_error_is_clear_and_not_retried(
    https_server: HttpsServer, run_puller: Callable[..., Result], status: int, problem: str
) -> None:
    url = https_server.serve("/missing.tar.gz", b"nope", status=status)
    result = run_puller(url, "--ca-file", str(https_server.ca_file))
    result.assert_clean_failure(f"{https_server.base_url}/missing.tar.gz: {problem}")
    assert len(https_server.requests) == 1


def test_transient_errors_are_retried(https_server: HttpsServer, run_puller: Callable[..., Result]) -> None:
    archive = make_tar(model_members())
    url = https_server.serve_sequence("/flaky.tar.gz", [(503, b"busy"), (502, b"bad gw"), (200, archive)])
    result = run_puller(url, "--ca-file", str(https_server.ca_file))
    assert result.code == 0, result.stderr
    assert len(https_server.requests) == 3
    retries = [e for e in result.events if e["event"] == "retry"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert "HTTP 503" in retries[0]["error"]


def test_retries_give_up(https_server: HttpsServer, run_puller: Callable[..., Result]) -> None:
    url = https_server.serve("/down.tar.gz", b"busy", status=503)
    result = run_puller(url, "--ca-file", str(https_server.ca_file))
    result.assert_clean_failure("HTTP 503", "gave up after 3 attempts")
    assert len(https_server.requests) == 3


def test_connection_refused_is_retried_then_reported(run_puller: Callable[..., Result]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_puller(f"https://127.0.0.1:{port}/m.tar.gz")
    result.assert_clean_failure("cannot connect", "gave up after 3 attempts")


def test_untrusted_certificate_is_refused(
    https_server: HttpsServer, run_puller: Callable[..., Result]
) -> None:
    url = https_server.serve("/m.tar.gz", make_tar(model_members()))
    run_puller(url).assert_clean_failure("TLS certificate verification failed")


def test_ca_file_adds_to_the_system_trust_store(
    https_server: HttpsServer,
    ca_signed_files: tuple[Path, Path, Path],
    run_puller: Callable[..., Result],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ca.crt from the storage Secret is trusted beside the system store, never instead of it."""
    ca, cert, key = ca_signed_files
    archive = make_tar(model_members())
    # The "system" store: OpenSSL's default verify paths read SSL_CERT_FILE when a context is made.
    monkeypatch.setenv("SSL_CERT_FILE", str(https_server.ca_file))
    public = https_server.serve("/public/m.tar.gz", archive)
    with serve_https(cert, key, ca) as private_server:
        private = private_server.serve("/private/m.tar.gz", archive)
        # Without ca.crt the private server's certificate (signed by the test CA) is refused ...
        run_puller(private).assert_clean_failure("TLS certificate verification failed")
        # ... with it, the private server is trusted ...
        assert run_puller(private, "--ca-file", str(ca)).code == 0
    # ... and a server the system store trusts still is (ca.crt used to replace the store).
    result = run_puller(public, "--ca-file", str(ca))
    assert result.code == 0, result.stderr
    # The default: <secret-dir>/ca.crt, when the Secret carries one.
    (tmp_path / "secret").mkdir()
    shutil.copy(ca, tmp_path / "secret" / "ca.crt")
    assert run_puller(public).code == 0


def test_bearer_token_is_sent_and_never_printed(
    https_server: HttpsServer, run_puller: Callable[..., Result]
) -> None:
    url = https_server.serve("/private/m.tar.gz", make_tar(model_members())) + "?" + SIGNATURE
    result = run_puller(url, "--ca-file", str(https_server.ca_file), env={"STORAGE_BEARER_TOKEN": TOKEN})
    assert result.code == 0, result.stderr
    assert https_server.requests[0][1]["Authorization"] == f"Bearer {TOKEN}"
    assert https_server.requests[0][0].endswith(SIGNATURE)  # the signed query string is sent as is
    for output in (result.stdout, result.stderr):
        assert TOKEN not in output
        assert "deadbeef" not in output
    assert result.events[0]["source"] == f"{https_server.base_url}/private/m.tar.gz?<redacted>"


def test_token_and_signature_stay_out_of_errors(
    https_server: HttpsServer, run_puller: Callable[..., Result], tmp_path: Path
) -> None:
    url = https_server.serve("/private/m.tar.gz", b"denied", status=401) + "?" + SIGNATURE
    result = run_puller(url, "--ca-file", str(https_server.ca_file), env={"STORAGE_BEARER_TOKEN": TOKEN})
    result.assert_clean_failure("?<redacted>: HTTP 401")
    for output in (result.stdout, result.stderr, (tmp_path / "termination-log").read_text()):
        assert TOKEN not in output
        assert "deadbeef" not in output


def test_redirect_does_not_carry_the_token(
    https_server: HttpsServer, run_puller: Callable[..., Result]
) -> None:
    target = https_server.serve("/signed/m.tar.gz", make_tar(model_members()))
    url = https_server.serve("/m.tar.gz", b"", status=302, headers={"Location": target})
    result = run_puller(url, "--ca-file", str(https_server.ca_file), env={"STORAGE_BEARER_TOKEN": TOKEN})
    assert result.code == 0, result.stderr
    (first_path, first_headers), (second_path, second_headers) = https_server.requests
    assert (first_path, second_path) == ("/m.tar.gz", "/signed/m.tar.gz")
    assert first_headers["Authorization"] == f"Bearer {TOKEN}"
    assert "Authorization" not in second_headers


def test_redirect_to_plain_http_is_refused(
    https_server: HttpsServer, run_puller: Callable[..., Result]
) -> None:
    url = https_server.serve(
        "/m.tar.gz", b"", status=302, headers={"Location": "http://127.0.0.1:1/m.tar.gz"}
    )
    run_puller(url, "--ca-file", str(https_server.ca_file)).assert_clean_failure("non-https")


# ------------------------------------------------------------------------------ source parsing


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        pytest.param("ftp://host/m.tar.gz", "unsupported scheme 'ftp'", id="ftp"),
        pytest.param("file:///etc/m.tar.gz", "unsupported scheme 'file'", id="file"),
        pytest.param("models/simple", "unsupported scheme '(none)'", id="no-scheme"),
        pytest.param("http://127.0.0.1/m.tar.gz", "plain http is not supported", id="plain-http"),
        pytest.param(
            "https://host/models/simple/", "must be a .tar.gz, .tgz or .zip archive", id="https-dir"
        ),
        pytest.param("s3:///prefix", "no bucket name", id="s3-no-bucket"),
        pytest.param("pvc://Bad_Claim/x", "not a valid PersistentVolumeClaim name", id="pvc-bad-claim"),
    ],
)
def test_bad_source_uri(run_puller: Callable[..., Result], uri: str, problem: str) -> None:
    run_puller(uri).assert_clean_failure(problem)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        pytest.param("s3://bucket/a/b", "s3://bucket/a/b", id="s3"),
        pytest.param("s3://bucket/a/b?versionId=s3cr3t", "s3://bucket/a/b?<redacted>", id="s3-query"),
        pytest.param("gs://bucket/a/", "gs://bucket/a", id="gs-trailing-slash"),
        pytest.param("pvc://claim/x/y", "pvc://claim/x/y", id="pvc"),
        pytest.param(
            "https://h.example:8443/m.zip?sig=1#f",
            "https://h.example:8443/m.zip?<redacted>",
            id="https-query-fragment",
        ),
    ],
)
def test_source_display_hides_secrets(uri: str, shown: str) -> None:
    assert puller.parse_source(uri).display == shown


PASSWORD = "pa55-must-not-print"
# Every URI form with userinfo: refused before anything is fetched, and the password never printed.
USERINFO_SOURCES = [
    pytest.param(f"https://user:{PASSWORD}@127.0.0.1:1/m.tar.gz", "https://127.0.0.1:1/m.tar.gz", id="https"),
    pytest.param(
        f"https://user:{PASSWORD}@127.0.0.1:1/m.tar.gz?{SIGNATURE}",
        "https://127.0.0.1:1/m.tar.gz?<redacted>",
        id="https-and-signed-query",
    ),
    pytest.param(
        f"https://us@r:{PASSWORD}@host.example/m.zip",
        "https://host.example/m.zip",
        id="https-at-sign-in-userinfo",
    ),
    pytest.param(
        f"https://{PASSWORD}@host.example/m.zip", "https://host.example/m.zip", id="https-token-only"
    ),
    pytest.param(f"s3://AKIAEXAMPLE:{PASSWORD}@models/simple/7", "s3://models/simple/7", id="s3"),
    pytest.param(f"gs://user:{PASSWORD}@models/simple/7", "gs://models/simple/7", id="gs"),
    pytest.param(f"pvc://user:{PASSWORD}@store/simple", "pvc://store/simple", id="pvc"),
    pytest.param(
        f"HTTPS://user:{PASSWORD}@host.example/m.zip", "https://host.example/m.zip", id="upper-scheme"
    ),
    pytest.param(f"https://user:{PASSWORD}@[::1/m.tar.gz", "(unparsable source)", id="unparsable"),
]


@pytest.mark.parametrize(("uri", "shown"), USERINFO_SOURCES)
def test_credentials_in_the_source_are_refused_and_never_printed(
    run_puller: Callable[..., Result], tmp_path: Path, uri: str, shown: str
) -> None:
    result = run_puller(uri)
    result.assert_clean_failure(f"model-puller: {shown}: ")
    termination = (tmp_path / "termination-log").read_text()
    for output in (result.stdout, result.stderr, termination):
        assert PASSWORD not in output
        assert "deadbeef" not in output
    if shown != "(unparsable source)":
        assert "carries credentials (user:password@)" in result.stderr


@pytest.mark.parametrize(
    ("message", "scrubbed"),
    [
        pytest.param(
            f"GET https://u:{PASSWORD}@h/m.tar.gz failed", "GET https://h/m.tar.gz failed", id="https"
        ),
        pytest.param(
            f'Could not connect to the endpoint URL: "http://127.0.0.1:9/models?list-type=2&{SIGNATURE}"',
            'Could not connect to the endpoint URL: "http://127.0.0.1:9/models?<redacted>"',
            id="http-query-in-quotes",
        ),
        pytest.param(
            f"s3://key:{PASSWORD}@bucket/k?versionId=1 gone", "s3://bucket/k?<redacted> gone", id="s3"
        ),
        pytest.param(f"gs://{PASSWORD}@bucket/k", "gs://bucket/k", id="gs"),
        pytest.param(f"pvc://a:{PASSWORD}@claim/x", "pvc://claim/x", id="pvc"),
        pytest.param(
            f"redirect to https://a@b:{PASSWORD}@h.example/x?{SIGNATURE}#frag",
            "redirect to https://h.example/x?<redacted>#frag",
            id="last-at-sign",
        ),
        pytest.param(
            f"<urlopen https://h/x?{SIGNATURE}>", "<urlopen https://h/x?<redacted>>", id="angle-brackets"
        ),
        pytest.param(f"token {TOKEN} refused", "token <redacted> refused", id="secret-env-value"),
        pytest.param(
            "user@example.com wrote 3 bytes", "user@example.com wrote 3 bytes", id="email-untouched"
        ),
    ],
)
def test_scrub_removes_credentials_from_every_uri_form(message: str, scrubbed: str) -> None:
    assert puller.scrub(message, {"STORAGE_BEARER_TOKEN": TOKEN}) == scrubbed


def test_invalid_model_name(run_puller: Callable[..., Result], tmp_path: Path) -> None:
    result = run_puller("pvc://claim/m", "--model-name", "../escape")
    result.assert_clean_failure("not a valid Triton model directory name")


# ------------------------------------------------------------------------------------------ pvc


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def test_pvc_directory_is_copied(run_puller: Callable[..., Result], tmp_path: Path) -> None:
    source = tmp_path / "mnt" / "model-store" / "simple" / "v7"
    write_tree(source, {**MODEL_FILES, "2/model.onnx": b"v2"})
    (source / "1" / "latest.onnx").symlink_to("model.onnx")
    result = run_puller("pvc://model-store/simple/v7")
    assert result.code == 0, result.stderr
    assert tree(result.model_dir) == {
        "config.pbtxt": CONFIG,
        "1/model.onnx": MODEL_FILES["1/model.onnx"],
        "1/latest.onnx": "-> model.onnx",
        "2/model.onnx": b"v2",
    }
    assert result.events[-1]["versions"] == ["1", "2"]
    assert tree(source)["config.pbtxt"] == CONFIG  # the read-only source is untouched


def test_pvc_archive_is_extracted(run_puller: Callable[..., Result], tmp_path: Path) -> None:
    store = tmp_path / "mnt" / "model-store"
    store.mkdir(parents=True)
    (store / "simple.zip").write_bytes(make_zip(model_members()))
    result = run_puller("pvc://model-store/simple.zip")
    assert result.code == 0, result.stderr
    assert tree(result.model_dir)["1/model.onnx"] == MODEL_FILES["1/model.onnx"]


@pytest.mark.parametrize(
    ("uri", "prepare", "problem"),
    [
        pytest.param("pvc://model-store/simple", None, "'model-store' is not mounted at", id="not-mounted"),
        pytest.param("pvc://model-store/nothing", "store", "does not exist in the claim", id="missing-path"),
        pytest.param("pvc://model-store/../secret", "store", "path traversal", id="traversal"),
        pytest.param("pvc://model-store/outside", "link-out", "resolves outside the claim", id="link-out"),
        pytest.param("pvc://model-store/simple", "inner-link-out", "escapes the target", id="inner-link-out"),
        pytest.param("pvc://model-store/simple", "fifo", "device, fifo or socket", id="fifo"),
    ],
)
def test_pvc_errors(
    run_puller: Callable[..., Result], tmp_path: Path, uri: str, prepare: str | None, problem: str
) -> None:
    store = tmp_path / "mnt" / "model-store"
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "token").write_text("do-not-copy")
    if prepare is not None:
        write_tree(store / "simple", MODEL_FILES)
    if prepare == "link-out":
        (store / "outside").symlink_to(tmp_path / "secret")
    elif prepare == "inner-link-out":
        (store / "simple" / "1" / "token").symlink_to("../../../../secret/token")
    elif prepare == "fifo":
        os.mkfifo(store / "simple" / "1" / "pipe")
    result = run_puller(uri)
    result.assert_clean_failure(uri, problem)


# ----------------------------------------------------------------------- config override, atomicity


def triton_config(text: str) -> Any:
    """Parse with Triton's schema (model_config.proto as tritonclient ships it; test_modelconfig.py
    proves the copy byte-identical): a config that fails here fails in Triton too."""
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def rendered_for(config: dict[str, Any], name: str = "simple", backend: str = "pytorch") -> str:
    """The operator's own rendering of spec.model.config, as the ConfigMap carries it."""
    model = ModelSource.model_validate(
        {
            "name": name,
            "version": "1",
            "storageUri": "s3://models/simple",
            "backend": backend,
            "config": config,
        }
    )
    text = config_pbtxt(model)
    assert text is not None
    return text


# A TorchScript model's own config: Triton cannot load a libtorch model without input and output.
PYTORCH_OWN = """
name: "simple"
platform: "pytorch_libtorch"
max_batch_size: 8
version_policy { latest { num_versions: 2 } }
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 1000 ] label_filename: "labels.txt" } ]
instance_group [ { kind: KIND_CPU count: 4 }, { kind: KIND_GPU count: 1 gpus: [ 1 ] } ]
dynamic_batching { max_queue_delay_microseconds: 50 priority_levels: 2 default_priority_level: 1 }
optimization { cuda { graphs: true } }
parameters { key: "INFERENCE_MODE" value: { string_value: "true" } }
parameters { key: "ENABLE_NVFUSER" value: { string_value: "false" } }
model_warmup [ {
  name: "zeros" batch_size: 1
  inputs { key: "INPUT__0" value: { data_type: TYPE_FP32 dims: [ 3, 224, 224 ] zero_data: true } }
} ]
"""
# What examples/gateway-canary.yaml (a pytorch model) states in spec.model.config.
EXAMPLE_CONFIG = {
    "maxBatchSize": 32,
    "dynamicBatching": {"maxQueueDelayMicroseconds": 1000},
    "instanceGroups": [{"kind": "KIND_GPU", "count": 1}],
}
SEQUENCE_OWN = (
    'name: "simple" backend: "python" max_batch_size: 4 '
    "sequence_batching { max_sequence_idle_microseconds: 5000000 }"
)
ENSEMBLE_OWN = (
    'name: "simple" platform: "ensemble" max_batch_size: 4 '
    'ensemble_scheduling { step [ { model_name: "pre" model_version: -1 input_map { key: "IN" value: "RAW" } '
    'output_map { key: "OUT" value: "PIXELS" } } ] }'
)


@dataclass
class Merge:
    own: str | None
    config: dict[str, Any]
    # (field, value) pairs the merged message must show; value compared with its text form
    expect: dict[str, str] = field(default_factory=dict)
    backend: str = "pytorch"


def text_of(message: Any, name: str) -> str:
    """One field as one line of text format: list items joined by " | ", map items as key=value."""
    field = message.DESCRIPTOR.fields_by_name[name]
    value = getattr(message, name)

    def one(item: Any) -> str:
        return text_format.MessageToString(item, as_one_line=True) if field.message_type else str(item)

    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return " ".join(
            f"{k}={text_format.MessageToString(v, as_one_line=True)}" for k, v in sorted(value.items())
        )
    return " | ".join(one(v) for v in value) if field.is_repeated else one(value)


MERGES = [
    pytest.param(
        Merge(
            PYTORCH_OWN,
            EXAMPLE_CONFIG,
            {
                # The ModelDeployment's fields win ...
                "max_batch_size": "32",
                "backend": "pytorch",
                # ... a message it states replaces the model's whole (the priority levels go) ...
                "dynamic_batching": "max_queue_delay_microseconds: 1000",
                # ... a repeated field it states replaces the model's whole list ...
                "instance_group": "count: 1 kind: KIND_GPU",
                # ... and everything else of the model's stays.
                "platform": "pytorch_libtorch",
                "input": 'name: "INPUT__0" data_type: TYPE_FP32 dims: 3 dims: 224 dims: 224',
                "output": 'name: "OUTPUT__0" data_type: TYPE_FP32 dims: 1000 label_filename: "labels.txt"',
                "version_policy": "latest { num_versions: 2 }",
                "optimization": "cuda { graphs: true }",
                "model_warmup": 'name: "zeros" batch_size: 1 inputs { key: "INPUT__0" value { '
                "data_type: TYPE_FP32 dims: 3 dims: 224 dims: 224 zero_data: true } }",
                "parameters": 'ENABLE_NVFUSER=string_value: "false" INFERENCE_MODE=string_value: "true"',
            },
        ),
        id="pytorch-example-over-full-model-config",
    ),
    pytest.param(
        Merge(
            PYTORCH_OWN,
            {"maxBatchSize": 8, "parameters": {"INFERENCE_MODE": "false", "X": "1"}},
            {
                # parameters merge by key: the model's other keys stay.
                "parameters": 'ENABLE_NVFUSER=string_value: "false" INFERENCE_MODE=string_value: "false" '
                'X=string_value: "1"',
                # Not stated: the model's own.
                "instance_group": "count: 4 kind: KIND_CPU | count: 1 gpus: 1 kind: KIND_GPU",
                "dynamic_batching": "max_queue_delay_microseconds: 50 priority_levels: 2 "
                "default_priority_level: 1",
            },
        ),
        id="parameters-merge-by-key",
    ),
    pytest.param(
        Merge(
            PYTORCH_OWN,
            {},
            {
                "max_batch_size": "0",
                "input": 'name: "INPUT__0" data_type: TYPE_FP32 dims: 3 dims: 224 dims: 224',
            },
        ),
        id="max-batch-size-is-always-the-crs",
    ),
    pytest.param(
        Merge(None, EXAMPLE_CONFIG, {"max_batch_size": "32", "input": "", "name": "simple"}),
        id="no-own-config-rendered-stands-alone",
    ),
    pytest.param(
        Merge(
            'max_batch_size: 2 input [ { name: "x" data_type: TYPE_INT64 dims: [ -1 ] } ]',
            {"maxBatchSize": 2},
            {"name": "simple", "input": 'name: "x" data_type: TYPE_INT64 dims: -1'},
        ),
        id="own-config-without-a-name-gets-the-crs",
    ),
    pytest.param(
        Merge(
            SEQUENCE_OWN,
            {"maxBatchSize": 4, "instanceGroups": [{"kind": "KIND_CPU", "count": 2}]},
            {"sequence_batching": "max_sequence_idle_microseconds: 5000000", "backend": "python"},
            backend="python",
        ),
        id="sequence-batching-stays",
    ),
    pytest.param(
        Merge(
            ENSEMBLE_OWN,
            {"maxBatchSize": 4},
            {
                "ensemble_scheduling": 'step { model_name: "pre" model_version: -1 '
                'input_map { key: "IN" value: "RAW" } output_map { key: "OUT" value: "PIXELS" } }',
                "platform": "ensemble",
            },
            backend="python",
        ),
        id="ensemble-scheduling-stays",
    ),
]


@pytest.mark.parametrize("case", MERGES)
def test_config_merge(case: Merge) -> None:
    rendered = rendered_for(case.config, backend=case.backend)
    triton_config(rendered)
    text, fields = puller.merge_config(case.own, rendered, "simple")
    merged = triton_config(text)  # every merged configuration parses with Triton's schema
    for name, value in case.expect.items():
        assert text_of(merged, name) == value, name
    assert {"name", "backend", "max_batch_size"} <= set(fields)
    if case.own is None:
        assert merged == triton_config(rendered)


@pytest.mark.parametrize(
    ("own", "config", "problem"),
    [
        pytest.param(
            'name: "simple" input [ { name: "x" ',
            {},
            "the model's config.pbtxt is not a valid Triton model configuration",
            id="malformed",
        ),
        pytest.param(
            'name: "simple" max_batch_sizes: 3',
            {},
            'has no field named "max_batch_sizes"',
            id="unknown-field",
        ),
        pytest.param(
            'name: "simple" max_batch_size: "eight"',
            {},
            "not a valid Triton model configuration",
            id="wrong-type",
        ),
        pytest.param(
            'name: "resnet50" platform: "pytorch_libtorch"',
            {},
            "names model 'resnet50', not 'simple'",
            id="names-another-model",
        ),
        pytest.param(
            SEQUENCE_OWN,
            {"maxBatchSize": 4, "dynamicBatching": {}},
            "uses sequence_batching, which the rendered dynamic_batching would replace",
            id="sequence-vs-dynamic",
        ),
        pytest.param(
            ENSEMBLE_OWN,
            {"maxBatchSize": 4, "dynamicBatching": {}},
            "uses ensemble_scheduling, which the rendered dynamic_batching would replace",
            id="ensemble-vs-dynamic",
        ),
    ],
)
def test_config_merge_refuses(own: str, config: dict[str, Any], problem: str) -> None:
    with pytest.raises(puller.PullError, match=re.escape(problem)):
        puller.merge_config(own, rendered_for(config), "simple")


@pytest.mark.parametrize(
    ("files", "event"),
    [
        pytest.param(
            {"config.pbtxt": PYTORCH_OWN.encode(), "1/model.pt": b"torchscript"},
            "config.merged",
            id="merged-over-the-models-own",
        ),
        pytest.param(
            {"1/model.pt": b"torchscript"}, "config.rendered", id="rendered-when-the-model-has-none"
        ),
    ],
)
def test_rendered_config_on_disk(
    run_puller: Callable[..., Result], tmp_path: Path, files: dict[str, bytes], event: str
) -> None:
    write_tree(tmp_path / "mnt" / "store" / "simple", files)
    rendered = tmp_path / "model-config" / "config.pbtxt"
    rendered.parent.mkdir()
    rendered.write_text(rendered_for(EXAMPLE_CONFIG))
    result = run_puller("pvc://store/simple", "--config", str(rendered))
    assert result.code == 0, result.stderr
    written = result.model_dir / "config.pbtxt"
    merged = triton_config(written.read_text())
    assert merged.max_batch_size == 32
    assert [g.kind for g in merged.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    assert len(merged.input) == (1 if "config.pbtxt" in files else 0)
    assert written.stat().st_mode & 0o777 == 0o644
    (done,) = [e for e in result.events if e["event"] == event]
    assert "max_batch_size" in done["fields"]
    # The source on the claim is never written.
    assert (tmp_path / "mnt" / "store" / "simple" / "1" / "model.pt").read_bytes() == b"torchscript"


@pytest.mark.parametrize(
    ("own", "problem"),
    [
        pytest.param(
            b'name: "simple" input [ {',
            "the model's config.pbtxt is not a valid Triton model configuration",
            id="malformed",
        ),
        pytest.param(
            b'name: "other_model"',
            "names model 'other_model', not 'simple' (spec.model.name)",
            id="names-another-model",
        ),
        pytest.param(b"\xff\xfe not text", "the model's config.pbtxt is not UTF-8 text", id="not-text"),
    ],
)
def test_bad_model_config_fails_the_pull_with_one_line(
    run_puller: Callable[..., Result], tmp_path: Path, own: bytes, problem: str
) -> None:
    write_tree(tmp_path / "mnt" / "store" / "simple", {"config.pbtxt": own, "1/model.pt": b"m"})
    rendered = tmp_path / "model-config" / "config.pbtxt"
    rendered.parent.mkdir()
    rendered.write_text(rendered_for(EXAMPLE_CONFIG))
    result = run_puller("pvc://store/simple", "--config", str(rendered))
    result.assert_clean_failure("model-puller: pvc://store/simple: ", problem)


def test_missing_rendered_config_is_an_error(run_puller: Callable[..., Result], tmp_path: Path) -> None:
    write_tree(tmp_path / "mnt" / "store" / "simple", MODEL_FILES)
    result = run_puller("pvc://store/simple", "--config", str(tmp_path / "nope" / "config.pbtxt"))
    result.assert_clean_failure("rendered config", "not found")


def test_failed_pull_leaves_no_partial_model(
    https_server: HttpsServer, run_puller: Callable[..., Result], tmp_path: Path
) -> None:
    # Many good files first, then a bad member: the good files were written before the failure.
    members = [("file", f"1/part-{i}.bin", b"x" * 100) for i in range(50)]
    archive = make_tar([*model_members(), *members, ("file", "../../evil", b"x")])
    result = run_puller(https_server.serve("/m.tar.gz", archive), "--ca-file", str(https_server.ca_file))
    result.assert_clean_failure("path traversal")  # asserts the repository is empty


def test_earlier_result_is_replaced_and_kept_on_failure(
    run_puller: Callable[..., Result], tmp_path: Path
) -> None:
    store = tmp_path / "mnt" / "store"
    write_tree(store / "v1", MODEL_FILES)
    write_tree(store / "v2", {"config.pbtxt": CONFIG, "2/model.onnx": b"v2"})
    assert run_puller("pvc://store/v1").code == 0
    # An initContainer restart pulls again into the same emptyDir: the new result replaces the old.
    result = run_puller("pvc://store/v2")
    assert result.code == 0, result.stderr
    assert tree(result.model_dir) == {"config.pbtxt": CONFIG, "2/model.onnx": b"v2"}
    # A failing pull leaves the previous complete model in place, never a mix.
    failed = run_puller("pvc://store/v3")
    assert failed.code == 1
    assert tree(result.model_dir) == {"config.pbtxt": CONFIG, "2/model.onnx": b"v2"}
    assert [p.name for p in result.repository.iterdir()] == ["simple"]


def test_leftovers_of_a_killed_pull_are_removed(run_puller: Callable[..., Result], tmp_path: Path) -> None:
    write_tree(tmp_path / "mnt" / "store" / "simple", MODEL_FILES)
    repository = tmp_path / "models"
    leftover = repository / f"{puller.STAGING_PREFIX}simple+abc123"
    write_tree(leftover, {"tree/1/model.onnx": b"half"})
    other = repository / f"{puller.STAGING_PREFIX}other+abc123"  # another model's: not ours to touch
    other.mkdir()
    assert run_puller("pvc://store/simple").code == 0
    assert sorted(p.name for p in repository.iterdir()) == sorted(["simple", other.name])


def test_log_lines_are_json(run_puller: Callable[..., Result], tmp_path: Path) -> None:
    write_tree(tmp_path / "mnt" / "store" / "simple", MODEL_FILES)
    result = run_puller("pvc://store/simple")
    events = result.events  # parses every line
    assert [e["event"] for e in events] == ["copy.start", "pull.done"]
    assert {"time", "level", "event"} <= set(events[0])
    done = events[-1]
    assert done["entries"] == 3  # config.pbtxt, 1/, 1/model.onnx
    assert done["bytes"] == len(CONFIG) + len(MODEL_FILES["1/model.onnx"])


def test_text_log_format(run_puller: Callable[..., Result], tmp_path: Path) -> None:
    write_tree(tmp_path / "mnt" / "store" / "simple", MODEL_FILES)
    result = run_puller("pvc://store/simple", "--log-format", "text")
    assert result.code == 0
    assert " INFO pull.done source=pvc://store/simple " in result.stdout


def test_the_stdlib_is_enough_for_https_and_pvc() -> None:
    """boto3 and google-cloud-storage load lazily: importing the puller pulls neither."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('p', {str(PULLER_PATH)!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['p'] = m; spec.loader.exec_module(m)\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in ('boto3', 'botocore', 'google')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-I", "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------------------- s3 and gs, for real


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture(scope="session")
def puller_python() -> Path:
    """The Python of .tools/puller-venv, built on first use (about 40 s) and whenever its pins change.

    MODELDEPLOY_PULLER_PYTHON points at another interpreter that has the same packages instead."""
    override = os.environ.get("MODELDEPLOY_PULLER_PYTHON")
    if override:
        return Path(override)
    pins = PULLER_REQUIREMENTS.read_bytes() + "\n".join(PULLER_TEST_DEPS).encode()
    stamp = PULLER_VENV / f".installed-{hashlib.sha256(pins).hexdigest()[:12]}"
    python = PULLER_VENV / "bin" / "python"
    PULLER_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(PULLER_VENV.parent / "puller-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time (pytest-xdist, parallel runs)
        if not stamp.exists():
            shutil.rmtree(PULLER_VENV, ignore_errors=True)
            steps = [
                [sys.executable, "-m", "venv", str(PULLER_VENV)],
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "-r", str(PULLER_REQUIREMENTS), *PULLER_TEST_DEPS],
            ]  # fmt: skip
            for step in steps:
                done = subprocess.run(step, capture_output=True, text=True, timeout=900)
                if done.returncode != 0:
                    pytest.fail(f"building {PULLER_VENV} failed: {' '.join(step)}\n{done.stderr[-3000:]}")
            stamp.touch()
    return python


@contextlib.contextmanager
def _server(cmd: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        _wait_for_port(port, proc)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


S3_KEY = "AKIAMOTOTESTKEY00001"
S3_SECRET = "moto-secret-access-key-must-not-be-printed"


def _s3_env(port: int) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_REGION": "us-east-1",
        # Keep boto3 away from any config or metadata service of the machine running the tests.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


SEED_S3 = """
import sys, boto3
bucket = boto3.client("s3").create_bucket(Bucket="models")
s3 = boto3.client("s3")
for key, path in zip(sys.argv[1::2], sys.argv[2::2]):
    s3.upload_file(path, "models", key)
"""

SEED_GS = """
import sys
from google.cloud import storage
client = storage.Client(project="test")
bucket = client.create_bucket("models")
for key, path in zip(sys.argv[1::2], sys.argv[2::2]):
    bucket.blob(key).upload_from_filename(path)
"""


def _seed_objects(tmp_path: Path) -> list[str]:
    """Objects as key/local-path pairs: a model directory, the same as an archive, and a hostile key."""
    files = tmp_path / "seed"
    args: list[str] = []
    objects = {
        **{f"simple/7/{name}": data for name, data in MODEL_FILES.items()},
        "simple/70/1/model.onnx": b"must not match the prefix simple/7",
        "archives/simple-7.tar.gz": make_tar(model_members("simple/")),
    }
    for i, (key, data) in enumerate(objects.items()):
        path = files / str(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        args += [key, str(path)]
    return args


@dataclass
class ObjectStore:
    scheme: str
    env: dict[str, str]
    python: Path

    def pull(self, source: str, repository: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [
            str(self.python), str(PULLER_PATH), "--source", source, "--model-name", "simple",
            "--repository", str(repository), "--termination-log", str(repository.parent / "termination-log"),
            "--secret-dir", str(repository.parent / "no-secret"), "--retries", "2", "--timeout", "20", *extra,
        ]  # fmt: skip
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module", params=["s3", "gs"])
def object_store(
    request: pytest.FixtureRequest, puller_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ObjectStore]:
    port = _free_port()
    bindir = puller_python.parent
    base_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path_factory.mktemp("home"))}
    if request.param == "s3":
        env = {**base_env, **_s3_env(port)}
        cmd = [str(bindir / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
        seed = SEED_S3
    else:
        env = {
            **base_env,
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}",
            "GOOGLE_CLOUD_PROJECT": "test",
        }
        cmd = [
            str(bindir / "gcp-storage-emulator"),
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--in-memory",
        ]
        seed = SEED_GS
    with _server(cmd, port, env):
        args = _seed_objects(tmp_path_factory.mktemp("seed"))
        subprocess.run([str(puller_python), "-c", seed, *args], env=env, check=True, timeout=120)
        yield ObjectStore(request.param, env, puller_python)


@pytest.mark.parametrize(
    "path",
    [pytest.param("simple/7", id="directory"), pytest.param("archives/simple-7.tar.gz", id="archive")],
)
def test_object_store_pull(object_store: ObjectStore, tmp_path: Path, path: str) -> None:
    repository = tmp_path / "models"
    done = object_store.pull(f"{object_store.scheme}://models/{path}", repository)
    assert done.returncode == 0, done.stderr
    assert tree(repository / "simple") == MODEL_FILES  # and nothing from simple/70
    assert S3_SECRET not in done.stdout + done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["event"] == "pull.done"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        pytest.param(
            "models/nothing-here", "no objects under {scheme}://models/nothing-here/", id="empty-prefix"
        ),
        pytest.param("no-such-bucket/simple/7", "", id="missing-bucket"),
        pytest.param("models/archives/missing.tar.gz", "not found", id="missing-archive"),
    ],
)
def test_object_store_errors(object_store: ObjectStore, tmp_path: Path, source: str, problem: str) -> None:
    repository = tmp_path / "models"
    uri = f"{object_store.scheme}://{source}"
    done = object_store.pull(uri, repository)
    assert done.returncode == 1, done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"model-puller: {uri}: ")
    assert problem.format(scheme=object_store.scheme) in lines[0]
    assert S3_SECRET not in done.stdout + done.stderr
    assert list(repository.iterdir()) == []


def test_object_store_ca_file_joins_the_clients_bundle(
    object_store: ObjectStore, tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    """With ca.crt, botocore and requests get one bundle: their own trust store plus ca.crt (each
    takes a single file, which replaces its default). The emulators speak http, so this proves the
    bundle is built and the pull works with it; test_ca_file_adds_to_the_system_trust_store proves
    the trust itself on a real TLS server."""
    repository = tmp_path / "models"
    cmd_ca = ["--ca-file", str(tls_files[0])]
    done = object_store.pull(f"{object_store.scheme}://models/simple/7", repository, *cmd_ca)
    assert done.returncode == 0, done.stderr
    assert tree(repository / "simple") == MODEL_FILES


def test_object_store_pull_merges_the_rendered_config(object_store: ObjectStore, tmp_path: Path) -> None:
    """As the image runs it (`python puller.py`, protobuf from requirements.txt, the schema beside it)."""
    repository = tmp_path / "models"
    rendered = tmp_path / "rendered.pbtxt"
    rendered.write_text(rendered_for({"maxBatchSize": 4, "dynamicBatching": {}}, backend="onnxruntime"))
    done = object_store.pull(
        f"{object_store.scheme}://models/simple/7", repository, "--config", str(rendered)
    )
    assert done.returncode == 0, done.stderr
    merged = triton_config((repository / "simple" / "config.pbtxt").read_text())
    assert (merged.name, merged.backend, merged.max_batch_size) == ("simple", "onnxruntime", 4)
    assert merged.HasField("dynamic_batching")
    assert json.loads(done.stdout.splitlines()[-2])["event"] == "config.merged"


def test_ca_bundle_is_the_default_store_plus_ca_crt(tmp_path: Path) -> None:
    default, ca = tmp_path / "default.pem", tmp_path / "ca.crt"
    default.write_bytes(b"-----DEFAULT STORE-----")
    ca.write_bytes(b"-----PRIVATE CA-----\n")
    opts = puller.Options(
        source=puller.parse_source("s3://models/m"), model_name="m", repository=tmp_path, config=None,
        pvc_mount_root=tmp_path, secret_dir=tmp_path, ca_file=ca, max_bytes=1, max_files=1, retries=1,
        retry_base_delay=0, timeout=1, env={},
    )  # fmt: skip
    bundle = puller.ca_bundle(opts, tmp_path, str(default))
    assert bundle is not None
    assert bundle.read_bytes() == b"-----DEFAULT STORE-----\n-----PRIVATE CA-----\n"
    assert puller.ca_bundle(dataclasses.replace(opts, ca_file=None), tmp_path, str(default)) is None


def test_s3_key_with_traversal_is_refused(puller_python: Path, tmp_path: Path) -> None:
    """S3 keys are free-form: "evil/../../x" is a valid key and must not escape /models."""
    port = _free_port()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **_s3_env(port)}
    with _server([str(puller_python.parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port, env):
        payload = tmp_path / "payload"
        payload.write_bytes(b"x")
        keys = ["evil/1/model.onnx", str(payload), "evil/../../x", str(payload)]
        subprocess.run([str(puller_python), "-c", SEED_S3, *keys], env=env, check=True, timeout=120)
        store = ObjectStore("s3", env, puller_python)
        repository = tmp_path / "models"
        done = store.pull("s3://models/evil", repository)
    assert done.returncode == 1
    assert "object '../../x' escapes the target directory (path traversal)" in done.stderr
    assert not (tmp_path / "x").exists()
    assert list(repository.iterdir()) == []
