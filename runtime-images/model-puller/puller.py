#!/usr/bin/env python3
"""modeldeploy model puller: fetch one Triton model into the pod's model repository.

Runs as the `model-puller` initContainer of every Triton pod the operator renders:

    puller.py --source s3://bucket/prefix --model-name NAME --repository /models \
              [--config /etc/modeldeploy/model-config/config.pbtxt] [--max-bytes N]

The source is a model directory in Triton's layout (optional config.pbtxt, numeric version
subdirectories) or a .tar.gz/.tgz/.zip archive of one, behind one of:

    s3://bucket/prefix     boto3; credentials and AWS_ENDPOINT_URL from the environment
    gs://bucket/prefix     google-cloud-storage; <secret-dir>/gcs-credentials.json when present
    https://host/m.tar.gz  stdlib urllib; optional bearer token from STORAGE_BEARER_TOKEN
    pvc://claim/path       the claim is mounted read-only at <pvc-mount-root>/<claim>

The result is <repository>/<model-name>/, built in a temporary directory inside the repository
and renamed into place, so Triton never sees a half-written model. Archive members, object
keys and symlinks are untrusted input: nothing may land outside the target directory. A
downloaded archive is deleted as soon as it is extracted; while both exist, they count together
against --max-bytes, which the operator sets below the model volume's sizeLimit, so a model too
large for the volume fails with one line instead of getting the pod evicted.

With --config, the rendered config.pbtxt is merged over the model's own with Triton's schema
(model_config_pb2.py beside this file, as tritonclient ships it): each top-level field the
rendered file states replaces the model's (a repeated field its whole list; `parameters` merge by
key), and everything else of the model's stays (input, output, model_warmup, optimization, ...).
name, backend and max_batch_size always come from the rendered file. A model's own config that
does not parse, or that names another model than --model-name, fails the pull.

Exit status 0 on success, 1 on any failure with one line on stderr naming the source and the
problem (also written to the container's termination log, so `kubectl describe pod` shows it).
Progress goes to stdout as one JSON object per line. Credentials are never printed: a source
with user:password@ is refused, and every line, error lines included, has the userinfo and the
query string of any URI in it removed (signed URLs), whatever its scheme.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import importlib.util
import json
import os
import posixpath
import random
import re
import shutil
import ssl
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal, TypeVar

SCHEMES = ("s3", "gs", "https", "pvc")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")
DEFAULT_REPOSITORY = "/models"
DEFAULT_PVC_MOUNT_ROOT = "/mnt/pvc"
DEFAULT_SECRET_DIR = "/var/run/secrets/modeldeploy/storage"
GCS_CREDENTIALS_FILE = "gcs-credentials.json"
CA_FILE = "ca.crt"
# 95% of the model volume's default sizeLimit (50Gi): the operator passes --max-bytes derived the
# same way from the ModelDeployment's own sizeLimit (render/deployment.py, puller_max_bytes).
DEFAULT_MAX_BYTES = 50 * 1024**3 * 95 // 100
DEFAULT_MAX_FILES = 100_000
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
CLAIM_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Environment variables whose values must never reach a log line, even inside a library's message.
SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "STORAGE_BEARER_TOKEN")
TRANSIENT_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
CHUNK = 1024 * 1024
CONFIG_FILE = "config.pbtxt"
CONFIG_SCHEMA = "model_config_pb2.py"  # Triton's ModelConfig, generated from model_config.proto
MAX_CONFIG_BYTES = 4 * 1024**2  # a model's config.pbtxt is a few KiB; this one is read into memory
# Fields the rendered config states even at their proto3 default (0, ""), which text format omits.
ALWAYS_STATED = ("name", "backend", "max_batch_size")
# Staging and trash directories carry a '+', which model names cannot contain: no clash with a model.
STAGING_PREFIX = ".modeldeploy-pull+"
TRASH_PREFIX = ".modeldeploy-old+"

T = TypeVar("T")


class PullError(Exception):
    """A failure worth one clear line to the user; never carries a credential."""


class TransientError(PullError):
    """A failure that may go away on retry (connection reset, 503, timeout)."""


# ------------------------------------------------------------------------------------ logging


# Any scheme: s3://, gs://, pvc://, http(s):// and whatever a library's message may quote.
_URI_USERINFO_RE = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#\"'<>]*@")
_URI_QUERY_RE = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://[^\s?#\"'<>]*)\?(?!<redacted>)[^\s#\"'<>]*")


def scrub(text: str, env: Mapping[str, str]) -> str:
    """Remove the userinfo and query of every URI, and the values of secret env vars, from a message."""
    text = _URI_USERINFO_RE.sub(r"\1", text)  # greedy: up to the last @ of the authority
    text = _URI_QUERY_RE.sub(r"\1?<redacted>", text)
    for name in SECRET_ENV:
        value = env.get(name, "")
        if len(value) >= 4:  # a shorter "secret" would redact innocent text and protect nothing
            text = text.replace(value, "<redacted>")
    return text


@dataclass
class Logger:
    fmt: Literal["json", "text"] = "json"
    stream: IO[str] = field(default_factory=lambda: sys.stdout)
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def __call__(self, level: str, event: str, **fields: object) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        if self.fmt == "json":
            line = json.dumps({"time": now, "level": level, "event": event, **fields}, default=str)
        else:
            line = " ".join([now, level.upper(), event, *(f"{k}={v}" for k, v in fields.items())])
        self.stream.write(scrub(line, self.env) + "\n")
        self.stream.flush()


# ------------------------------------------------------------------------------------ sources


@dataclass(frozen=True)
class Source:
    scheme: str
    authority: str  # bucket, claim or host[:port]
    path: str  # key prefix, path inside the claim, or URL path; no leading slash
    url: str  # as given; may hold a signed query string, so never print it

    @property
    def is_archive(self) -> bool:
        return self.path.lower().endswith(ARCHIVE_SUFFIXES)

    @property
    def archive_kind(self) -> Literal["tar", "zip"]:
        return "zip" if self.path.lower().endswith(".zip") else "tar"

    @property
    def display(self) -> str:
        """The URI without userinfo, query or fragment: safe for logs and errors."""
        shown = f"{self.scheme}://{self.authority}/{self.path}".rstrip("/")
        if urllib.parse.urlsplit(self.url).query:
            shown += "?<redacted>"
        return shown


def redact_raw(uri: str) -> str:
    """A printable form of a URI that may not even parse: no userinfo, query or fragment."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return "(unparsable source)"
    host = parts.netloc.rpartition("@")[2]  # userinfo ends at the authority's last @
    shown = f"{parts.scheme}://{host}{parts.path}" if parts.scheme else parts.path
    return shown + ("?<redacted>" if parts.query else "")


