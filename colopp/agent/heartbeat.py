"""The controller's heartbeat (``HostAgent.ping``) and what the lease watchdog
(colopp.agent.lease) asks of this host's side: is it a serving primary, is the peer there.
"""

from __future__ import annotations

import asyncio
import time

from colopp.agent.lease import LeaseView
from colopp.agent.replies import PingReply, ProbeTcpReply
from colopp.agent.side import Side
from colopp.domain import Role
from colopp.errors import QmpError


async def heartbeat_reply(
    host: str,
    side: Side | None,
    qmp_timeout: float,
    self_fenced: bool,
    restart_grace: float | None,
) -> PingReply:
    """Liveness of the agent and of its QEMU (see ``HostAgent.ping``)."""
    alive = bool(side and side.process.alive())
    qmp_ok = alive
    if side is not None and alive and qmp_timeout > 0:
        try:
            await side.monitor.execute("query-status", timeout=qmp_timeout)
        except QmpError:
            qmp_ok = False
    stalled = replication_stall(side, time.time()) if side is not None else 0.0
    reply: PingReply = {
        "host": host,
        "time": time.time(),
        "vm_alive": alive,
        "qmp_ok": qmp_ok,
        "checkpoint_stalled_s": stalled,
        "self_fenced": self_fenced,
        "role": side.spec.role.value if side else None,
    }
    if restart_grace is not None:
        reply["restarting_s"] = restart_grace
    return reply


def replication_stall(side: Side, now: float) -> float:
    """Seconds replication has been stuck: a checkpoint that keeps the VM stopped, or
    (primary in COLO) a checkpoint overdue past its period: QEMU waits for the
    secondary's reply before stopping the VM, so a cut link shows up as silence."""
    stopped = side.checkpoints.stalled_for(now)
    last = side.checkpoints.last_at
    if side.spec.role is not Role.PRIMARY or side.failed_over or last is None:
        return stopped
    overdue = now - last - side.checkpoint_delay_ms / 1000.0
    return max(stopped, overdue, 0.0)


def lease_view(side: Side | None) -> LeaseView:
    """What the lease watchdog sees of ``side``: a designated survivor is not serving
    as a primary any more (its lease no longer applies)."""
    running = side is not None and side.process.alive()
    primary = (
        side is not None
        and side.spec.role is Role.PRIMARY
        and not side.failed_over
        and not side.going_alone
    )
    return LeaseView(running, primary)


async def probe_tcp(host: str, port: int, timeout: float = 0.5) -> ProbeTcpReply:
    """Can this host open a TCP connection to ``host:port`` (e.g. the peer's agent on
    the replication network)?"""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        return {"reachable": False, "error": str(exc) or type(exc).__name__}
    writer.close()
    return {"reachable": True}
