"""Wait for a state another process or task owns: the one polling loop.

Some state can only be looked at, not waited on: a row another process writes, a QEMU
another program started, a supervisor's task on another loop. :func:`wait_until` and
:func:`await_until` look every ``period`` seconds until ``check()`` returns something
truthy, and fail after ``timeout`` seconds with a message naming what was awaited.
(Anything that can be waited on, an event, a future, a socket, is waited on instead.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _timed_out(what: str, last: object, describe: Callable[[], object] | None) -> TimeoutError:
    seen = describe() if describe is not None else last
    return TimeoutError(f"timed out waiting for {what} (last: {seen!r})")


def wait_until(
    what: str,
    check: Callable[[], T],
    timeout: float,
    period: float = 0.1,
    *,
    describe: Callable[[], object] | None = None,
) -> T:
    """``check()``'s first truthy result, looked at every ``period`` s (at least once).

    Raises:
        TimeoutError: none within ``timeout`` s; its message names ``what`` and the last
            result (or ``describe()``).
    """
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise _timed_out(what, last, describe)
        time.sleep(period)  # the state lives elsewhere: look again


async def await_until(
    what: str,
    check: Callable[[], T],
    timeout: float,
    period: float = 0.1,
    *,
    describe: Callable[[], object] | None = None,
) -> T:
    """:func:`wait_until` on an event loop (the loop runs on while it waits)."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise _timed_out(what, last, describe)
        await asyncio.sleep(period)  # the state lives in other tasks: look again