def parse_source(uri: str) -> Source:
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "http":
        raise PullError(
            "plain http is not supported: use https (the model and any token would travel in clear)"
        )
    if scheme not in SCHEMES:
        shown = scheme or "(none)"
        raise PullError(f"unsupported scheme {shown!r}: use s3://, gs://, https:// or pvc://")
    if "@" in parts.netloc:
        # The CRD refuses it too; credentials belong in the storage Secret, which only the puller reads.
        raise PullError(
            "the source carries credentials (user:password@): anyone who may read the ModelDeployment "
            "or the pod would see them; put them in the storage Secret (storageSecretRef) instead"
        )
    # hostname/port rather than netloc: netloc may carry user:password@.
    authority = parts.hostname or ""
    if scheme == "https" and parts.port is not None:
        authority = f"{authority}:{parts.port}"
    if not authority:
        raise PullError({"pvc": "no claim name", "https": "no host"}.get(scheme, "no bucket name"))
    path = parts.path.lstrip("/")
    if scheme == "https" and not path.lower().endswith(ARCHIVE_SUFFIXES):
        raise PullError("an https source must be a .tar.gz, .tgz or .zip archive")
    if scheme == "pvc" and not CLAIM_RE.match(authority):
        raise PullError(f"{authority!r} is not a valid PersistentVolumeClaim name")
    return Source(scheme=scheme, authority=authority, path=path, url=uri)


# ---------------------------------------------------------------------------- safe extraction


