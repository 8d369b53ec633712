"""The agent's live protection against a scripted QEMU: plan order, QEMU's transitions
waited for, and the timeline it reports (no processes, no sleeping)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from colopp.agent.live_protect import live_reprotect
from colopp.agent.side import Side
from colopp.colo.converge import LiveBudget
from colopp.colo.sequence import attach_replication
from colopp.domain import ComparatorKind, ProtectionOptions, Role, SideSpec, VmSpec
from colopp.errors import QemuStartError, QmpError, QmpTimeout


class Listener:
    def __init__(self, names: list[str]) -> None:
        self.names = set(names)
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.history: list[dict[str, Any]] = []

    def put(self, event: dict[str, Any]) -> None:
        if event["event"] in self.names:
            self.history.append(event)
            self.queue.put_nowait(event)

    async def get(self) -> dict[str, Any]:
        return await self.queue.get()


class ScriptedQemu:
    """Answers the live plan's commands and emits what QEMU would."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.listeners: list[Listener] = []
        self.clock = 1000.0

    def _emit(self, name: str, **data: Any) -> None:
        self.clock = time.time()
        stamp = {"seconds": int(self.clock), "microseconds": int(self.clock % 1 * 1e6)}
        for listener in self.listeners:
            listener.put({"event": name, "data": data, "timestamp": stamp})

    def listen(self, names: list[str]) -> Listener:
        listener = Listener(names)
        self.listeners.append(listener)
        return listener

    def unlisten(self, listener: Listener) -> None:
        self.listeners.remove(listener)

    async def hmp(self, line: str) -> str:
        self.commands.append(line.split(maxsplit=1)[0])
        return ""

    async def execute(self, command: str, arguments: dict[str, Any] | None = None, **_: Any) -> Any:
        self.commands.append(command)
        if command == "query-block-jobs":
            return [{"device": "resync", "ready": True}]
        if command == "query-chardev":
            return [{"label": "mirror0", "filename": "tcp:a <-> b"},
                    {"label": "compare1", "filename": "tcp:a <-> c"}]  # fmt: skip
        if command == "migrate":
            self._emit("MIGRATION", status="active")
            self._emit("STOP")
            self._emit("MIGRATION", status="pre-switchover")
        elif command == "block-job-cancel":
            self._emit("BLOCK_JOB_COMPLETED", device="resync")
        elif command == "migrate-continue":
            self._emit("MIGRATION", status="device")
            self._emit("MIGRATION", status="colo")
            self._emit("RESUME")
        elif command == "query-migrate":
            return {"status": "colo", "downtime": 42}
        return {}


def _side(qemu: ScriptedQemu) -> Side:
    spec = SideSpec(
        Role.PRIMARY,
        Path("/run/t"),
        "tap0",
        Path("/run/t/disk.qcow2"),
        "10.0.0.1",
        "10.0.0.2",
        options=ProtectionOptions(comparator=ComparatorKind.BUILTIN),
    )
    vm = VmSpec("t", None, None, "")
    return Side(vm, spec, process=None, monitor=qemu)  # type: ignore[arg-type]


def test_the_first_protection_runs_the_live_plan_and_reports_when_the_guest_ran() -> None:
    qemu = ScriptedQemu()
    started: list[str] = []

    async def comparator() -> None:
        started.append("comparator")

    async def run() -> dict[str, Any]:
        plumbing = attach_replication("10.0.0.2", _side(qemu).spec.ports)
        return await live_reprotect(
            _side(qemu), "10.0.0.2", plumbing, 2000, LiveBudget(), comparator
        )

    result = asyncio.run(run())
    cmds = qemu.commands
    assert started == ["comparator"]
    assert cmds.index("drive-mirror") < cmds.index("migrate") < cmds.index("block-job-cancel")
    assert cmds.index("block-job-cancel") < cmds.index("drive_add") < cmds.index("migrate-continue")
    assert cmds.index("x-blockdev-change") < cmds.index("migrate-continue")
    names = [name for name, _ in result["timeline"]]
    assert names[0] == "start" and names.count("qemu:STOP") == names.count("qemu:RESUME") == 1
    assert names.index("<pre-switchover>") < names.index("migrate-continue")
    assert names.index("migrate-continue") < names.index("qemu:RESUME")
    times = [at for _, at in result["timeline"]]
    assert times == sorted(times)
    assert result["downtime_ms"] == 42.0


