"""The supervisor's exact lifecycle path for each verdict and role, switchover and the lease
self-fence: scripted agents, a fake clock, no processes, no sleeping."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from colopp.agent.lease import LeaseView, LeaseWatchdog
from colopp.clock import FakeClock
from colopp.colo.state import PairState
from colopp.controller.health import DetectorConfig
from colopp.controller.pair import PairController
from colopp.controller.seam import ScriptedAgent
from colopp.controller.supervisor import PairSupervisor
from colopp.domain import HostSlot, PairConfig, VmSpec
from colopp.errors import AgentError

P = PairState
PROTECT = [P.NEW, P.LAUNCHING, P.SYNCING, P.PROTECTED]
FAILOVER = [P.FAILING_OVER, P.FAILED_OVER]
REPROTECT = [P.LAUNCHING, P.SYNCING, P.PROTECTED]
FAULT_AT = 5.0  # seconds of fake time after the pair is protected
LEASE = 1.0


@dataclass
class SimHost:
    """One host as its agent would report it; ``fault`` applies at ``fault_at``."""

    name: str
    clock: FakeClock
    peer: SimHost | None = None
    vm_alive: bool = True
    qmp_ok: bool = True
    stalled_s: float = 0.0
    reachable: bool = True
    fault: str | None = None
    fault_at: float = float("inf")
    watchdog: LeaseWatchdog | None = None
    log: list[tuple[float, str]] = field(default_factory=list)
    journal: list[tuple[str, str]] = field(default_factory=list)  # shared: both hosts' calls

    def apply_fault(self) -> None:
        if self.fault is None or self.clock.monotonic() < self.fault_at:
            return
        fault, self.fault = self.fault, None
        if fault == "dead":
            self.vm_alive = False
        elif fault == "hung":
            self.qmp_ok = False
        elif fault == "unreachable":
            self.reachable = False
        elif fault == "stalled":
            self.stalled_s = 10.0

    async def answer(self, method: str, params: dict[str, Any]) -> Any:
        self.apply_fault()
        if self.watchdog is not None:
            await self.watchdog.check()
        if not self.reachable:
            raise AgentError(f"agent {self.name} unreachable")
        self.log.append((self.clock.monotonic(), method))
        self.journal.append((self.name, method))
        if method == "ping":
            return {
                "vm_alive": self.vm_alive,
                "qmp_ok": self.qmp_ok and self.vm_alive,
                "checkpoint_stalled_s": self.stalled_s,
            }
        if method == "kill_vm":
            assert params.get("signum", int(signal.SIGKILL)) == int(signal.SIGKILL)
            self.vm_alive = False
        elif method in ("launch", "stop_vm"):
            self.vm_alive, self.qmp_ok, self.stalled_s = True, True, 0.0
        elif method == "probe_tcp":
            assert self.peer is not None
            return {"reachable": self.peer.reachable}
        return {"pid": 1, "version": "11.1.3", "runtime": "fake", "boot_s": 1.0, "took_ms": 1.0}


@dataclass
class Scene:
    clock: FakeClock
    hosts: dict[str, SimHost]
    agents: dict[str, ScriptedAgent]
    pair: PairController
    supervisor: PairSupervisor

    def run(self, until: Any) -> None:
        """Run the supervisor until ``until(scene)`` holds after an incident or a round."""

        async def main() -> None:
            await self.pair.protect()
            task = asyncio.create_task(self.supervisor.run())
            while not until(self):
                await asyncio.sleep(0)
                assert not task.done(), "the supervisor loop ended"
            self.supervisor.stop()
            await task

        asyncio.run(main())

    def calls(self, host: str) -> list[str]:
        return [m for m in self.agents[host].methods() if m != "ping"]


def scene(auto_reprotect: bool = False) -> Scene:
    clock = FakeClock(limit=120.0)
    journal: list[tuple[str, str]] = []
    a, b = SimHost("hosta", clock, journal=journal), SimHost("hostb", clock, journal=journal)
    a.peer, b.peer = b, a
    hosts = {"hosta": a, "hostb": b}
    agents = {n: ScriptedAgent(n, h.answer) for n, h in hosts.items()}
    vm = VmSpec("sim", Path("/k"), Path("/i"), "console=ttyS0")
    config = PairConfig(
        vm, Path("/d"), HostSlot("hosta", "ta", "198.18.1.2"), HostSlot("hostb", "tb", "198.18.1.3")
    )
    pair = PairController(config, agents, clock=clock)
    supervisor = PairSupervisor(
        pair,
        agents,
        DetectorConfig(),
        auto_reprotect=auto_reprotect,
        lease=LEASE,
        clock=clock,
    )
    return Scene(clock, hosts, agents, pair, supervisor)


def incident(scene: Scene) -> bool:
    return bool(scene.supervisor.incidents)


@pytest.mark.parametrize(
    ("host", "fault", "role", "fenced", "survivor"),
    [
        # primary side
        ("hosta", "dead", "primary", False, "hostb"),
        ("hosta", "hung", "primary", True, "hostb"),
        ("hosta", "unreachable", "primary", False, "hostb"),
        # a stalled checkpoint on the primary: the witness keeps the primary
        ("hosta", "stalled", "secondary", True, "hosta"),
        # secondary side
        ("hostb", "dead", "secondary", False, "hosta"),
        ("hostb", "hung", "secondary", True, "hosta"),
        ("hostb", "unreachable", "secondary", False, "hosta"),
    ],
)
def test_each_verdict_takes_its_failover_path(
    host: str, fault: str, role: str, fenced: bool, survivor: str
) -> None:
    s = scene()
    sim = s.hosts[host]
    sim.fault, sim.fault_at = fault, s.clock.monotonic() + FAULT_AT
    s.run(incident)

    assert s.pair.lifecycle.path() == PROTECT + FAILOVER
    (found,) = s.supervisor.incidents
    assert (found.role, found.host, found.error) == (role, s.pair.standby.name, None)  # type: ignore[union-attr]
    assert found.health == fault and found.fenced is fenced
    lost = "hostb" if survivor == "hosta" else "hosta"
    assert s.pair.primary.name == survivor and s.pair.standby.name == lost  # type: ignore[union-attr]
    assert s.pair.secondary is None
    # Only the survivor ran the failover sequence; only a fenced side was killed.
    assert s.calls(survivor)[-1] == "failover"
    assert "failover" not in s.calls(lost)
    assert ("kill_vm" in s.calls(lost)) is fenced
    if fenced:  # fenced, and seen gone, before the survivor took over
        journal = sim.journal
        killed = journal.index((lost, "kill_vm"))
        assert (lost, "ping") in journal[killed:]
        assert killed < journal.index((survivor, "failover"))
    # Detected within the detector's bounds (fake time), not before the fault.
    took = found.detected_at - s.clock.time() + s.clock.monotonic() - sim.fault_at
    assert 0.0 <= took <= 2 * LEASE + 1.0


def test_a_stalled_secondary_alone_is_left_to_the_primarys_checkpoints() -> None:
    """Only the primary's overdue checkpoint decides a broken replication link."""
    s = scene()
    s.hosts["hostb"].fault, s.hosts["hostb"].fault_at = "stalled", s.clock.monotonic() + 1
    s.run(lambda sc: sc.supervisor.rounds >= 200)
    assert s.pair.lifecycle.path() == PROTECT
    assert s.supervisor.incidents == []