def safe_relpath(name: str, what: str = "member") -> PurePosixPath:
    """An untrusted relative name (archive member, object key) as a path that stays inside."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise PullError(f"{what} {name!r} has an absolute path")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PullError(f"{what} {name!r} escapes the target directory (path traversal)")
    return PurePosixPath(*parts)


def over_size(what: str, max_bytes: int) -> PullError:
    return PullError(
        f"{what}: over the size limit (--max-bytes {max_bytes}, below the model volume's sizeLimit; "
        "raise spec.runtime.volumes.modelsSizeLimit for a larger model)"
    )


@dataclass
class Budget:
    """Caps the bytes on the model volume and the files, so a source cannot fill the node's disk.

    `used_bytes` is the model's; `held_bytes` a downloaded archive's, on the same volume until it
    is extracted and deleted (`release`). Both count against `max_bytes` while they coexist."""

    max_bytes: int
    max_files: int
    used_bytes: int = 0
    used_files: int = 0
    held_bytes: int = 0
    earlier_bytes: int = 0  # an earlier pull's result (an initContainer restart), until it is replaced

    def add_file(self) -> None:
        self.used_files += 1
        if self.used_files > self.max_files:
            raise PullError(f"more than {self.max_files} files: over the file-count limit")

    @property
    def free_bytes(self) -> int:
        return self.max_bytes - self.used_bytes - self.held_bytes - self.earlier_bytes

    def beside(self) -> str:
        also = [f"the {self.held_bytes}-byte archive"] if self.held_bytes else []
        also += [f"the earlier pull's {self.earlier_bytes} bytes"] if self.earlier_bytes else []
        return f" (with {' and '.join(also)})" if also else ""

    def add_bytes(self, n: int) -> None:
        self.used_bytes += n
        if self.free_bytes < 0:
            raise over_size(f"more than {self.used_bytes} bytes{self.beside()}", self.max_bytes)

    def hold(self, n: int) -> None:
        """A downloaded archive of n bytes now sits on the volume."""
        self.held_bytes += n
        if self.free_bytes < 0:
            self.held_bytes -= n
            raise over_size(f"the archive is {n} bytes{self.beside()}", self.max_bytes)

    def release(self, n: int) -> None:
        self.held_bytes -= n


EntryKind = Literal["file", "dir", "symlink", "hardlink", "special"]


@dataclass
class Entry:
    """One item of a source tree, whatever it came from (tar, zip, directory, bucket)."""

    name: str
    kind: EntryKind
    size: int = 0
    link: str = ""  # symlink target (relative to the entry) or hardlink target (relative to root)
    executable: bool = False
    open: Callable[[], contextlib.AbstractContextManager[IO[bytes]]] | None = None
    fetch: Callable[[Path], None] | None = None  # writes the file itself (e.g. s3 multipart download)


def copy_stream(src: IO[bytes], dest: Path, budget: Budget) -> None:
    with open(dest, "xb") as out:
        while chunk := src.read(CHUNK):
            budget.add_bytes(len(chunk))
            out.write(chunk)


def materialize(entries: Iterable[Entry], root: Path, budget: Budget, what: str = "member") -> None:
    """Write entries under root; nothing can be written or pointed outside root.

    Symlinks are created last, after every regular file is written, so no write can pass
    through one; an entry below a symlink is refused; every created symlink is then resolved
    for real (chains included) and must stay inside root. Hardlinks become copies.
    """
    root.mkdir(parents=True, exist_ok=True)
    real_root = Path(os.path.realpath(root))
    files: set[PurePosixPath] = set()
    symlinks: dict[PurePosixPath, str] = {}
    hardlinks: list[tuple[PurePosixPath, PurePosixPath]] = []
    written: list[tuple[PurePosixPath, bool]] = []

    for entry in entries:
        rel = safe_relpath(entry.name, what)
        if not rel.parts:
            continue  # the root itself ("./")
        if entry.kind == "special":
            raise PullError(f"{what} {entry.name!r} is a device, fifo or socket: refused")
        budget.add_file()
        if entry.kind == "dir":
            (root / rel).mkdir(parents=True, exist_ok=True)
        elif entry.kind == "symlink":
            if entry.link.startswith("/"):
                raise PullError(f"symlink {entry.name!r} -> {entry.link!r} is absolute: refused")
            target = posixpath.normpath(posixpath.join(str(rel.parent), entry.link))
            if target == ".." or target.startswith("../"):
                raise PullError(f"symlink {entry.name!r} -> {entry.link!r} escapes the target directory")
            symlinks[rel] = entry.link
        elif entry.kind == "hardlink":
            hardlinks.append((rel, safe_relpath(entry.link, "hardlink target")))
        else:
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                raise PullError(f"{what} {entry.name!r} appears twice")
            if entry.fetch is not None:
                budget.add_bytes(entry.size)  # refuse before downloading; checked again after
                entry.fetch(dest)
                budget.add_bytes(dest.stat().st_size - entry.size)
            elif entry.open is not None:
                with entry.open() as src:
                    copy_stream(src, dest, budget)
            files.add(rel)
            written.append((rel, entry.executable))

    for rel, original in hardlinks:
        if original not in files:
            raise PullError(f"hardlink {str(rel)!r} -> {str(original)!r} does not point at a regular file")
        budget.add_bytes((root / original).stat().st_size)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(root / rel):
            raise PullError(f"{what} {str(rel)!r} appears twice")
        shutil.copyfile(root / original, root / rel)
        files.add(rel)
        written.append((rel, False))

    links = set(symlinks)
    for rel in [*files, *symlinks]:
        for parent in rel.parents:
            if parent in links:
                raise PullError(f"{what} {str(rel)!r} lies below symlink {str(parent)!r}: refused")
    for rel, link in symlinks.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(root / rel):
            raise PullError(f"{what} {str(rel)!r} appears twice")
        os.symlink(link, root / rel)
    for rel in symlinks:
        resolved = Path(os.path.realpath(root / rel))
        if resolved != real_root and real_root not in resolved.parents:
            raise PullError(f"symlink {str(rel)!r} resolves outside the target directory")

    # Triton runs as another uid (1000) than the puller: make the tree readable, never writable.
    for rel, executable in written:
        os.chmod(root / rel, 0o755 if executable else 0o644)
    for dirpath, _dirs, _files in os.walk(root):
        os.chmod(dirpath, 0o755)  # noqa: S103 - read-only for others


def tar_entries(tar: tarfile.TarFile) -> Iterator[Entry]:
    for member in tar:
        if member.isdir():
            kind: EntryKind = "dir"
        elif member.issym():
            kind = "symlink"
        elif member.islnk():
            kind = "hardlink"
        elif member.isreg():
            kind = "file"
        else:
            kind = "special"

        def opener(m: tarfile.TarInfo = member) -> contextlib.AbstractContextManager[IO[bytes]]:
            stream = tar.extractfile(m)
            if stream is None:
                raise PullError(f"member {m.name!r} has no data")
            return stream

        yield Entry(
            name=member.name,
            kind=kind,
            size=member.size,
            link=member.linkname,
            executable=bool(member.mode & 0o100),
            open=opener,
        )


def zip_entries(archive: zipfile.ZipFile) -> Iterator[Entry]:
    for info in archive.infolist():
        mode = info.external_attr >> 16  # unix mode, when a unix tool made the zip
        if info.is_dir() or stat.S_ISDIR(mode):
            yield Entry(name=info.filename, kind="dir")
        elif stat.S_ISLNK(mode):
            with archive.open(info) as stream:
                target = stream.read(4096).decode("utf-8", "replace")
            yield Entry(name=info.filename, kind="symlink", link=target)
        elif mode and not stat.S_ISREG(mode):
            yield Entry(name=info.filename, kind="special")
        else:
            yield Entry(
                name=info.filename,
                kind="file",
                size=info.file_size,
                executable=bool(mode & 0o100),
                open=functools.partial(archive.open, info),
            )


def extract_archive(
    path: Path, kind: Literal["tar", "zip"], root: Path, budget: Budget, downloaded: bool = False
) -> None:
    """Extract; a downloaded archive is deleted right after (it and the model share the volume)."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                materialize(zip_entries(archive), root, budget)
        else:
            with tarfile.open(path, "r:*") as tar:
                materialize(tar_entries(tar), root, budget)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise PullError(f"cannot read the {kind} archive: {exc}") from exc
    finally:
        if downloaded:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            budget.release(budget.held_bytes)


