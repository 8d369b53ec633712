"""The agent's hold on the right to serve: fencing a real process (a stand-in for QEMU)."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from colopp.agent.serving import ServingRight
from colopp.arbiter.right import FenceAction
from colopp.clock import FakeClock
from colopp.errors import ConfigError, NotAcquired, StaleToken, StateError
from colopp.qemu.qemu_process import QemuProcess
from tests.unit.arbiter.scripted_etcd import ScriptedEtcd, T


@dataclass
class FakeComparator:
    killed: bool = False

    def kill(self) -> None:
        self.killed = True


@dataclass
class StandIn:
    process: QemuProcess
    comparator: FakeComparator | None


def proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


async def settled_state(pid: int, wanted: str, within: float = 5.0) -> str:
    """The process state once it is ``wanted`` (a signal takes effect when the target is
    next scheduled), or the last state seen at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    state = proc_state(pid)
    while state != wanted and loop.time() < deadline:
        await asyncio.sleep(0.01)
        state = proc_state(pid)
    return state


def test_cut_off_from_etcd_the_side_stops_then_dies_before_its_lease_ends(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock(start=0.0)
        etcd = ScriptedEtcd(clock)
        process = QemuProcess(["sleep", "600"], {}, tmp_path)
        await process.start()
        side = StandIn(process, FakeComparator())
        states: list[str] = []
        right = ServingRight(lambda: side, clock, lambda urls, timeout: etcd)
        original = right.fence

        async def fence(action: FenceAction) -> None:
            await original(action)
            assert process.pid is not None
            states.append(await settled_state(process.pid, "T") if process.alive() else "gone")

        right.fence = fence  # type: ignore[method-assign]
        try:
            held = await right.hold_right(["http://198.18.0.1:2379"], "colopp/protection/web")
            assert held["token"] == 11
            assert (await right.right_status())["may_release"] is True
            with pytest.raises(StateError, match="already holds"):
                await right.hold_right(["http://198.18.0.1:2379"], "colopp/protection/web")
            expiry_at_etcd = etcd.leases[right.keeper.lease]  # type: ignore[union-attr]
            etcd.cut = True
            assert right.keeper is not None
            await asyncio.wait_for(right.keeper.done.wait(), 10)
            # Stopped (SIGSTOP: state T) with the comparator killed, then SIGKILLed and reaped.
            assert states == ["T", "gone"]
            assert side.comparator is not None and side.comparator.killed
            assert process.returncode == -signal.SIGKILL
            assert clock.monotonic() + T.fence_budget <= expiry_at_etcd
            status = await right.right_status()
            assert status["state"] == "fenced" and not status["may_release"]
        finally:
            process.kill()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"endpoints": "http://x", "key": "colopp/p"}, ConfigError),
        ({"endpoints": ["http://x"], "key": "/etc/passwd"}, ConfigError),
        ({"endpoints": ["http://x"], "key": "colopp/p", "ttl": "3"}, ConfigError),
        ({"endpoints": ["http://x"], "key": "colopp/p", "ttl": 1}, ConfigError),
    ],
)
def test_bad_hold_requests_are_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    async def scenario() -> None:
        etcd = ScriptedEtcd(FakeClock())
        right = ServingRight(lambda: None, FakeClock(), lambda urls, timeout: etcd)
        with pytest.raises(error):
            await right.hold_right(**kwargs)
        assert right.keeper is None and not etcd.log

    asyncio.run(scenario())


def test_a_second_side_cannot_take_a_held_right_and_release_lets_it() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        etcd = ScriptedEtcd(clock)
        a = ServingRight(lambda: None, clock, lambda urls, timeout: etcd)
        b = ServingRight(lambda: None, clock, lambda urls, timeout: etcd)
        first = await a.hold_right(["http://e"], "colopp/protection/web")
        with pytest.raises(NotAcquired):
            await b.hold_right(["http://e"], "colopp/protection/web")
        assert (await a.release_right())["state"] == "released"
        second = await b.hold_right(["http://e"], "colopp/protection/web")
        assert second["token"] > first["token"]
        await b.release_right()

    asyncio.run(scenario())


def test_a_command_to_serve_needs_this_sides_current_token() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        etcd = ScriptedEtcd(clock)
        a = ServingRight(lambda: None, clock, lambda urls, timeout: etcd)
        b = ServingRight(lambda: None, clock, lambda urls, timeout: etcd)
        served: list[dict[str, Any]] = []

        async def failover(**params: Any) -> dict[str, Any]:
            served.append(params)
            return {"took_ms": 1.0}

        guarded_a, guarded_b = a.guard(failover), b.guard(failover)
        with pytest.raises(StaleToken, match="holds no right"):
            await guarded_b(right_token=5)
        old = (await a.hold_right(["http://e"], "colopp/protection/web"))["token"]
        await guarded_a(right_token=old)
        await a.release_right()
        new = (await b.hold_right(["http://e"], "colopp/protection/web"))["token"]
        # The old holder, released, refuses its own old token; the new one refuses it too.
        with pytest.raises(StaleToken, match="holds no right"):
            await guarded_a(right_token=old)
        with pytest.raises(StaleToken, match=f"not this side's right .*token {new}"):
            await guarded_b(right_token=old)
        with pytest.raises(ConfigError):
            await guarded_b(right_token="1")
        await guarded_b(right_token=new)
        await guarded_b()  # single-controller mode: no token, no check
        assert served == [{}, {}, {}]
        await b.release_right()

    asyncio.run(scenario())


def test_unsafe_no_fence_loses_the_right_but_leaves_the_side_running(tmp_path: Path) -> None:
    """The tests-only control: the bookkeeping runs (the right lapses), nothing is fenced."""

    async def scenario() -> None:
        clock = FakeClock(start=0.0)
        etcd = ScriptedEtcd(clock)
        process = QemuProcess(["sleep", "600"], {}, tmp_path)
        await process.start()
        side = StandIn(process, FakeComparator())
        right = ServingRight(lambda: side, clock, lambda urls, timeout: etcd)
        try:
            await right.hold_right(["http://e"], "colopp/protection/web", unsafe_no_fence=True)
            etcd.cut = True
            assert right.keeper is not None
            await asyncio.wait_for(right.keeper.done.wait(), 10)
            status = await right.right_status()
            assert status["state"] == "fenced" and not status["may_release"]
            assert process.alive() and process.pid is not None
            assert proc_state(process.pid) != "T"  # never stopped
            assert side.comparator is not None and not side.comparator.killed
            with pytest.raises(ConfigError):
                await ServingRight(lambda: None, clock, lambda u, t: etcd).hold_right(
                    ["http://e"], "colopp/protection/x", unsafe_no_fence="yes"
                )
        finally:
            process.kill()
            await asyncio.wait_for(process.exited.wait(), 10)  # reaped before the loop ends

    asyncio.run(scenario())
