"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

The envtest convention: the binaries come from the folder named by `KUBEBUILDER_ASSETS`
(scripts/install-control-plane.py fetches envtest's etcd and kube-apiserver and the release's
kube-controller-manager when there is none). Used by the test suite, the benchmark and the demo.

The API server runs as production clusters do: TLS with a self-signed serving certificate, token
and client-certificate authentication, the RBAC authorizer, a JSON audit log of every request, and
the admission plugins a production cluster enables, OwnerReferencesPermissionEnforcement
included. There is no kubelet and no scheduler: `testbed.kubelet` stands in for them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from testbed.kubeapi import ApiError, KubeApi

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
HOW_TO_GET = (
    "name a folder with them in KUBEBUILDER_ASSETS, put the shared folder at ../shared/k8s/bin, or run"
    " scripts/install-control-plane.py with network access (it fetches Kubernetes v1.36.2 into"
    " .tools/k8s/bin)"
)
ADMIN_USER = "admin"
# Added to the defaults: what a hardened production cluster turns on beyond them.
ADMISSION = "NodeRestriction,OwnerReferencesPermissionEnforcement,AlwaysPullImages,EventRateLimit"
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    # One event per request, when its response is complete: enough to count verbs per user.
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "Metadata"}],
}
EVENT_RATE_LIMIT = {
    "apiVersion": "eventratelimit.admission.k8s.io/v1alpha1",
    "kind": "Configuration",
    "limits": [{"type": "Server", "qps": 500, "burst": 1000}],
}


class ControlPlaneMissing(RuntimeError):
    """The binaries are not there; the message says which and how to get them."""