def download_archive(budget: Budget, dest: Path, size: int, download: Callable[[], None]) -> None:
    """Download an archive of a known size: refused before it starts when it cannot fit."""
    budget.hold(size)
    download()
    budget.release(size)
    budget.hold(dest.stat().st_size)  # what is really on the volume


def open_binary(path: Path) -> IO[bytes]:
    return path.open("rb")


def dir_entries(src: Path) -> Iterator[Entry]:
    """A local directory (the mounted PVC) as entries; symlinks are kept as symlinks, never followed."""
    for dirpath, dirnames, filenames in os.walk(src):
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = base / name
            rel = path.relative_to(src).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                yield Entry(name=rel, kind="symlink", link=os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                yield Entry(name=rel, kind="dir")
            elif stat.S_ISREG(info.st_mode):
                yield Entry(
                    name=rel,
                    kind="file",
                    size=info.st_size,
                    executable=bool(info.st_mode & 0o100),
                    open=functools.partial(open_binary, path),
                )
            else:
                yield Entry(name=rel, kind="special")


# -------------------------------------------------------------------------------------- retry


def with_retries(action: Callable[[], T], what: str, attempts: int, base_delay: float, log: Logger) -> T:
    """Run action, retrying TransientError with capped exponential backoff and full jitter."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except TransientError as exc:
            if attempt == attempts:
                raise PullError(f"{exc} (gave up after {attempts} attempts)") from exc
            delay = random.uniform(0, min(30.0, base_delay * 2 ** (attempt - 1)))  # noqa: S311 - jitter, not crypto
            log("warning", "retry", what=what, attempt=attempt, error=str(exc), sleep_seconds=round(delay, 3))
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


# ------------------------------------------------------------------------------------- puller


@dataclass
class Options:
    source: Source
    model_name: str
    repository: Path
    config: Path | None
    pvc_mount_root: Path
    secret_dir: Path
    ca_file: Path | None
    max_bytes: int
    max_files: int
    retries: int
    retry_base_delay: float
    timeout: float
    env: Mapping[str, str]


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects (signed-URL hops) but never down to plain http."""

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme.lower() != "https":
            raise PullError(f"the server redirected to a non-https URL (HTTP {code}): refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_https(opts: Options, dest: Path, budget: Budget, log: Logger) -> None:
    context = ssl.create_default_context()  # the system trust store ...
    if opts.ca_file:
        context.load_verify_locations(cafile=str(opts.ca_file))  # ... plus the Secret's CA, never instead
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _HttpsOnlyRedirects())
    # S310: parse_source admitted https only, and redirects are held to https too.
    request = urllib.request.Request(opts.source.url, headers={"User-Agent": "modeldeploy-model-puller/0.1"})  # noqa: S310
    token = opts.env.get("STORAGE_BEARER_TOKEN", "")
    if token:
        # Unredirected: a redirect to another host (often a signed storage URL) must not get the token.
        request.add_unredirected_header("Authorization", f"Bearer {token}")

    def attempt() -> None:
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()  # a retry starts over
        # The archive and the model share the volume: a retry starts over with what is free now.
        attempt_budget = Budget(budget.free_bytes, budget.max_files)
        try:
            with opener.open(request, timeout=opts.timeout) as response:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > budget.free_bytes:
                    raise over_size(f"the archive is {length} bytes", budget.max_bytes)
                try:
                    copy_stream(response, dest, attempt_budget)
                except PullError:
                    raise over_size(
                        f"the archive is over {budget.free_bytes} bytes{budget.beside()}", budget.max_bytes
                    ) from None
                if length and length.isdigit() and dest.stat().st_size != int(length):
                    raise TransientError(f"connection closed after {dest.stat().st_size} of {length} bytes")
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response open
            problem = f"HTTP {exc.code} {exc.reason}"
            if exc.code in TRANSIENT_HTTP_STATUS:
                raise TransientError(problem) from None
            if exc.code in (401, 403):
                problem += " (check STORAGE_BEARER_TOKEN in the storage Secret)"
            raise PullError(problem) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                raise PullError(f"TLS certificate verification failed: {exc.reason.verify_message}") from None
            raise TransientError(f"cannot connect: {exc.reason}") from None
        except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            raise TransientError(f"connection failed: {type(exc).__name__}: {exc}") from None

    log("info", "download.start", source=opts.source.display)
    with_retries(attempt, "download", opts.retries, opts.retry_base_delay, log)
    budget.hold(dest.stat().st_size)


def ca_bundle(opts: Options, staging: Path, default_bundle: str) -> Path | None:
    """The client library's own trust store plus the Secret's ca.crt, as one file.

    botocore and requests take one bundle, which replaces their default: given ca.crt alone, a
    store behind a public certificate (or a redirect to one) would no longer verify."""
    if opts.ca_file is None:
        return None
    bundle = staging / "ca-bundle.pem"
    with open(bundle, "xb") as out:
        out.write(Path(default_bundle).read_bytes().rstrip(b"\n") + b"\n")
        out.write(opts.ca_file.read_bytes())
    return bundle


def s3_client(opts: Options, staging: Path) -> Any:
    import boto3  # lazily: the https and pvc paths need the stdlib only
    from botocore.config import Config
    from botocore.httpsession import where

    endpoint = opts.env.get("AWS_ENDPOINT_URL") or None
    config = Config(
        retries={"max_attempts": opts.retries, "mode": "standard"},  # botocore retries transient errors
        connect_timeout=opts.timeout,
        read_timeout=opts.timeout,
        # S3-compatible stores (MinIO, Ceph) behind a custom endpoint usually want path-style URLs.
        s3={"addressing_style": opts.env.get("AWS_S3_ADDRESSING_STYLE", "path" if endpoint else "auto")},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=opts.env.get("AWS_REGION") or opts.env.get("AWS_DEFAULT_REGION") or None,
        config=config,
        verify=str(bundle) if (bundle := ca_bundle(opts, staging, where())) else None,
    )


def s3_entries(opts: Options, client: Any) -> Iterator[Entry]:
    bucket, prefix = opts.source.authority, opts.source.path.rstrip("/")
    listing_prefix = f"{prefix}/" if prefix else ""  # "m/1" must not match "m/10"
    found = False
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=listing_prefix):
        for obj in page.get("Contents", []):
            key: str = obj["Key"]
            if key.endswith("/"):
                continue  # a console-made "folder" marker
            found = True

            def fetch(dest: Path, key: str = key) -> None:
                client.download_file(bucket, key, str(dest))

            yield Entry(name=key[len(listing_prefix) :], kind="file", size=int(obj["Size"]), fetch=fetch)
    if not found:
        raise PullError(f"no objects under s3://{bucket}/{listing_prefix}")


