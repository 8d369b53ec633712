"""The agent's live protection against a scripted QEMU: plan order, QEMU's transitions
waited for, and the timeline it reports (no processes, no sleeping)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from colopp.agent.live_protect import live_reprotect
from colopp.agent.side import Side
from colopp.colo.sequence import attach_replication
from colopp.domain import ComparatorKind, ProtectionOptions, Role, SideSpec, VmSpec


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
        return await live_reprotect(_side(qemu), "10.0.0.2", plumbing, 2000, 5.0, comparator)

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
