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
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")


def _looks(
    what: str, check: Callable[[], T], timeout: float, describe: Callable[[], object] | None
) -> Iterator[T | None]:
    """``check()``'s results, falsy ones as None, until a truthy one (the last yielded).

    Raises:
        TimeoutError: a falsy result past ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            yield last
            return
        if time.monotonic() >= deadline:
            seen = describe() if describe is not None else last
            raise TimeoutError(f"timed out waiting for {what} (last: {seen!r})")
        yield None


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
    for got in _looks(what, check, timeout, describe):
        if got is not None:
            return got
        time.sleep(period)  # the state lives elsewhere: look again
    raise AssertionError("unreachable")  # _looks ends on a result or raises


async def await_until(
    what: str,
    check: Callable[[], T],
    timeout: float,
    period: float = 0.1,
    *,
    describe: Callable[[], object] | None = None,
) -> T:
    """:func:`wait_until` on an event loop (the loop runs on while it waits)."""
    for got in _looks(what, check, timeout, describe):
        if got is not None:
            return got
        await asyncio.sleep(period)  # the state lives in other tasks: look again
    raise AssertionError("unreachable")  # _looks ends on a result or raises