def find_assets(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The folder of binaries: `explicit`, else $KUBEBUILDER_ASSETS, else ../shared/k8s/bin, else
    .tools/k8s/bin (where scripts/install-control-plane.py puts them)."""
    shared = Path.cwd().parent / "shared/k8s/bin"
    fetched = Path.cwd() / ".tools/k8s/bin"
    default = shared if shared.is_dir() or not fetched.is_dir() else fetched
    folder = Path(explicit or os.environ.get("KUBEBUILDER_ASSETS") or default)
    missing = [name for name in BINARIES if not os.access(folder / name, os.X_OK)]
    if missing:
        raise ControlPlaneMissing(f"no {', '.join(missing)} in {folder}: {HOW_TO_GET}")
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Credentials:
    """How one user logs in: a bearer token, or a client certificate and key."""

    user: str
    token: str | None = field(default=None, repr=False)
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass
class ControlPlane:
    """`with ControlPlane() as cp:` -- a running control plane; `cp.admin` is a system:masters client."""

    assets: Path | None = None
    controller_manager: bool = True
    workdir: Path | None = None
    url: str = ""
    _processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _owned_workdir: bool = False
    _etcd_url: str = ""
    _etcd_ports: tuple[int, int] | None = None
    _apiserver_port: int = 0
    _tokens: dict[str, tuple[str, str]] = field(default_factory=dict)  # token -> (user, groups)
    _admin: KubeApi | None = None

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ files

    @property
    def dir(self) -> Path:
        assert self.workdir is not None, "start() first"
        return self.workdir

    @property
    def ca_file(self) -> Path:
        """The API server's self-signed serving certificate: what clients trust."""
        return self.dir / "certs" / "apiserver.crt"

    @property
    def audit_log(self) -> Path:
        return self.dir / "audit.log"

    @property
    def admin_token(self) -> str:
        return next(token for token, (user, _) in self._tokens.items() if user == ADMIN_USER)

    def _write_pki(self) -> None:
        pki = self.dir / "pki"
        pki.mkdir()
        _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        # A client CA, so that users can log in with a client certificate, as kind's admin does.
        _openssl("genrsa", "-out", str(pki / "client-ca.key"), "2048")
        _openssl(
            "req", "-x509", "-new", "-key", str(pki / "client-ca.key"), "-subj", "/CN=testbed-client-ca",
            "-days", "2", "-out", str(pki / "client-ca.crt"),
        )  # fmt: skip

    def client_certificate(self, user: str, groups: tuple[str, ...] = ()) -> Credentials:
        """A client certificate for `user` (CN) in `groups` (O), signed by the client CA."""
        pki = self.dir / "pki"
        key, csr, crt = (pki / f"{user}.{ext}" for ext in ("key", "csr", "crt"))
        subject = "".join(f"/O={group}" for group in groups) + f"/CN={user}"
        _openssl("genrsa", "-out", str(key), "2048")
        _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(pki / "client-ca.crt"), "-CAkey",
            str(pki / "client-ca.key"), "-CAcreateserial", "-days", "2", "-out", str(crt),
        )  # fmt: skip
        return Credentials(user=user, cert_file=crt, key_file=key)

    def kubeconfig(self, credentials: Credentials, path: Path | None = None, namespace: str = "") -> Path:
        """A kubeconfig file for `credentials`, trusting the serving certificate as its CA."""
        target = path or self.dir / f"kubeconfig-{credentials.user.replace(':', '-')}"
        user: dict[str, Any] = {}
        if credentials.token:
            user["token"] = credentials.token
        if credentials.cert_file and credentials.key_file:
            user["client-certificate"] = str(credentials.cert_file)
            user["client-key"] = str(credentials.key_file)
        context: dict[str, Any] = {"cluster": "testbed", "user": credentials.user}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "testbed",
                    "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": credentials.user, "user": user}],
            "contexts": [{"name": "testbed", "context": context}],
            "current-context": "testbed",
        }
        target.write_text(yaml.safe_dump(config))
        target.chmod(0o600)
        return target

    def api(self, credentials: Credentials | None = None) -> KubeApi:
        creds = credentials or Credentials(user=ADMIN_USER, token=self.admin_token)
        return KubeApi(
            self.url,
            ca_file=self.ca_file,
            token=creds.token,
            cert_file=creds.cert_file,
            key_file=creds.key_file,
        )

    @property
    def admin(self) -> KubeApi:
        """One client, shared (it is thread-safe): it keeps its connections and what it discovered."""
        if self._admin is None:
            self._admin = self.api()
        return self._admin

    # ---------------------------------------------------------------------------- processes

    def start(self, timeout: float = 60.0) -> None:
        assets = find_assets(self.assets)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="modeldeploy-controlplane-"))
            self._owned_workdir = True
        self._write_pki()
        self._tokens = {os.urandom(16).hex(): (ADMIN_USER, "system:masters")}
        self._write_tokens()
        (self.dir / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))
        (self.dir / "eventratelimit.yaml").write_text(yaml.safe_dump(EVENT_RATE_LIMIT))
        (self.dir / "admission.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "apiserver.config.k8s.io/v1",
                    "kind": "AdmissionConfiguration",
                    "plugins": [{"name": "EventRateLimit", "path": str(self.dir / "eventratelimit.yaml")}],
                }
            )
        )
        self._start_etcd(assets)
        self._start_apiserver(assets)
        self._wait_ready(timeout)
        if self.controller_manager:
            self._start_controller_manager(assets)

    def _write_tokens(self) -> None:
        lines = [f'{token},{user},{user},"{groups}"' for token, (user, groups) in self._tokens.items()]
        (self.dir / "tokens.csv").write_text("\n".join(lines) + "\n")

    def _spawn(self, name: str, command: list[str]) -> None:
        log = (self.dir / f"{name}.log").open("ab")
        # A session of its own: a Ctrl-C at the terminal reaches only the owner (the demo, a test),
        # which stops these in order, rather than killing them under it.
        self._processes[name] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def _start_etcd(self, assets: Path) -> None:
        # The same ports on a restart: the API server keeps the etcd URL it was started with.
        self._etcd_ports = self._etcd_ports or (free_port(), free_port())
        client, peer = self._etcd_ports
        self._etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            [
                str(assets / "etcd"),
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={self._etcd_url}",
                f"--advertise-client-urls={self._etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
            ],
        )

    def _start_apiserver(self, assets: Path) -> None:
        self._apiserver_port = self._apiserver_port or free_port()
        self.url = f"https://127.0.0.1:{self._apiserver_port}"
        pki = self.dir / "pki"
        self._spawn(
            "kube-apiserver",
            [
                str(assets / "kube-apiserver"),
                f"--etcd-servers={self._etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self._apiserver_port}",
                f"--cert-dir={self.dir / 'certs'}",
                f"--token-auth-file={self.dir / 'tokens.csv'}",
                f"--client-ca-file={pki / 'client-ca.crt'}",
                "--authorization-mode=RBAC",
                f"--enable-admission-plugins={ADMISSION}",
                f"--admission-control-config-file={self.dir / 'admission.yaml'}",
                f"--service-account-key-file={pki / 'sa.key'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--audit-policy-file={self.dir / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--audit-log-maxsize=0",
            ],
        )

    def _start_controller_manager(self, assets: Path) -> None:
        pki = self.dir / "pki"
        kubeconfig = self.kubeconfig(Credentials(user=ADMIN_USER, token=self.admin_token))
        self._spawn(
            "kube-controller-manager",
            [
                str(assets / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--controllers=*,-nodeipam,-nodelifecycle,-ttl,-bootstrapsigner,-tokencleaner",
                # Prompt enough for tests: a Deployment's status follows its pods within a moment.
                "--concurrent-deployment-syncs=10",
                "--concurrent-gc-syncs=10",
            ],
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, process in self._processes.items():
                if process.poll() is not None:
                    tail = (self.dir / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")
            if self.ca_file.exists():
                try:
                    # Only exactly "ok" is ready: a failing check still prints "[+]ping ok".
                    last = self.admin.get_path("/readyz").decode()
                    if last == "ok":
                        return
                except (OSError, ApiError) as error:
                    last = str(error)
            time.sleep(0.1)
        raise TimeoutError(f"kube-apiserver not ready after {timeout:.0f}s: {last[-500:]}")

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> Credentials:
        """A bound token for a ServiceAccount, by the TokenRequest API, as a kubelet would mount it."""
        result = self.admin.create_subresource(
            "v1",
            "ServiceAccount",
            namespace,
            name,
            "token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
        )
        return Credentials(user=f"system:serviceaccount:{namespace}:{name}", token=result["status"]["token"])

    def restart_apiserver(self, timeout: float = 60.0, down: float = 0.0) -> None:
        """Stop the API server (every connection and watch drops), wait `down` seconds, start it."""
        self._stop("kube-apiserver")
        time.sleep(down)
        self._start_apiserver(find_assets(self.assets))
        self._wait_ready(timeout)

    def restart_etcd(self, timeout: float = 60.0, down: float = 0.0) -> None:
        """Stop etcd (its data stays), wait `down` seconds, start it again on the same ports; returns
        once the API server, which kept running and reconnects by itself, answers ready again."""
        self._stop("etcd")
        time.sleep(down)
        self._start_etcd(find_assets(self.assets))
        self._wait_ready(timeout)

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision, as the API server does every five
        minutes: a watch or a list continue token from before then is answered 410 Gone. Returns
        the revision."""

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            request = urllib.request.Request(  # noqa: S310 -- our own etcd, http on loopback
                f"{self._etcd_url}{path}", data=json.dumps(body).encode(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 -- our own etcd
                answer: dict[str, Any] = json.loads(response.read())
                return answer

        revision = int(post("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"])
        post("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def _stop(self, name: str) -> None:
        process = self._processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            self._stop(name)
        if self._owned_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --------------------------------------------------------------------------- audit log

    def audit_position(self) -> int:
        """A point in the audit log; `audit_events(since=)` reads what came after it."""
        return self.audit_log.stat().st_size if self.audit_log.exists() else 0

    def audit_events(self, since: int = 0, user: str | None = None) -> list[dict[str, Any]]:
        """Every request the API server answered after `since`, optionally by one user."""
        with self.audit_log.open("rb") as handle:
            handle.seek(since)
            lines = handle.read().splitlines()
        events = []
        for line in lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if user is None or event.get("user", {}).get("username") == user:
                    events.append(event)
        return events


WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def writes(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event for event in events if event.get("verb") in WRITE_VERBS]


def verb_counts(events: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        counts[event["verb"]] = counts.get(event["verb"], 0) + 1
    return counts


@contextlib.contextmanager
def control_plane(assets: str | None = None) -> Iterator[ControlPlane]:
    with ControlPlane(assets=Path(assets) if assets else None) as running:
        yield running
