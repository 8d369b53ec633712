"""Self-fencing: a primary cut off from the controller and from its peer kills its QEMU.

The controller renews this host's lease with every supervision heartbeat. A primary that
has heard neither the controller nor its peer for longer than the lease kills its own
QEMU; the controller promotes the secondary only after twice the lease, so two sides never
serve at once. A secondary never serves alone, and a lone survivor has no peer: neither
fences itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from colopp.clock import Clock

log = logging.getLogger(__name__)

#: How often the watchdog looks (seconds).
WATCH_PERIOD = 0.1


@dataclass(frozen=True)
class LeaseView:
    """What the watchdog sees of this host's side at one moment."""

    running: bool  # a QEMU runs here
    serving_primary: bool  # it is a primary in COLO (not failed over)


def lease_expired(now: float, last_heartbeat: float, peer_seen: float, lease: float) -> bool:
    """Has this primary been cut off from both controller and peer for over ``lease``?"""
    return now - last_heartbeat > lease and now - peer_seen > lease


class LeaseWatchdog:
    """Watches the lease of one host; ``kill`` fences the local QEMU when it expires."""

    def __init__(
        self,
        lease: float,
        clock: Clock,
        view: Callable[[], LeaseView],
        peer_reachable: Callable[[], Awaitable[bool]],
        kill: Callable[[], None],
    ) -> None:
        self.lease = lease
        self.clock = clock
        self._view = view
        self._peer_reachable = peer_reachable
        self._kill = kill
        self.last_heartbeat: float | None = None
        self.self_fenced = False
        self._peer_seen = clock.monotonic()
        self._task: asyncio.Task[None] | None = None

    def renew(self) -> None:
        """A controller heartbeat arrived: renew the lease (and start watching)."""
        self.last_heartbeat = self.clock.monotonic()
        if self._task is None:
            self._peer_seen = self.last_heartbeat
            self._task = asyncio.create_task(self.run())

    async def run(self) -> None:
        """Check every :data:`WATCH_PERIOD` until cancelled."""
        while True:
            await self.clock.sleep(WATCH_PERIOD)
            await self.check()

    async def check(self) -> bool:
        """One look; returns True when it fenced the local QEMU just now."""
        view, now = self._view(), self.clock.monotonic()
        if not view.running or self.last_heartbeat is None:
            return False
        if not view.serving_primary:
            self._peer_seen = now
            return False
        if await self._peer_reachable():
            self._peer_seen = now
        if not lease_expired(now, self.last_heartbeat, self._peer_seen, self.lease):
            return False
        log.warning(
            "self-fencing: no controller for %.1fs and no peer for %.1fs",
            now - self.last_heartbeat,
            now - self._peer_seen,
        )
        self.self_fenced = True
        self._kill()
        return True

    def cancel(self) -> None:
        """Stop watching (agent shutdown)."""
        if self._task is not None:
            self._task.cancel()
