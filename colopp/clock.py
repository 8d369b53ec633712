"""Time as colopp's timers use it: the real clock, or a fake that jumps (tests).

The supervisor's heartbeat loop, the controller's fence and the agent's lease watchdog
take a :class:`Clock`, so their timer logic is tested with :class:`FakeClock` without
sleeping (like trio's ``MockClock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol


class Clock(Protocol):
    """Time as the controller uses it."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait for ``event`` at most ``timeout`` seconds; True if it is set."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return event.is_set()


class FakeClock:
    """A clock that jumps: every sleep or wait advances time at once (then yields once,
    so other tasks run). ``limit`` bounds a runaway test (ClockLimit past it)."""

    def __init__(self, start: float = 1000.0, wall: float = 1.7e9, limit: float = 3600.0) -> None:
        self.now = start
        self._wall_offset = wall - start
        self._limit = start + limit

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now + self._wall_offset

    def advance(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        if self.now > self._limit:
            raise ClockLimit(f"fake clock ran past {self._limit:.0f}")

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if not event.is_set():
            self.advance(timeout)
            await asyncio.sleep(0)
        return event.is_set()


class ClockLimit(AssertionError):
    """A FakeClock ran past its limit (a test that never reached its condition)."""
