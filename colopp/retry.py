"""Connect to something that is still starting: the one retry loop.

A QEMU's QMP socket, a host agent, a comparator's chardev: each accepts only once its
process is up. :func:`connect_with_retry` tries until it works, the deadline passes, or
``give_up`` says the other side is gone for good.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from colopp.clock import Clock, SystemClock

T = TypeVar("T")


class RetryExhausted(Exception):
    """The deadline passed; ``last`` is the last attempt's error. Callers convert it into
    their own :class:`~colopp.errors.ColoppError` (it never escapes colopp)."""

    def __init__(self, within: float, last: BaseException | None) -> None:
        super().__init__(f"not connected in {within:.0f}s: {last}")
        self.last = last


async def connect_with_retry(
    attempt: Callable[[], Awaitable[T]],
    within: float,
    *,
    retry_on: tuple[type[BaseException], ...] = (OSError, TimeoutError),
    pause: float = 0.1,
    give_up: Callable[[], None] = lambda: None,
    clock: Clock | None = None,
) -> T:
    """Return ``attempt()``'s result once it succeeds, retrying ``retry_on`` errors every
    ``pause`` seconds for ``within`` seconds (at least one attempt is made).

    Raises:
        RetryExhausted: still failing at the deadline.
        Whatever ``give_up()`` raises (checked before each attempt), and any error of
        ``attempt()`` not in ``retry_on``.
    """
    clock = clock or SystemClock()
    deadline = clock.monotonic() + within
    last: BaseException | None = None
    while True:
        give_up()
        try:
            return await attempt()
        except retry_on as exc:
            last = exc
        if clock.monotonic() + pause > deadline:
            raise RetryExhausted(within, last)
        await clock.sleep(pause)  # the other side is starting: nothing to wait on but time
