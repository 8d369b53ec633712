"""Arbitration against a real 3-member etcd: a cut-off holder fences before the other side
can take over; the follower controller replica leads within 5 s of the leader's SIGKILL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.etcd_lab import (
    SUBNET,
    EtcdCluster,
    Events,
    Member,
    cut,
    delete_netns_lab,
    free_port,
    make_netns_lab,
    need_etcd,
)

HOSTS = ["f21h1", "f21h2", "f21h3"]
TTL = 3
FENCE_AFTER = TTL * 0.99 / 1.01 - 0.5 - 0.05  # LeaseTiming(ttl=3).fence_after


@pytest.fixture
def loopback_etcd(needs_root: None, tmp_path: Path) -> Iterator[EtcdCluster]:
    need_etcd()
    members = [Member(f"m{i}", "127.0.0.1", free_port(), free_port()) for i in range(3)]
    cluster = EtcdCluster(members, tmp_path)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def netns_etcd(needs_root: None, tmp_path: Path) -> Iterator[EtcdCluster]:
    need_etcd()
    make_netns_lab(HOSTS)
    members = [Member(f"m{i}", f"{SUBNET}.{i}", 2379, 2380, ns) for i, ns in enumerate(HOSTS, 1)]
    cluster = EtcdCluster(members, tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        delete_netns_lab(HOSTS)


def test_a_holder_cut_off_from_the_etcd_majority_fences_before_the_other_side_serves(
    netns_etcd: EtcdCluster,
) -> None:
    m1, m2, _ = netns_etcd.members
    key = ["--key", "colopp/protection/web", "--ttl", str(TTL)]
    a = Events(["hold", "--endpoint", m1.client_url, "--name", "hosta", *key], m1.netns)
    b = None
    try:
        got_a = a.wait_for("acquired", timeout=60)
        b = Events(["hold", "--endpoint", m2.client_url, "--name", "hostb", *key], m2.netns)
        b.wait_for("started", timeout=30)
        cut_at = time.monotonic()
        cut(1)  # hosta and its etcd member lose the majority
        stop = a.wait_for("stop-output", timeout=30)
        kill = a.wait_for("kill-qemu", timeout=30)
        a.wait_for("fenced", timeout=30)
        got_b = b.wait_for("acquired", timeout=60)
    finally:
        a.kill()
        if b is not None:
            b.kill()
    seen = f"cut at {cut_at}; hosta saw {a.seen}; hostb saw {b.seen if b else None}"
    # hosta stopped output at most one renew's reach after the cut, well inside its lease...
    assert stop["t"] - cut_at <= FENCE_AFTER + 0.5, seen  # scheduling slack, loaded machine
    # ...was dead before hostb got the right, and hostb's token is newer.
    assert kill["t"] < got_b["t"], seen
    assert got_b["token"] > got_a["token"], seen
    print(f"cut->stop {stop['t'] - cut_at:.2f}s, kill->other side {got_b['t'] - kill['t']:.2f}s")


def test_the_follower_replica_leads_within_5s_of_the_leaders_sigkill(
    loopback_etcd: EtcdCluster,
) -> None:
    urls = [a for m in loopback_etcd.members for a in ("--endpoint", m.client_url)]
    r1 = Events(["elect", "--name", "r1", "--ttl", str(TTL), *urls])
    r2 = None
    try:
        first = r1.wait_for("elected", timeout=60)
        r2 = Events(["elect", "--name", "r2", "--ttl", str(TTL), *urls])
        r2.wait_for("started", timeout=30)
        killed_at = time.monotonic()
        r1.kill()  # SIGKILL: no revoke, the lease must expire at etcd
        second = r2.wait_for("elected", timeout=30)
    finally:
        r1.kill()
        if r2 is not None:
            r2.kill()
    takeover = second["t"] - killed_at
    print(f"takeover_s {takeover:.2f}")
    seen = f"killed at {killed_at}; r2 saw {r2.seen if r2 else None}"
    assert second["token"] > first["token"], seen
    assert takeover <= 5.0, seen


def test_an_agent_side_cut_off_from_etcd_is_stopped_and_killed_before_the_other_serves(
    netns_etcd: EtcdCluster,
) -> None:
    """The agent's own fencing (colopp.agent.serving) on a real process, real etcd."""
    m1, m2, _ = netns_etcd.members
    key = ["--key", "colopp/protection/db"]
    side = "tests.integration.fleet_side"
    a = Events(["--endpoint", m1.client_url, *key], m1.netns, module=side)
    b = None
    try:
        got_a = a.wait_for("acquired", timeout=60)
        b = Events(["--endpoint", m2.client_url, *key], m2.netns, module=side)
        b.wait_for("started", timeout=30)
        cut_at = time.monotonic()
        cut(1)
        stopped = a.wait_for("stopped", timeout=30)
        killed = a.wait_for("killed", timeout=30)
        fenced = a.wait_for("fenced", timeout=30)
        got_b = b.wait_for("acquired", timeout=60)
    finally:
        a.kill()
        if b is not None:
            b.kill()
    seen = f"cut at {cut_at}; hosta saw {a.seen}; hostb saw {b.seen if b else None}"
    assert stopped["alive"] is True and killed["alive"] is False, seen  # SIGSTOP, then reaped
    assert fenced["state"] == "fenced" and fenced["may_release"] is False, seen
    assert stopped["t"] - cut_at <= FENCE_AFTER + 0.5, seen  # scheduling slack, loaded machine
    assert killed["t"] < got_b["t"] and got_b["token"] > got_a["token"], seen
    print(
        f"agent side: cut->stopped {stopped['t'] - cut_at:.2f}s, killed->other {got_b['t'] - killed['t']:.2f}s"
    )
