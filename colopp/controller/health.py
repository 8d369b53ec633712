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

A QMP silence while the side reports its VM stopped in a checkpoint (``stalled_s`` > 0 with
QMP silent: the agent saw QEMU's STOP and no RESUME) is the checkpoint's, not a hang: the
primary holds the big QEMU lock while it stops the VM (``vm_stop_force_state`` drains and
flushes the disks, the replication child's NBD too) and while it sends the device state, so
with the replication link cut its main loop, and QMP with it, waits on the peer. That side
is STALLED once the checkpoint reaches ``stall_after`` (judged before HUNG), and HUNG only
if QMP stays silent past :attr:`DetectorConfig.checkpoint_silence_limit`.

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

    @property
    def checkpoint_silence_limit(self) -> float:
        """Longest QMP silence a checkpoint excuses; past it the side is HUNG whatever it
        reports.

        A checkpoint that really holds QEMU's main loop began (QEMU sent STOP) before its
        first unanswered ``query-status``, so its ``stalled_s`` trails the QMP silence by at
        most one heartbeat round (about the QMP bound plus ``period``, 0.25 s) and reaches
        ``stall_after`` (STALLED) before the silence reaches this limit: ``hang_after`` is
        that round's margin. A report that stays small while QMP stays silent (an agent
        whose checkpoint log no longer moves) is no checkpoint, and is fenced as a hang.
        """
        return self.stall_after + self.hang_after


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
            if beat.stalled_s >= self.config.stall_after:
                return Health.STALLED
            if not beat.qmp_ok and self._hung(beat):
                return Health.HUNG
            return Health.HEALTHY
        if beat.at < self.restarting_until:
            return Health.HEALTHY  # a planned agent restart
        if beat.at - self.last_agent_ok >= self.config.unreachable_after:
            return Health.UNREACHABLE
        return Health.HEALTHY

    def _hung(self, beat: Beat) -> bool:
        """Has QMP been silent long enough, for a side in a checkpoint or not, to fence?"""
        silent = beat.at - self.last_qmp_ok
        if silent < self.config.hang_after:
            return False
        in_checkpoint = beat.stalled_s > 0
        return not in_checkpoint or silent >= self.config.checkpoint_silence_limit
