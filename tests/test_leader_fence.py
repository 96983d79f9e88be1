"""A leader that may have lost its Lease writes nothing (issue 16, item 4).

First the rules on a fake clock: leadership is judged at the moment of sending, for every attempt
of every write, retries included, and each attempt is bounded by the time left before the Lease
may pass. Then on the real API server, with its audit log: a leader stalled past its renew deadline
mid-rollout sends no write after the standby's first."""

from __future__ import annotations

import datetime
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes.client import Configuration

from modeldeploy.adapters.kube import KubeClient
from modeldeploy.handlers.leader import Elector, Timings
from modeldeploy.handlers.reconciler import NotLeader
from operator_bed import OperatorBed
from prometheus_fixture import PrometheusServer
from stall_proxy import StallProxy
from test_rollout_integration import (
    LEADER_ARGS,
    LEASE_DURATION,
    at,
    leads,
    manifest,
    object_writes,
    promoted,
    rig_with,
    target,
)
from testbed.controlplane import ControlPlane

TIMINGS = Timings(duration=10.0, renew_deadline=7.0, retry_period=2.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.on_sleep: Callable[[], None] = lambda: None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.on_sleep()


@dataclass
class FakeLeases:
    """The Lease API as the Elector uses it, in memory; `calls` records what it was asked."""

    calls: list[str] = field(default_factory=list)
    lease: dict[str, Any] | None = None
    version: int = 0

    def _store(self, spec: Any) -> dict[str, Any]:
        self.version += 1
        self.lease = {"metadata": {"resourceVersion": str(self.version)}, "spec": dict(spec)}
        return self.lease

    def get_lease(self, namespace: str, name: str, deadline: float | None = None) -> dict[str, Any] | None:
        self.calls.append("get")
        return self.lease

    def create_lease(self, namespace: str, name: str, spec: Any, deadline: float | None = None) -> Any:
        self.calls.append("create")
        return self._store(spec)

    def replace_lease(
        self, namespace: str, name: str, spec: Any, version: str, deadline: float | None = None
    ) -> Any:
        self.calls.append("release" if not spec.get("holderIdentity") else "renew")
        return self._store(spec)


def elector(clock: FakeClock, leases: FakeLeases, stopped: Callable[[], bool] = lambda: True) -> Elector:
    candidate = Elector(
        leases,  # type: ignore[arg-type]
        "ns",
        "modeldeploy",
        "me",
        TIMINGS,
        lambda: None,
        stopped,
        monotonic=clock.monotonic,
    )
    candidate._attempt()  # one round of the campaign: it creates the Lease, and leads
    assert candidate.leading
    return candidate


@pytest.mark.parametrize(
    ("elapsed", "other_term", "window"),
    [
        pytest.param(0.0, False, 10.0, id="just-renewed-the-whole-duration-left"),
        pytest.param(6.9, False, 3.1, id="before-the-renew-deadline-until-the-lease-may-pass"),
        pytest.param(7.0, False, None, id="at-the-renew-deadline-no-write"),
        pytest.param(1.0, True, None, id="a-pass-of-an-earlier-term-no-write"),
    ],
)
def test_the_write_window(elapsed: float, other_term: bool, window: float | None) -> None:
    clock = FakeClock()
    candidate = elector(clock, FakeLeases())
    clock.now += elapsed
    got = candidate.write_window(candidate.term + 1 if other_term else candidate.term)
    assert got == (pytest.approx(window) if window is not None else None)
    assert candidate.still_leading(candidate.term + 1 if other_term else None) is (window is not None)


class Answers:
    """A loopback HTTP server answering each request with the next of `answers`:
    (status, Retry-After) or "hang" (read the request, then say nothing)."""

    def __init__(self, answers: list[tuple[int, str | None] | str]) -> None:
        self.answers = list(answers)
        self.requests: list[str] = []
        self.release = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_PATCH(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append(f"{self.command} {self.path}")
                answer = owner.answers.pop(0) if owner.answers else (200, None)
                if answer == "hang":
                    owner.release.wait(60)
                    return
                assert isinstance(answer, tuple)
                status, retry_after = answer
                payload = b'{"kind":"Status","status":"Failure","reason":"TooManyRequests"}'
                if status == 200:
                    payload = b'{"status":{}}'
                self.send_response(status)
                if retry_after:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def answers() -> Iterator[Callable[[list[tuple[int, str | None] | str]], Answers]]:
    made: list[Answers] = []

    def make(script: list[tuple[int, str | None] | str]) -> Answers:
        made.append(Answers(script))
        return made[-1]

    yield make
    for server in made:
        server.close()


def guarded_client(url: str, clock: FakeClock, candidate: Elector) -> KubeClient:
    """The operator's client with the operator's guard: the pass started in the current term."""
    term = candidate.term
    client = KubeClient(Configuration(host=url), sleep=clock.sleep, clock=clock.monotonic)

    def guard() -> float | None:
        window = candidate.write_window(term)
        if window is None:
            raise NotLeader()
        return window

    client.guard_writes(guard)
    return client


def lose_and_win_again(candidate: Elector, leases: FakeLeases) -> Callable[[], None]:
    def flap() -> None:
        candidate._step_down()
        leases.lease = None  # released meanwhile; the next round takes it again, in a new term
        candidate._attempt()

    return flap


@pytest.mark.parametrize(
    ("script", "while_waiting", "sent", "refused"),
    [
        pytest.param([(429, "3"), (200, None)], None, 2, False, id="retry-after-within-the-renew-deadline"),
        pytest.param([(429, "8")], None, 1, True, id="retry-after-past-the-renew-deadline-not-sent"),
        pytest.param([(503, None)] * 3 + [(429, "7")], None, 4, True, id="backoff-then-retry-after-past-it"),
        pytest.param([(429, "8"), (200, None)], "renew", 2, False, id="renewed-while-waiting-sent"),
        pytest.param([(429, "8")], "flap", 1, True, id="lost-and-won-again-while-waiting-not-sent"),
    ],
)
def test_a_retried_write_asks_again_whether_it_leads(
    answers: Callable[[list[tuple[int, str | None] | str]], Answers],
    script: list[tuple[int, str | None] | str],
    while_waiting: str | None,
    sent: int,
    refused: bool,
) -> None:
    clock, leases = FakeClock(), FakeLeases()
    candidate = elector(clock, leases)
    server = answers(script)
    client = guarded_client(server.url, clock, candidate)
    if while_waiting == "renew":
        clock.on_sleep = candidate._attempt
    elif while_waiting == "flap":
        clock.on_sleep = lose_and_win_again(candidate, leases)
    clock.now = 1.0  # the pass checked at 1 s after the renewal: leading
    try:
        if refused:
            with pytest.raises(NotLeader):
                client.patch_status("ns", "m", {"phase": "Progressing"})
        else:
            client.patch_status("ns", "m", {"phase": "Progressing"})
    finally:
        client.close()
    assert len(server.requests) == sent, server.requests


def test_a_stalled_write_gives_up_before_the_lease_may_pass(
    answers: Callable[[list[tuple[int, str | None] | str]], Answers],
) -> None:
    """The server reads the write and says nothing. The attempt may last only until the Lease may
    pass (here 3.5 s), not the client's 30 s read timeout; its retry comes after the renew
    deadline and is not sent."""
    clock = FakeClock()
    candidate = elector(clock, FakeLeases())
    server = answers(["hang"])
    client = guarded_client(server.url, clock, candidate)
    clock.now = 6.5  # leading still (renew deadline 7 s); the Lease may pass at 10 s
    started = time.monotonic()
    clock.on_sleep = lambda: setattr(clock, "now", clock.now + 2.0)  # the real time the attempt took
    try:
        with pytest.raises(NotLeader):
            client.patch_status("ns", "m", {"phase": "Progressing"})
    finally:
        client.close()
    took = time.monotonic() - started
    assert len(server.requests) == 1
    assert took < 15.0, f"the stalled attempt lasted {took:.1f}s: not bounded by the Lease"
    print(f"\na stalled write with 3.5s of Lease left gave up after {took:.2f}s")


@pytest.mark.parametrize(
    ("drained", "calls"),
    [
        pytest.param(True, ["stopped", "release"], id="passes-ended-then-released"),
        pytest.param(False, ["stopped"], id="a-pass-still-running-left-to-expire"),
    ],
)
def test_stop_waits_for_the_passes_before_it_releases(drained: bool, calls: list[str]) -> None:
    clock, leases = FakeClock(), FakeLeases()
    order: list[str] = []

    def stopped() -> bool:
        assert not candidate.still_leading(), "writes must be refused before the passes are awaited"
        order.append("stopped")
        return drained

    candidate = elector(clock, leases, stopped)
    leases.calls.clear()
    original = leases.replace_lease

    def replace(*args: Any, **kwargs: Any) -> Any:
        order.append("release")
        return original(*args, **kwargs)

    leases.replace_lease = replace  # type: ignore[method-assign]
    candidate.stop()
    assert order == calls


# ------------------------------------------------------------------- on the real API server


def metric(bed: OperatorBed, name: str) -> float | None:
    for line in bed.process.metrics().splitlines():
        if line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def seconds(since: datetime.datetime) -> float:
    return (datetime.datetime.now(datetime.UTC) - since).total_seconds()


@pytest.mark.integration
def test_a_leader_stalled_past_its_renew_deadline_writes_nothing_after_the_standby(
    control_plane: ControlPlane, namespace: str, operator: Callable[..., OperatorBed]
) -> None:
    """Two replicas with --leader-elect (the chart's timings, 10/7/2 s), each its own user in the
    audit log. The leader reaches the API server through a loopback relay; mid-rollout the relay
    stalls its connections: its renewals, its reads and its writes in flight all hang. The standby
    takes over and writes. Only then does the stall end, so that anything the old leader still had
    in flight, or tried again after, lands now. The audit log shows none of its writes after the
    standby's first."""
    replicas: dict[str, OperatorBed] = {}
    args = [*LEADER_ARGS, f"--leader-election-namespace={namespace}"]
    with StallProxy(control_plane.url) as proxy:

        def start(prometheus: PrometheusServer) -> OperatorBed:
            common: dict[str, Any] = {"resync_seconds": 1, "prometheus_url": prometheus.url, "args": args}
            leader = operator(**common, user=f"operator-a-{namespace}", server=proxy.url)
            leader.wait(lambda: leads(leader), timeout=60, what="the proxied replica to lead")
            replicas["leader"] = leader
            replicas["standby"] = operator(**common, user=f"operator-b-{namespace}")
            return leader

        since = control_plane.audit_position()
        with rig_with(control_plane, namespace, start) as rig:
            leader, standby = replicas["leader"], replicas["standby"]
            assert not leads(standby)
            rig.deploy_stable()
            # A long first step: the rollout is mid-analysis (a status write every 2 s round)
            # when the stall comes, and stays there across the handover.
            rig.bed.apply(manifest("5", steps=[{"weight": 20, "pause": "20s"}, {"weight": 60}]))
            rig.wait(
                "the first step under traffic", lambda s: s.get("step") == 0 and bool(s.get("weightSetAt"))
            )
            rig.wait("an analysis round", lambda s: bool(s.get("lastAnalysisAt")))
            assert object_writes(leader, since), "the leader wrote nothing before the stall"
            assert object_writes(standby, since) == [], "the standby wrote while the leader led"
            proxy.stall()
            stalled = datetime.datetime.now(datetime.UTC)
            leader.wait(lambda: metric(leader, "modeldeploy_leader") == 0.0, timeout=60, what="the step-down")
            stepped_down = seconds(stalled)
            standby.wait(lambda: leads(standby), timeout=LEASE_DURATION + 30, what="the takeover")
            took_over = seconds(stalled)
            first = standby.wait(
                lambda: min(object_writes(standby, since), key=at, default=None),
                timeout=60,
                what="the standby's first write",
            )
            first_write = seconds(stalled)
            proxy.resume()  # what the old leader still holds or retries reaches the server now
            rig.bed = standby
            rig.wait("promotion by the new leader", promoted, timeout=120)
            # The old leader is connected again and still watching: it stays a standby.
            time.sleep(2 * TIMINGS.retry_period)
            assert not leads(leader)
        old, new = object_writes(leader, since), object_writes(standby, since)
    print(
        f"\nstalled: the old leader stepped down after {stepped_down:.1f}s (renew deadline"
        f" {TIMINGS.renew_deadline:g}s), the standby led after {took_over:.1f}s and wrote after"
        f" {first_write:.1f}s; the relay dropped {proxy.dropped} connections given up while held and"
        f" delivered {proxy.delivered_late} late; {len(old)} writes by the old leader, {len(new)} by the new"
    )
    late = [f"{target(e)} at {e['requestReceivedTimestamp']}" for e in old if at(e) >= at(first)]
    assert not late, (
        f"the old leader wrote after the standby's first write ({first['requestReceivedTimestamp']}): {late}"
    )
    assert stepped_down < LEASE_DURATION, stepped_down
    assert all(at(e) < stalled + datetime.timedelta(seconds=TIMINGS.duration) for e in old)