def test_an_unreachable_primary_is_promoted_over_only_after_twice_the_lease() -> None:
    s = scene()
    a = s.hosts["hosta"]
    a.fault, a.fault_at = "unreachable", s.clock.monotonic() + FAULT_AT
    s.run(incident)
    over_at = next(t for t, m in s.hosts["hostb"].log if m == "failover")
    last_answer = max(t for t, _ in a.log)
    assert over_at - last_answer >= 2 * LEASE
    # The secondary was asked whether it still reaches the primary before it took over.
    assert "probe_tcp" in s.calls("hostb")


def test_an_unreachable_primary_that_still_has_its_peer_keeps_serving() -> None:
    """Only the controller is cut off: the secondary still reaches the primary's host."""
    s = scene()
    a = s.hosts["hosta"]
    a.fault, a.fault_at = "unreachable", s.clock.monotonic() + FAULT_AT
    b = s.hosts["hostb"]
    b.peer = SimHost("hosta-repl", s.clock)  # the replication path to hosta still works
    s.run(lambda sc: sc.clock.monotonic() > sc.hosts["hosta"].fault_at + 10 * LEASE)
    assert s.pair.lifecycle.path() == PROTECT
    assert "failover" not in s.calls("hostb")


def test_lease_self_fence_comes_before_the_promotion() -> None:
    """A partitioned primary kills its own QEMU before the controller promotes the
    secondary: two sides never serve at once."""
    s = scene()
    a = s.hosts["hosta"]
    killed: list[float] = []

    def kill() -> None:
        a.vm_alive = False
        killed.append(s.clock.monotonic())

    async def peer_reachable() -> bool:
        return a.reachable  # partitioned from the controller and from the peer alike

    a.watchdog = LeaseWatchdog(
        LEASE, s.clock, lambda: LeaseView(a.vm_alive, True), peer_reachable, kill
    )
    renew = a.answer

    async def answer(method: str, params: dict[str, Any]) -> Any:
        result = await renew(method, params)
        if method == "ping" and params.get("heartbeat"):
            assert a.watchdog is not None
            a.watchdog.last_heartbeat = s.clock.monotonic()
        return result

    s.agents["hosta"].handler = answer
    a.fault, a.fault_at = "unreachable", s.clock.monotonic() + FAULT_AT
    s.run(incident)

    assert s.pair.lifecycle.path() == PROTECT + FAILOVER
    over_at = next(t for t, m in s.hosts["hostb"].log if m == "failover")
    assert killed and a.watchdog.self_fenced
    assert a.fault_at + LEASE < killed[0] < over_at


