"""When a promoted secondary's guest ran (``Promotion``, ``_guest_running_ms``): QEMU's own
RESUME timestamp, 0 for a guest that never stopped, None for one that did not run in time.
The failover reply carries both (README "Bulk traffic", failover stalls)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from qemu.qmp import EventListener
from qemu.qmp.message import Message

from colopp.agent import failover as failover_module
from colopp.agent.failover import Promotion, _guest_running_ms
from colopp.errors import QmpError


class FakeMonitor:
    def __init__(self, running: bool | None) -> None:
        self.running = running  # None: QEMU does not answer
        self.asked = asyncio.Event()

    async def execute(self, command: str, arguments: Any = None, timeout: float = 0) -> Any:
        assert command == "query-status"
        self.asked.set()
        if self.running is None:
            raise QmpError(command, "no answer in 2.0s")
        return {"running": self.running, "status": "running" if self.running else "paused"}


class FakeSide:
    def __init__(self, running: bool | None) -> None:
        self.monitor = FakeMonitor(running)


def resume_at(seconds: float) -> Message:
    whole = int(seconds)
    return Message(
        {
            "event": "RESUME",
            "timestamp": {"seconds": whole, "microseconds": round((seconds - whole) * 1e6)},
        }
    )


def test_a_resume_seen_during_the_steps_counts_from_its_own_timestamp() -> None:
    async def main() -> float | None:
        listener = EventListener(["RESUME"])
        await listener.put(resume_at(1000.0065))
        return await _guest_running_ms(FakeSide(running=True), listener, started=1000.0)  # type: ignore[arg-type]

    assert asyncio.run(main()) == pytest.approx(6.5, abs=0.01)


def test_a_guest_that_never_stopped_ran_at_once() -> None:
    async def main() -> float | None:
        listener = EventListener(["RESUME"])
        return await _guest_running_ms(FakeSide(running=True), listener, started=1000.0)  # type: ignore[arg-type]

    assert asyncio.run(main()) == 0.0


def test_a_stopped_guest_is_waited_for_until_qemu_resumes_it() -> None:
    async def main() -> float | None:
        listener = EventListener(["RESUME"])
        side = FakeSide(running=False)
        waiting = asyncio.create_task(_guest_running_ms(side, listener, started=1000.0))  # type: ignore[arg-type]
        await asyncio.wait_for(side.monitor.asked.wait(), 5)  # answered "paused"
        assert not waiting.done()
        await listener.put(resume_at(1000.25))
        return await waiting

    assert asyncio.run(main()) == pytest.approx(250.0, abs=0.01)


@pytest.mark.parametrize("running", [False, None])
def test_a_guest_that_does_not_run_in_time_is_reported_as_none(
    running: bool | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(failover_module, "GUEST_RUNNING_WAIT_S", 0.01)

    async def main() -> float | None:
        listener = EventListener(["RESUME"])
        return await _guest_running_ms(FakeSide(running), listener, started=1000.0)  # type: ignore[arg-type]

    assert asyncio.run(main()) is None


def test_the_timeline_puts_qemus_resume_among_the_steps() -> None:
    promotion = Promotion(started=100.0, guest_running_ms=6.0)
    promotion.steps += [("yank", 100.002), ("x-colo-lost-heartbeat", 100.008), ("qom-set", 100.03)]
    names = [name for name, _ in promotion.timeline_ms()]
    assert names == ["yank", "RESUME", "x-colo-lost-heartbeat", "qom-set"]
    assert promotion.timeline_ms()[0][1] == pytest.approx(2.0)
    # A guest that never stopped has no RESUME to show.
    assert "RESUME" not in [
        n for n, _ in Promotion(started=1.0, guest_running_ms=0.0).timeline_ms()
    ]