def pull_s3(opts: Options, root: Path, staging: Path, budget: Budget, log: Logger) -> None:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    client = s3_client(opts, staging)
    try:
        if opts.source.is_archive:
            archive = staging / "archive"
            head = client.head_object(Bucket=opts.source.authority, Key=opts.source.path)
            log("info", "download.start", source=opts.source.display)
            download_archive(
                budget,
                archive,
                int(head["ContentLength"]),
                lambda: client.download_file(opts.source.authority, opts.source.path, str(archive)),
            )
            extract_archive(archive, opts.source.archive_kind, root, budget, downloaded=True)
        else:
            log("info", "download.start", source=opts.source.display)
            materialize(s3_entries(opts, client), root, budget, "object")
    except NoCredentialsError as exc:
        raise PullError(
            "no S3 credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the storage Secret"
        ) from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "?")
        if code in ("404", "NoSuchKey"):
            raise PullError("object not found") from None
        raise PullError(f"S3 error {code}: {error.get('Message') or exc}") from None
    except BotoCoreError as exc:
        raise PullError(f"S3 request failed: {exc}") from None


def certifi_where() -> str:
    import certifi  # requests' own trust store, which google-cloud-storage's sessions use

    return str(certifi.where())


def pull_gs(opts: Options, root: Path, staging: Path, budget: Budget, log: Logger) -> None:
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc
    from google.cloud import storage

    key_file = opts.secret_dir / GCS_CREDENTIALS_FILE
    bundle = ca_bundle(opts, staging, certifi_where())
    if bundle is not None:
        os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)  # the GCS client's sessions are requests'
    try:
        if key_file.is_file():
            client = storage.Client.from_service_account_json(str(key_file))
        else:
            client = storage.Client()  # workload identity / ADC, or anonymous against an emulator
        bucket = client.bucket(opts.source.authority)
        # The client's default retry policy covers transient errors of both calls below.
        if opts.source.is_archive:
            blob = bucket.blob(opts.source.path)
            blob.reload(timeout=opts.timeout)
            log("info", "download.start", source=opts.source.display)
            archive = staging / "archive"
            download_archive(
                budget,
                archive,
                int(blob.size or 0),
                lambda: blob.download_to_filename(str(archive), timeout=opts.timeout),
            )
            extract_archive(archive, opts.source.archive_kind, root, budget, downloaded=True)
            return

        prefix = opts.source.path.rstrip("/")
        listing_prefix = f"{prefix}/" if prefix else ""

        def entries() -> Iterator[Entry]:
            found = False
            for blob in client.list_blobs(opts.source.authority, prefix=listing_prefix, timeout=opts.timeout):
                if blob.name.endswith("/"):
                    continue
                found = True

                def fetch(dest: Path, blob: Any = blob) -> None:
                    blob.download_to_filename(str(dest), timeout=opts.timeout)

                yield Entry(
                    name=blob.name[len(listing_prefix) :], kind="file", size=int(blob.size or 0), fetch=fetch
                )
            if not found:
                raise PullError(f"no objects under gs://{opts.source.authority}/{listing_prefix}")

        log("info", "download.start", source=opts.source.display)
        materialize(entries(), root, budget, "object")
    except auth_exc.DefaultCredentialsError as exc:
        raise PullError(
            f"no GCS credentials: put {GCS_CREDENTIALS_FILE} in the storage Secret ({exc})"
        ) from None
    except gexc.NotFound:
        raise PullError("bucket or object not found") from None
    except gexc.GoogleAPICallError as exc:
        raise PullError(f"GCS error {exc.code}: {exc.message}") from None


