"""Leader election (handlers/leader.py): the rules as a table, then two candidates on the real API
server's Lease API. The operator-level failover (SIGKILL mid-rollout) is in
test_rollout_integration.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from modeldeploy.adapters.kube import KubeClient, configuration
from modeldeploy.handlers.leader import Action, Elector, Record, Timings, next_action
from test_real_api_defects import admin_kubeconfig
from testbed.controlplane import ControlPlane

ME, OTHER = "replica-a", "replica-b"


def held(holder: str, duration: float | None = 15) -> Record:
    return Record(holder=holder, duration=duration, version="5")


@pytest.mark.parametrize(
    ("record", "since", "now", "action"),
    [
        pytest.param(None, None, 100.0, Action.CREATE, id="no-lease-yet"),
        pytest.param(held(ME), 0.0, 100.0, Action.RENEW, id="ours-renew"),
        pytest.param(held(""), 99.0, 100.0, Action.ACQUIRE, id="released-take-at-once"),
        pytest.param(held(OTHER), 90.0, 100.0, Action.WAIT, id="held-renewed-10s-ago"),
        pytest.param(held(OTHER), 85.0, 100.0, Action.ACQUIRE, id="unchanged-for-a-whole-duration"),
        pytest.param(held(OTHER, duration=60), 85.0, 100.0, Action.WAIT, id="the-lease-says-how-long"),
        pytest.param(held(OTHER, duration=None), 85.0, 100.0, Action.ACQUIRE, id="no-duration-ours-applies"),
        pytest.param(held(OTHER), None, 100.0, Action.WAIT, id="never-seen-before-waits"),
    ],
)
def test_next_action(record: Record | None, since: float | None, now: float, action: Action) -> None:
    assert next_action(record, ME, since, now, 15.0) is action


@pytest.mark.parametrize(
    ("timings", "ok"),
    [
        pytest.param(Timings(), True, id="defaults"),
        pytest.param(Timings(15, 10, 2), True, id="client-go-defaults"),
        pytest.param(Timings(15, 15, 2), False, id="renew-deadline-not-below-duration"),
        pytest.param(Timings(15, 10, 10), False, id="retry-not-below-renew-deadline"),
    ],
)
def test_timings_must_fence(timings: Timings, ok: bool) -> None:
    assert (timings.problem() is None) is ok


class Candidate:
    def __init__(self, client: KubeClient, namespace: str, identity: str, timings: Timings) -> None:
        self.started: list[float] = []
        self.stopped: list[float] = []
        self.elector = Elector(
            client,
            namespace,
            "modeldeploy",
            identity,
            timings,
            lambda: self.started.append(time.monotonic()),
            self.stop,
        )

    def stop(self) -> bool:
        self.stopped.append(time.monotonic())
        return True


def wait_until(predicate: object, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return time.monotonic()


def test_one_leader_then_a_takeover_after_the_lease_runs_out(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(admin_kubeconfig(control_plane, tmp_path / "kubeconfig")))
    timings = Timings(duration=3.0, renew_deadline=2.0, retry_period=0.5)
    a = Candidate(KubeClient(configuration()), namespace, ME, timings)
    b = Candidate(KubeClient(configuration()), namespace, OTHER, timings)
    a.elector.start()
    wait_until(lambda: a.elector.leading, 10)
    b.elector.start()
    time.sleep(3 * timings.retry_period)
    assert not b.elector.leading, "two leaders at once"
    lease = control_plane.admin.get("coordination.k8s.io/v1", "Lease", namespace, "modeldeploy")
    assert lease is not None and lease["spec"]["holderIdentity"] == ME

    # a dies without a word (its thread stops renewing, as under SIGKILL): b waits out the lease.
    died = time.monotonic()
    a.elector.stop(release=False)
    took = wait_until(lambda: b.elector.leading, 15) - died
    assert timings.duration - timings.retry_period <= took <= timings.duration + 3 * timings.retry_period, (
        took
    )
    lease = control_plane.admin.get("coordination.k8s.io/v1", "Lease", namespace, "modeldeploy")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == OTHER and lease["spec"]["leaseTransitions"] == 1
    print(f"\ntakeover {took:.1f}s after the leader stopped renewing (lease duration {timings.duration:g}s)")

    # a clean stop releases the Lease: a new candidate takes over within one retry period.
    c = Candidate(KubeClient(configuration()), namespace, "replica-c", timings)
    c.elector.start()
    time.sleep(2 * timings.retry_period)
    assert not c.elector.leading
    released = time.monotonic()
    b.elector.stop()
    handover = wait_until(lambda: c.elector.leading, 10) - released
    assert handover <= 2 * timings.retry_period + 1, handover
    c.elector.stop()
    assert a.stopped and b.stopped and c.stopped


def test_a_leader_cut_off_from_the_server_stops_writing_before_the_lease_ends(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partitioned leader: its renewals fail, so it must step down within renew_deadline, which
    is before any other replica may take the Lease (duration)."""
    monkeypatch.setenv("KUBECONFIG", str(admin_kubeconfig(control_plane, tmp_path / "kubeconfig")))
    timings = Timings(duration=3.0, renew_deadline=2.0, retry_period=0.5)
    client = KubeClient(configuration())
    a = Candidate(client, namespace, ME, timings)
    a.elector.start()
    wait_until(lambda: a.elector.leading, 10)
    cut = threading.Event()
    real_get = client.get_lease

    def partitioned(namespace: str, name: str, deadline: float | None = None) -> object:
        if cut.is_set():
            from modeldeploy.adapters.kube import KubeError

            raise KubeError(0, "ConnectTimeoutError", "cannot reach the API server: timed out")
        return real_get(namespace, name, deadline)

    client.get_lease = partitioned  # type: ignore[method-assign,assignment]
    cut_at = time.monotonic()
    cut.set()
    assert a.elector.still_leading()  # writes are still safe right after the last renewal
    stepped = wait_until(lambda: not a.elector.still_leading(), 5) - cut_at
    assert stepped <= timings.renew_deadline + 0.1, stepped  # + the polling of this test
    wait_until(lambda: bool(a.stopped), 5)
    assert not a.elector.leading
    a.elector.stop(release=False)