class NonConvergingQemu(ScriptedQemu):
    """A pre-copy that never converges on its own: QEMU reaches ``pre-switchover`` only
    once it may stop the guest for as long as it needs (the stop-and-copy stage's
    parameters), or never (``stuck``). ``migrate_cancel`` ends the migration."""

    def __init__(self, stuck: bool = False) -> None:
        super().__init__()
        self.stuck = stuck
        self.status = "none"
        self.running = True
        self.mirror = True

    async def execute(self, command: str, arguments: dict[str, Any] | None = None, **_: Any) -> Any:
        args = arguments or {}
        if command == "migrate":
            self.commands.append(command)
            self.status = "active"
            self._emit("MIGRATION", status="active")
            return {}
        if command == "migrate-set-parameters" and args.get("avail-switchover-bandwidth"):
            self.commands.append(f"{command}:stop-and-copy")
            if not self.stuck:
                self.running = False
                self._emit("STOP")
                self._emit("MIGRATION", status="pre-switchover")
            return {}
        if command == "migrate_cancel":
            self.commands.append(command)
            self.status = "cancelled"
            return {}
        if command == "block-job-cancel" and args.get("force"):
            self.commands.append("block-job-cancel:force")
            self.mirror = False
            return {}
        if command == "query-block-jobs":
            self.commands.append(command)
            return [{"device": "resync", "ready": True}] if self.mirror else []
        if command == "query-migrate" and self.status != "colo":
            self.commands.append(command)
            ram = {"remaining": 1 << 20, "mbps": 1.0, "dirty-sync-count": 1}
            return {"status": self.status, "ram": ram}
        if command == "query-status":
            self.commands.append(command)
            return {"running": self.running, "status": "running" if self.running else "paused"}
        if command == "cont":
            self.running = True
        if command == "migrate-continue":
            self.status = "colo"
        return await super().execute(command, arguments)


FAST = LiveBudget(widen_s=0.05, stop_s=0.1, give_up_s=0.6, per_gib_s=1e-6)


async def _protect(qemu: ScriptedQemu, budget: LiveBudget) -> dict[str, Any]:
    async def comparator() -> None:
        pass

    plumbing = attach_replication("10.0.0.2", _side(qemu).spec.ports)
    return await live_reprotect(_side(qemu), "10.0.0.2", plumbing, 2000, budget, comparator)


def test_a_precopy_that_does_not_converge_finishes_by_stop_and_copy() -> None:
    qemu = NonConvergingQemu()
    started = time.monotonic()
    result = asyncio.run(_protect(qemu, FAST))
    assert time.monotonic() - started < FAST.give_up_s
    assert [stage for stage, _ in result["fallbacks"]] == ["widen", "stop-and-copy"]
    assert result["stage"] == "stop-and-copy"
    cmds = qemu.commands
    # Widened first (a working set that fits a longer pause), then QEMU's stop-and-copy;
    # the switch then goes on exactly as in a converged pre-copy.
    widen = cmds.index("migrate-set-parameters", cmds.index("migrate"))
    assert widen < cmds.index("migrate-set-parameters:stop-and-copy")
    assert cmds.index("migrate-set-parameters:stop-and-copy") < cmds.index("block-job-cancel")
    assert cmds.index("block-job-cancel") < cmds.index("migrate-continue")
    assert "stop" not in cmds and "migrate_cancel" not in cmds


def test_a_copy_that_never_finishes_is_cancelled_and_the_guest_runs_on() -> None:
    qemu = NonConvergingQemu(stuck=True)
    started = time.monotonic()
    with pytest.raises(QmpTimeout, match="not even by stop-and-copy") as caught:
        asyncio.run(_protect(qemu, FAST))
    assert time.monotonic() - started < FAST.give_up_s + 5.0
    assert "bytes of RAM left" in str(caught.value)
    cmds = qemu.commands
    after = cmds[cmds.index("migrate-set-parameters:stop-and-copy") :]
    assert after.index("migrate_cancel") < after.index("block-job-cancel:force")
    assert "migrate-continue" not in cmds
    assert qemu.status == "cancelled" and not qemu.mirror and qemu.running


def test_a_mirror_that_ends_before_it_is_ready_is_an_error() -> None:
    qemu = NonConvergingQemu()
    qemu.mirror = False
    with pytest.raises(QmpError, match="ended before it was ready"):
        asyncio.run(_protect(qemu, FAST))
    assert "migrate" not in qemu.commands and "migrate_cancel" in qemu.commands


def test_a_comparator_that_does_not_start_cancels_the_mirror() -> None:
    qemu = NonConvergingQemu()

    async def comparator() -> None:
        raise QemuStartError("colopp-compare exited at once")

    async def run() -> dict[str, Any]:
        plumbing = attach_replication("10.0.0.2", _side(qemu).spec.ports)
        return await live_reprotect(_side(qemu), "10.0.0.2", plumbing, 2000, FAST, comparator)

    with pytest.raises(QemuStartError):
        asyncio.run(run())
    assert "block-job-cancel:force" in qemu.commands and not qemu.mirror
    assert "migrate" not in qemu.commands