def pull_pvc(opts: Options, root: Path, budget: Budget, log: Logger) -> None:
    claim = opts.source.authority
    mount = opts.pvc_mount_root / claim
    if not mount.is_dir():
        raise PullError(f"claim {claim!r} is not mounted at {mount}")
    src = mount / safe_relpath(opts.source.path, "path")
    real_mount = Path(os.path.realpath(mount))
    real_src = Path(os.path.realpath(src))
    if real_src != real_mount and real_mount not in real_src.parents:
        raise PullError(f"{src} resolves outside the claim's mount (symlink): refused")
    log("info", "copy.start", source=opts.source.display, path=str(src))
    if opts.source.is_archive and real_src.is_file():
        extract_archive(real_src, opts.source.archive_kind, root, budget)
    elif real_src.is_dir():
        materialize(dir_entries(real_src), root, budget, "file")
    else:
        raise PullError(f"{src} does not exist in the claim")


def is_version_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and path.name.isdigit()


def find_model_root(tree: Path) -> Path:
    """The directory holding config.pbtxt and the version dirs; archives often wrap it in one folder."""
    for _ in range(2):
        children = [c for c in tree.iterdir() if not c.name.startswith((".", "__MACOSX"))]
        if any(is_version_dir(c) for c in children):
            return tree
        dirs = [c for c in children if c.is_dir() and not c.is_symlink()]
        if (tree / "config.pbtxt").exists() or len(children) != 1 or len(dirs) != 1:
            break
        tree = dirs[0]
    raise PullError("no numeric version directory (such as 1/) found: not a Triton model directory")


# ------------------------------------------------------------------------------ config merge