def test_the_lease_never_fences_a_secondary_a_survivor_or_a_primary_with_its_peer() -> None:
    async def main() -> list[bool]:
        clock = FakeClock()
        results = []
        for view, peer in (
            (LeaseView(True, False), False),  # a secondary, or a primary failed over
            (LeaseView(True, True), True),  # a primary that still reaches its peer
            (LeaseView(False, True), False),  # no QEMU runs
            (LeaseView(True, True), False),  # cut off from both: fences
        ):
            fenced: list[bool] = []

            async def reach(peer: bool = peer) -> bool:
                return peer

            dog = LeaseWatchdog(
                LEASE, clock, lambda v=view: v, reach, lambda f=fenced: f.append(True)
            )
            dog.last_heartbeat = clock.monotonic()
            for _ in range(50):
                await clock.sleep(0.1)
                await dog.check()
            results.append(bool(fenced) and dog.self_fenced)
        return results

    assert asyncio.run(main()) == [False, False, False, True]


def test_switchover_path() -> None:
    s = scene()
    requested: list[bool] = []

    def until(sc: Scene) -> bool:
        if sc.supervisor.rounds == 10 and not requested:
            sc.supervisor.request_switchover()
            requested.append(True)
        return bool(sc.supervisor.incidents) and sc.pair.state is P.PROTECTED

    s.run(until)
    assert s.pair.lifecycle.path() == PROTECT + FAILOVER + REPROTECT
    (found,) = s.supervisor.incidents
    assert (found.health, found.host, found.error) == ("switchover", "hosta", None)
    assert (s.pair.primary.name, s.pair.secondary and s.pair.secondary.name) == ("hostb", "hosta")
    # The old primary is fenced first, then the secondary serves, then a new secondary.
    protected_a = ["probe_qemu", "launch", "wait_guest", "start_colo", "wait_colo"]
    protected_b = ["probe_qemu", "launch", "prepare_secondary", "wait_colo"]
    assert s.calls("hosta") == [
        *protected_a,
        "kill_vm",
        "stop_vm",
        "launch",
        "prepare_secondary",
        "wait_colo",
    ]
    assert s.calls("hostb") == [
        *protected_b,
        "failover",
        "translation_record",  # its translated connections go to the new secondary
        "resume_replication",
        "wait_colo",
    ]
    journal = s.hosts["hosta"].journal
    assert journal.index(("hosta", "kill_vm")) < journal.index(("hostb", "failover"))


def test_auto_reprotect_after_a_dead_primary() -> None:
    s = scene(auto_reprotect=True)
    a = s.hosts["hosta"]
    a.fault, a.fault_at = "dead", s.clock.monotonic() + FAULT_AT
    s.run(lambda sc: bool(sc.supervisor.incidents) and sc.pair.state is P.PROTECTED)
    assert s.pair.lifecycle.path() == PROTECT + FAILOVER + REPROTECT
    assert (s.pair.primary.name, s.pair.secondary and s.pair.secondary.name) == ("hostb", "hosta")
    (found,) = s.supervisor.incidents
    assert found.reprotect_s is not None and found.error is None


def test_a_side_that_will_not_die_is_an_error_not_a_second_server() -> None:
    s = scene()
    b = s.hosts["hostb"]
    b.fault, b.fault_at = "hung", s.clock.monotonic() + FAULT_AT
    answer = b.answer

    async def immortal(method: str, params: dict[str, Any]) -> Any:
        if method == "kill_vm":
            return {"pid": 1}
        return await answer(method, params)

    s.agents["hostb"].handler = immortal
    s.run(incident)
    (found,) = s.supervisor.incidents
    assert found.error is not None and "could not fence hostb" in found.error
    assert not found.fenced
    assert s.pair.lifecycle.path() == PROTECT
    assert "failover" not in s.calls("hosta")
