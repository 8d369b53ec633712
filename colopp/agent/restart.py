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

from colopp.agent.host import HostAgent
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


async def announce_restart(agent: HostAgent, grace: float, within: float = ANNOUNCE_WITHIN) -> int:
    """Answer heartbeats with ``restarting_s`` until :data:`ANNOUNCE_BEATS` of them went
    out (or ``within`` seconds passed, e.g. no controller); returns the beats seen."""
    agent.restart_grace = grace
    if agent.side is None or agent.lease.last_heartbeat is None:
        return 0  # no VM, or no controller watching: nobody to tell
    seen, last = 0, agent.lease.last_heartbeat
    deadline = asyncio.get_running_loop().time() + within
    while seen < ANNOUNCE_BEATS and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(POLL)  # heartbeats are the controller's: observe them
        if agent.lease.last_heartbeat != last:
            seen, last = seen + 1, agent.lease.last_heartbeat
    return seen


async def exit_for_restart(agent: HostAgent, server: AgentServer, grace: float) -> None:
    """Save, announce, and end the process leaving the VM running (does not return).

    The process ends with ``os._exit``: asyncio's subprocess transports kill their child
    when they are closed or garbage-collected, and QEMU and the comparator are such
    children; no finalizer may run.
    """
    beats = await announce_restart(agent, grace)
    agent.persist()
    agent.lease.cancel()
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
        log.info("exiting: no VM runs here")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