def config_schema() -> Any:
    """Triton's ModelConfig module (model_config_pb2.py beside this file), loaded by path, once."""
    name = "modeldeploy_puller_model_config_pb2"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).with_name(CONFIG_SCHEMA)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise PullError(f"Triton's config schema {path} is missing from the image")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # needs protobuf (requirements.txt)
    except ImportError as exc:
        raise PullError(f"cannot load Triton's config schema: {exc}") from None
    sys.modules[name] = module
    return module


def parse_config(text: str, what: str) -> Any:
    """A config.pbtxt as Triton's ModelConfig message; anything Triton would not parse is refused."""
    from google.protobuf import text_format  # lazily, like the object-store clients

    try:
        return text_format.Parse(text, config_schema().ModelConfig())
    except text_format.ParseError as exc:
        raise PullError(f"{what} is not a valid Triton model configuration: {exc}") from None


def read_config(path: Path, what: str) -> str:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise PullError(f"{what} is larger than {MAX_CONFIG_BYTES} bytes: not a model configuration")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PullError(f"{what} is not UTF-8 text") from None


def merge_config(own_text: str | None, rendered_text: str, model_name: str) -> tuple[str, list[str]]:
    """The model's own config with the rendered fields over it: (text, the fields taken from the rendered).

    Each top-level field the rendered config states replaces the model's whole field: a message as
    a whole, a repeated field (instance_group, ...) as a whole list. `parameters` is a map: merged
    by key, the rendered value winning. Everything else of the model's stays as it was.
    """
    from google.protobuf import text_format

    rendered = parse_config(rendered_text, "the rendered config.pbtxt")
    if rendered.name != model_name:
        raise PullError(f"the rendered config.pbtxt names model {rendered.name!r}, not {model_name!r}")
    fields = sorted({f.name for f, _ in rendered.ListFields()} | set(ALWAYS_STATED))
    if own_text is None:
        return str(text_format.MessageToString(rendered)), fields  # it stands alone
    own = parse_config(own_text, "the model's config.pbtxt")
    if own.name and own.name != model_name:
        # Triton loads a model only if its config's name is its directory's. Renaming it here would
        # serve one model under another's name: a wrong storageUri or model.name, most likely.
        raise PullError(
            f"the model's config.pbtxt names model {own.name!r}, not {model_name!r} (spec.model.name): "
            "point storageUri at the right model, or set spec.model.name to the config's name"
        )
    descriptor = own.DESCRIPTOR
    for oneof in descriptor.oneofs:
        chosen = own.WhichOneof(oneof.name)
        stated = [f.name for f in oneof.fields if f.name in fields]
        if chosen is not None and stated and stated != [chosen]:
            # dynamic_batching, sequence_batching and ensemble_scheduling exclude each other:
            # setting one would silently drop the model's stateful or ensemble scheduling.
            raise PullError(
                f"the model's config.pbtxt uses {chosen}, which the rendered {stated[0]} would replace: "
                f"remove dynamicBatching from spec.model.config for this model"
            )
    for name in fields:
        field = descriptor.fields_by_name[name]
        ours, theirs = getattr(own, name), getattr(rendered, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key in theirs:
                if field.message_type.fields_by_name["value"].message_type is not None:
                    ours[key].CopyFrom(theirs[key])
                else:
                    ours[key] = theirs[key]
        elif field.is_repeated:
            del ours[:]
            ours.extend(theirs)
        elif field.message_type is not None:
            ours.CopyFrom(theirs)
        else:
            setattr(own, name, theirs)
    return str(text_format.MessageToString(own)), fields


def apply_config(model_root: Path, rendered: Path, model_name: str, log: Logger) -> None:
    target = model_root / CONFIG_FILE
    own_text = None
    if target.exists():  # may be a symlink: materialize() proved it resolves inside the model
        own_text = read_config(target, "the model's config.pbtxt")
    text, fields = merge_config(own_text, read_config(rendered, "the rendered config.pbtxt"), model_name)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.write_text(text, encoding="utf-8")
    os.chmod(target, 0o644)
    log("info", "config.merged" if own_text is not None else "config.rendered", fields=fields)


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under path (symlinks not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISREG(info.st_mode):
                    total += info.st_size
    return total


def replace_dir(staged: Path, final: Path) -> None:
    """Move staged to final. An earlier pull's result (an initContainer restart) is moved aside first."""
    trash = None
    if final.exists() or final.is_symlink():
        trash = final.with_name(f"{TRASH_PREFIX}{final.name}+{os.getpid()}")
        os.rename(final, trash)
    os.rename(staged, final)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def clean_leftovers(repository: Path, model_name: str) -> None:
    """Remove staging dirs left by a puller that was killed (the emptyDir survives a container restart)."""
    for prefix in (STAGING_PREFIX, TRASH_PREFIX):
        for leftover in repository.glob(f"{prefix}{model_name}+*"):
            shutil.rmtree(leftover, ignore_errors=True)


def pull(opts: Options, log: Logger) -> Path:
    if not MODEL_NAME_RE.match(opts.model_name):
        raise PullError(f"model name {opts.model_name!r} is not a valid Triton model directory name")
    if opts.config is not None and not opts.config.is_file():
        raise PullError(f"rendered config {opts.config} not found (is the ConfigMap mounted?)")
    opts.repository.mkdir(parents=True, exist_ok=True)
    clean_leftovers(opts.repository, opts.model_name)

    started = time.monotonic()
    final = opts.repository / opts.model_name
    earlier = tree_bytes(final) if final.is_dir() and not final.is_symlink() else 0
    budget = Budget(opts.max_bytes, opts.max_files, earlier_bytes=earlier)
    # Inside the repository, so the final rename stays on one filesystem and is atomic.
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{opts.model_name}+", dir=opts.repository))
    try:
        tree = staging / "tree"
        scheme = opts.source.scheme
        if scheme == "https":
            archive = staging / "archive"
            fetch_https(opts, archive, budget, log)
            extract_archive(archive, opts.source.archive_kind, tree, budget, downloaded=True)
        elif scheme == "s3":
            pull_s3(opts, tree, staging, budget, log)
        elif scheme == "gs":
            pull_gs(opts, tree, staging, budget, log)
        else:
            pull_pvc(opts, tree, budget, log)

        model_root = find_model_root(tree)
        versions = sorted(c.name for c in model_root.iterdir() if is_version_dir(c))
        if opts.config is not None:
            apply_config(model_root, opts.config, opts.model_name, log)
        os.chmod(model_root, 0o755)  # noqa: S103 - mkdtemp made it 0700; Triton's uid must read it
        replace_dir(model_root, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    log(
        "info",
        "pull.done",
        source=opts.source.display,
        model=opts.model_name,
        path=str(final),
        versions=versions,
        entries=budget.used_files,
        bytes=budget.used_bytes,
        seconds=round(time.monotonic() - started, 3),
    )
    return final


# ---------------------------------------------------------------------------------------- cli


def parse_args(argv: list[str] | None, env: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="model-puller", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--source", required=True, help="s3://, gs://, https:// or pvc:// URI of the model")
    parser.add_argument("--model-name", required=True, help="Triton model name: the directory to create")
    parser.add_argument("--repository", type=Path, default=Path(DEFAULT_REPOSITORY))
    parser.add_argument("--config", type=Path, help="rendered config.pbtxt to merge over the model's own")
    parser.add_argument("--pvc-mount-root", type=Path, default=Path(DEFAULT_PVC_MOUNT_ROOT))
    parser.add_argument("--secret-dir", type=Path, default=Path(DEFAULT_SECRET_DIR))
    parser.add_argument(
        "--ca-file", type=Path, help=f"extra CA bundle for TLS (default: <secret-dir>/{CA_FILE})"
    )
    parser.add_argument(
        "--max-bytes", type=int, default=int(env.get("MODEL_PULLER_MAX_BYTES", DEFAULT_MAX_BYTES))
    )
    parser.add_argument("--max-files", type=int, default=DEFAULT_MAX_FILES)
    parser.add_argument("--retries", type=int, default=5, help="attempts for transient network errors")
    parser.add_argument("--retry-base-delay", type=float, default=1.0, help="seconds; doubles per attempt")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per network operation")
    parser.add_argument("--log-format", choices=("json", "text"), default="json")
    parser.add_argument("--termination-log", type=Path, default=Path("/dev/termination-log"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    args = parse_args(argv, env)
    log = Logger(fmt=args.log_format, env=env)
    shown = redact_raw(args.source)
    try:
        source = parse_source(args.source)
        shown = source.display
        ca_file: Path | None = args.ca_file
        if ca_file is None and (args.secret_dir / CA_FILE).is_file():
            ca_file = args.secret_dir / CA_FILE
        opts = Options(
            source=source,
            model_name=args.model_name,
            repository=args.repository,
            config=args.config,
            pvc_mount_root=args.pvc_mount_root,
            secret_dir=args.secret_dir,
            ca_file=ca_file,
            max_bytes=args.max_bytes,
            max_files=args.max_files,
            retries=max(1, args.retries),
            retry_base_delay=args.retry_base_delay,
            timeout=args.timeout,
            env=env,
        )
        pull(opts, log)
        return 0
    except Exception as exc:  # one clear line for every failure, expected or not
        problem = str(exc) if isinstance(exc, PullError) else f"unexpected {type(exc).__name__}: {exc}"
        # One line, whatever the library said: Kubernetes shows the termination message as is.
        problem = "; ".join(line.strip() for line in problem.splitlines() if line.strip())
        message = scrub(f"model-puller: {shown}: {problem}", env)
        log("error", "pull.failed", source=shown, error=problem)
        sys.stderr.write(message + "\n")
        with contextlib.suppress(OSError):
            args.termination_log.write_text(message + "\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
