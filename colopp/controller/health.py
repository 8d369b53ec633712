"""Failure detection for one side of the pair (pure: heartbeats and time in, verdicts out).

A side is judged from the controller's heartbeats to its agent:

- ``DEAD``: the agent answers but its QEMU has exited (crash, SIGKILL);
- ``HUNG``: QEMU runs but has not answered QMP for ``hang_after`` seconds (SIGSTOP, a
  deadlock): it must be fenced before the peer serves;
- ``UNREACHABLE``: the agent itself has not answered for ``unreachable_after`` seconds
  (host down, management link cut);
- ``STALLED``: a checkpoint has kept the VM stopped for ``stall_after`` seconds: the
  replication stream to the peer is broken (e.g. the replication link is cut) while both
  sides still answer the controller;
- ``HEALTHY`` otherwise.

An agent that exits for a restart (an upgrade) says so in its last heartbeat replies
(``restarting_s``): its VM keeps running and the next agent re-adopts it, so for that many
seconds its silence is not UNREACHABLE. The notice ends with the first beat without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Health(StrEnum):
    """The detector's verdict on one side."""

    HEALTHY = "healthy"
    DEAD = "dead"
    HUNG = "hung"
    UNREACHABLE = "unreachable"
    STALLED = "stalled"


@dataclass(frozen=True)
class Beat:
    """One heartbeat result: ``agent_ok`` False means the call failed or timed out."""

    at: float
    agent_ok: bool
    vm_alive: bool = True
    qmp_ok: bool = True
    stalled_s: float = 0.0
    restarting_s: float = 0.0  # the agent exits for a restart: back within this


@dataclass(frozen=True)
class DetectorConfig:
    """Detection timeouts in seconds (defaults tuned for sub-second failover in the lab)."""

    hang_after: float = 0.5
    unreachable_after: float = 0.5
    stall_after: float = 2.0
    period: float = 0.05


class SideDetector:
    """Turns a stream of beats for one side into a verdict."""

    def __init__(self, config: DetectorConfig, started_at: float) -> None:
        self.config = config
        self.last_agent_ok = started_at
        self.last_qmp_ok = started_at
        self.restarting_until = 0.0

    def observe(self, beat: Beat) -> Health:
        """Feed a beat (in time order) and return the verdict after it."""
        if beat.agent_ok:
            self.last_agent_ok = beat.at
            self.restarting_until = beat.at + beat.restarting_s if beat.restarting_s > 0 else 0.0
            if not beat.vm_alive:
                return Health.DEAD
            if beat.qmp_ok:
                self.last_qmp_ok = beat.at
            elif beat.at - self.last_qmp_ok >= self.config.hang_after:
                return Health.HUNG
            if beat.stalled_s >= self.config.stall_after:
                return Health.STALLED
            return Health.HEALTHY
        if beat.at < self.restarting_until:
            return Health.HEALTHY  # a planned agent restart
        if beat.at - self.last_agent_ok >= self.config.unreachable_after:
            return Health.UNREACHABLE
        return Health.HEALTHY
