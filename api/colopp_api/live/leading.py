"""Fleet mode: API replicas elect a leader on etcd; only the leader supervises.

With ``COLOPP_ETCD_ENDPOINTS`` set, every replica campaigns (:mod:`colopp.arbiter.election`).
The leader re-attaches every protection, as a restarted API does; losing the lease (or
failing to renew it in time) detaches them all before the lease can expire at etcd. The
others answer reads from the shared database and refuse changes (409) until they lead.
"""

from __future__ import annotations

import asyncio
import logging

from colopp.arbiter.election import LeaderElection
from colopp.arbiter.etcd import EtcdGateway
from colopp.arbiter.timing import LeaseTiming
from colopp.controller.agent_client import AgentClient
from colopp_api.live.manager import ProtectionManager

log = logging.getLogger("colopp_api")


class Leadership:
    """This replica's part in the election."""

    def __init__(self, manager: ProtectionManager, endpoints: tuple[str, ...], name: str) -> None:
        self.manager, self.name = manager, name
        self.timing = LeaseTiming()
        self.gateway = EtcdGateway(endpoints, timeout=self.timing.request_timeout)
        self.token = 0
        self._task: asyncio.Task[None] | None = None
        manager.leading = False

    @property
    def role(self) -> str:
        return "leader" if self.manager.leading else "follower"

    def start(self) -> None:
        """Campaign in the background."""
        election = LeaderElection(self.gateway, self.name, self._lead, self.timing)
        self._task = asyncio.create_task(election.run())

    async def _lead(self, token: int) -> None:
        self.token = token
        AgentClient.controller_token = token  # every agent call carries it from now on
        log.warning("replica %s leads (fencing token %d): supervising", self.name, token)
        self.manager.leading = True
        try:
            await self.manager.reattach_all()
            await asyncio.Event().wait()
        finally:
            # The token stays: a deposed replica's late calls carry it and are refused.
            self.manager.leading = False
            log.warning("replica %s no longer leads: detaching", self.name)
            await asyncio.shield(self.manager.detach_all())

    async def close(self) -> None:
        """API shutdown: stop campaigning (the lease is revoked by the election)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.gateway.aclose()
