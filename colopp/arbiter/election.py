"""Controller leader election on etcd: one replica supervises, the others wait.

Leadership is a right to serve like a protection's (:class:`RightKeeper` on
``<prefix>/leader``): the leader renews its lease and, when it cannot, stops supervising
*before* the lease can expire; the others poll the key and take it once etcd deletes it
with the lease. After a SIGKILL of the leader the follower leads within
``ttl + poll`` seconds (3 + 0.25 with the defaults).

``python -m colopp.arbiter elect --endpoint URL --name NAME`` runs a bare replica that
prints one JSON line per change (``{"event": "elected", "token": N}``, ``deposed``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from colopp.arbiter.keeper import Etcd, RightKeeper
from colopp.arbiter.right import FenceAction
from colopp.arbiter.timing import LeaseTiming
from colopp.clock import Clock, SystemClock
from colopp.errors import ArbiterError

log = logging.getLogger(__name__)

#: Seconds between a follower's attempts to take the leader key.
POLL = 0.25

LEADER_KEY = "colopp/controller/leader"


class LeaderElection:
    """Campaigns for ``key`` as ``name`` forever; calls ``lead(token)`` while leading.

    ``lead`` is an awaitable the election cancels when leadership is lost (it runs the
    supervision); it is also cancelled before the lease can expire at etcd.
    """

    def __init__(
        self,
        etcd: Etcd,
        name: str,
        lead: Callable[[int], Coroutine[Any, Any, None]],
        timing: LeaseTiming | None = None,
        clock: Clock | None = None,
        key: str = LEADER_KEY,
        poll: float = POLL,
    ) -> None:
        self.etcd, self.name, self.key = etcd, name, key
        self.timing = timing or LeaseTiming()
        self.clock = clock or SystemClock()
        self._lead = lead
        self.poll = poll
        self.leading = asyncio.Event()
        self.terms = 0
        self._leading_task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Campaign, lead, lose, campaign again (until cancelled)."""
        while True:
            keeper = RightKeeper(
                self.etcd, self.key, self.name, self.timing, self.clock, self._stop
            )
            try:
                token = await keeper.acquire()
            except ArbiterError:
                await self.clock.sleep(self.poll)
                continue
            self.terms += 1
            self.leading.set()
            leading_task = asyncio.create_task(self._lead(token))
            self._leading_task = leading_task
            try:
                await keeper.done.wait()
            finally:
                leading_task.cancel()
                await keeper.release()
                self.leading.clear()

    async def _stop(self, action: FenceAction) -> None:
        # Both fence steps mean the same for a controller: stop supervising now.
        # Wait (within the fence budget) for the leader's work to wind down.
        task = self._leading_task
        if action is FenceAction.STOP_OUTPUT and task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=self.timing.fence_budget)
