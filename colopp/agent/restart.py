"""How an agent exits: never stopping the VM it runs.

SIGTERM (``systemctl restart``/``stop`` with ``KillMode=process``, an upgrade) makes the
agent save what it owns (:mod:`colopp.agent.state_file`), tell the controller in its
heartbeat replies that it is restarting (the controller then waits ``grace`` seconds for
the next agent instead of failing over), and exit leaving QEMU and the comparator running
for the next agent to re-adopt (:mod:`colopp.agent.adopt`). Only the ``shutdown`` method
and ``stop_vm`` (the controller unprotecting a VM) stop a VM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from colopp.agent.host import HostAgent
from colopp.agent.protections import ProtectionRouter
from colopp.agent.server import AgentServer

log = logging.getLogger(__name__)

#: Seconds the controller waits for a restarting agent before treating it as lost.
RESTART_GRACE = 30.0
#: How long the exiting agent waits for heartbeats to carry its notice.
ANNOUNCE_WITHIN = 2.0
#: Heartbeats that must carry the notice: the controller sends the next one only after it
#: read the previous reply, so the second proves the first arrived.
ANNOUNCE_BEATS = 2
POLL = 0.01


async def announce_restart(
    agents: Sequence[HostAgent], grace: float, within: float = ANNOUNCE_WITHIN
) -> int:
    """Answer heartbeats with ``restarting_s`` until each agent (the default side and every
    protection's) that runs a VM under a controller's heartbeats has had
    :data:`ANNOUNCE_BEATS` of them (or ``within`` seconds passed); returns the fewest seen."""
    for agent in agents:
        agent.restart_grace = grace
    # No VM, or no controller watching: nobody to tell.
    watched = [a for a in agents if a.side is not None and a.lease.last_heartbeat is not None]
    if not watched:
        return 0
    seen = dict.fromkeys(map(id, watched), 0)
    last = {id(a): a.lease.last_heartbeat for a in watched}
    deadline = asyncio.get_running_loop().time() + within
    while min(seen.values()) < ANNOUNCE_BEATS and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(POLL)  # heartbeats are the controller's: observe them
        for agent in watched:
            if agent.lease.last_heartbeat != last[id(agent)]:
                seen[id(agent)] += 1
                last[id(agent)] = agent.lease.last_heartbeat
    return min(seen.values())


async def readopt_protections(router: ProtectionRouter) -> list[HostAgent]:
    """Fleet mode: re-adopt every allocated protection's side (each has its own state file
    in its run directory); returns their agents."""
    agents = []
    for allocation in router.allocator.table.all():
        side = router.side(allocation.protection)
        if isinstance(side, HostAgent):
            await side.readopt()
            agents.append(side)
    return agents


async def exit_for_restart(
    agent: HostAgent, server: AgentServer, grace: float, others: Sequence[HostAgent] = ()
) -> None:
    """Save, announce, and end the process leaving the VM running (does not return).

    The process ends with ``os._exit``: asyncio's subprocess transports kill their child
    when they are closed or garbage-collected, and QEMU and the comparator are such
    children; no finalizer may run.
    """
    beats = await announce_restart([agent, *others], grace)
    for each in (agent, *others):
        each.persist()
        each.lease.cancel()
    await server.close()
    side = agent.side
    if side is not None:
        log.info(
            "exiting for a restart (%d heartbeats told): %s pid %s and comparator pid %s "
            "left running for the next agent",
            beats,
            side.spec.role,
            side.process.pid,
            side.comparator.pid if side.comparator else None,
        )
    else:
        log.info("exiting: no VM runs on the default side")
    for each in others:
        if each.side is not None:
            log.info("%s pid %s left running", each.side.vm.name, each.side.process.pid)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
