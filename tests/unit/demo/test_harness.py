"""SupervisedPair.close tears everything down even when the supervisor loop died."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from colopp.demo.harness import SupervisedPair


class Recorder:
    def __init__(self, calls: list[str], name: str) -> None:
        self.calls, self.name = calls, name

    async def stop(self) -> None:
        self.calls.append(self.name)


class DeadSupervisor:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    async def run(self) -> None:
        raise KeyError("hosta")  # what a supervisor without heartbeat clients died of

    def stop(self) -> None:
        self.calls.append("supervisor.stop")

    async def close(self) -> None:
        self.calls.append("supervisor.close")


def test_close_stops_pair_and_lab_after_a_supervisor_error() -> None:
    calls: list[str] = []
    sp: Any = object.__new__(SupervisedPair)
    sp.supervisor = DeadSupervisor(calls)
    sp.pair = Recorder(calls, "pair.stop")
    sp.local = SimpleNamespace(deployment=Recorder(calls, "deployment.stop"))

    async def run() -> None:
        sp._task = asyncio.get_running_loop().create_task(sp.supervisor.run())
        await asyncio.wait([sp._task])  # the supervisor loop has died
        await sp.close()

    with pytest.raises(KeyError):
        asyncio.run(run())
    assert calls == ["supervisor.stop", "supervisor.close", "pair.stop", "deployment.stop"]
