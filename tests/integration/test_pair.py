"""A real COLO pair on the lab: COLO on both sides, failover keeps connections and writes,
teardown leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netns_client import NetnsHTTPConnection
from rich.console import Console

from colopp.colo.state import PairState
from colopp.controller.local import processes_in_netns
from colopp.controller.pair import PairController
from colopp.controller.setup import LocalPair, prepare_local_pair
from colopp.domain import ComparatorKind, Role
from colopp.lab import Node

PREFIX = "clpint"


class PairHarness:
    """An event loop in this thread driving a LocalPair and its PairController."""

    def __init__(self, local: LocalPair, loop: asyncio.AbstractEventLoop) -> None:
        self.local = local
        self.loop = loop
        self.pair = PairController(local.config, local.deployment.agents)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def status(self) -> dict[str, Any]:
        return self.run(self.pair.status())

    @property
    def client_netns(self) -> str:
        return self.local.deployment.plan.netns(Node.CLIENT)

    @property
    def guest_ip(self) -> str:
        return str(self.local.deployment.plan.guest_address.ip)

    def http(self) -> NetnsHTTPConnection:
        return NetnsHTTPConnection(self.client_netns, self.guest_ip)


@pytest.fixture(scope="module", params=[ComparatorKind.BUILTIN, ComparatorKind.COLOPP], ids=str)
def harness(
    qemu_root: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[PairHarness]:
    loop = asyncio.new_event_loop()
    state_dir = tmp_path_factory.mktemp("pair")
    local = loop.run_until_complete(
        prepare_local_pair(state_dir, qemu_root, request.param, Console(quiet=True), prefix=PREFIX)
    )
    loop.run_until_complete(local.deployment.start())
    harness = PairHarness(local, loop)
    try:
        harness.run(harness.pair.protect())
        yield harness
    finally:
        harness.run(harness.pair.stop())
        harness.run(local.deployment.stop())
        loop.close()


def test_colo_state_reached_on_both_sides(harness: PairHarness) -> None:
    sides = harness.status()["sides"]
    assert sides["hosta"]["colo"]["mode"] == "primary"
    assert sides["hostb"]["colo"]["mode"] == "secondary"
    assert harness.pair.state is PairState.PROTECTED


def test_checkpoints_happen_while_protected(harness: PairHarness) -> None:
    agent = harness.pair.agents["hosta"]
    first = harness.run(agent.call("status"))["checkpoints"]
    deadline = time.monotonic() + 20
    while harness.run(agent.call("status"))["checkpoints"] <= first:
        assert time.monotonic() < deadline, "no periodic checkpoint in 20 s"
        harness.run(asyncio.sleep(0.2))  # polling QEMU's counter, which has no push
    pauses = harness.run(agent.call("status"))["checkpoint_pauses_ms"]
    assert pauses and max(pauses[1:] or pauses) < 2000


def test_nondeterministic_answers_force_checkpoints(harness: PairHarness) -> None:
    agent = harness.pair.agents["hosta"]
    before = harness.run(agent.call("status"))
    conn = harness.http()
    try:
        answers = [conn.call("GET", "/random") for _ in range(5)]
    finally:
        conn.close()
    assert all(status == 200 and len(body.split()[0]) == 32 for status, body in answers)
    assert len({body for _, body in answers}) == 5
    after = harness.run(agent.call("status"))
    # Each differing answer needs a checkpoint before the client may see it.
    assert after["checkpoints"] >= before["checkpoints"] + 1
    if harness.local.config.options.comparator is ComparatorKind.COLOPP:
        old = before["comparator"]["counters"].get("divergences", {}).get("tcp_payload_mismatch", 0)
        deadline = time.monotonic() + 5
        while True:  # the comparator rewrites its status file every 0.5 s
            now = harness.run(agent.call("status"))["comparator"]
            if now["counters"].get("divergences", {}).get("tcp_payload_mismatch", 0) > old:
                break
            assert time.monotonic() < deadline, f"no divergence counted: {now['counters']}"
            harness.run(asyncio.sleep(0.1))
        assert now["alive"] and now["restarts"] == 0


def test_comparator_crash_is_detected_and_service_continues(harness: PairHarness) -> None:
    if harness.local.config.options.comparator is not ComparatorKind.COLOPP:
        pytest.skip("QEMU's built-in colo-compare runs inside QEMU")
    agent = harness.pair.agents["hosta"]
    conn = harness.http()
    try:
        assert conn.call("PUT", "/kv/before-crash", b"1")[0] == 200
        killed = harness.run(agent.call("kill_comparator"))
        deadline = time.monotonic() + 10
        while True:  # the agent's supervisor restarts it
            comparator = harness.run(agent.call("status"))["comparator"]
            if comparator["restarts"] == 1 and comparator["alive"]:
                break
            assert time.monotonic() < deadline, comparator
            harness.run(asyncio.sleep(0.1))
        assert comparator["pid"] != killed["pid"]
        # The same connection keeps working through the new comparator.
        assert conn.call("PUT", "/kv/after-crash", b"2")[0] == 200
        assert conn.call("GET", "/kv/before-crash") == (200, b"1")
        assert conn.reconnects == 0
    finally:
        conn.close()


def test_failover_keeps_connection_and_acknowledged_writes(harness: PairHarness) -> None:
    conn = harness.http()
    try:
        check_failover_keeps(harness, conn)
    finally:
        conn.close()


def check_failover_keeps(harness: PairHarness, conn: NetnsHTTPConnection) -> None:
    writes = {}
    for i in range(20):
        key, value = f"before-{i}", f"v{i}-" + "z" * i
        assert conn.call("PUT", f"/kv/{key}", value.encode())[0] == 200
        status, _ = conn.call("GET", f"/kv/{key}")
        assert status == 200
        writes[key] = value
    status, body = conn.call("POST", "/counter", b"")
    assert status == 200
    counter_before = int(body)
    primary_pid = harness.status()["sides"]["hosta"]["pid"]

    os.kill(primary_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while harness.run(harness.pair.agents["hosta"].call("ping"))["vm_alive"]:
        assert time.monotonic() < deadline
    harness.run(harness.pair.failover(Role.PRIMARY))
    assert harness.pair.state is PairState.FAILED_OVER
    assert harness.pair.primary.name == "hostb"

    # The same TCP connection, opened before the failover, keeps working.
    status, body = conn.call("POST", "/counter", b"")
    assert status == 200 and int(body) == counter_before + 1
    for key, value in writes.items():
        assert conn.call("GET", f"/kv/{key}") == (200, value.encode())
    assert conn.call("PUT", "/kv/after", b"post-failover")[0] == 200
    assert conn.reconnects == 0
    sides = harness.status()["sides"]
    assert sides["hostb"]["colo"]["mode"] == "none"
    assert sides["hostb"]["colo"]["last-mode"] == "secondary"


def test_teardown_leaves_nothing_behind(harness: PairHarness) -> None:
    deployment = harness.local.deployment
    qemu_pids = [s.get("pid") for s in harness.status()["sides"].values() if s.get("pid")]
    harness.run(harness.pair.stop())
    harness.run(deployment.stop())
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert PREFIX not in namespaces.stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    assert f"{PREFIX}-" not in links.stdout
    for pid in qemu_pids:
        assert not Path(f"/proc/{pid}").exists(), f"QEMU {pid} survived teardown"
    for netns in deployment.plan.namespaces:
        assert processes_in_netns(netns) == []
