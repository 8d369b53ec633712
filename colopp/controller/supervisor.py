"""Watch a protected pair and fail over without a human: heartbeat, fence, promote, re-protect.

The supervisor heartbeats both agents on its own connections (so a long operation on the
pair's connections never delays a heartbeat), feeds :class:`SideDetector`, and acts:

- primary DEAD or HUNG → fence it (SIGKILL; a hung QEMU is killed *before* the peer
  serves) → secondary failover;
- secondary DEAD or HUNG → fence it → primary failover (the primary continues alone);
- primary STALLED (a checkpoint cannot complete: the replication link is broken while both
  sides answer the controller) → the controller, as witness, keeps the primary (it holds
  the clients and the newest state), fences the secondary and fails over to the primary:
  exactly one side serves;
- optionally re-protect onto the lost host once it is reachable again or, in a fleet
  (``elsewhere`` given), onto another host of the pool while the lost one stays unreachable.

An UNREACHABLE side cannot be fenced from here; it is reported and left to the witness
rules (not in this version).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from colopp.colo.state import PairState
from colopp.controller.health import Beat, DetectorConfig, Health, SideDetector
from colopp.controller.pair import PairController
from colopp.controller.seam import Agent, Clock, SystemClock, fence
from colopp.domain import HostSlot, Role
from colopp.errors import ColoppError

log = logging.getLogger(__name__)

QMP_PROBE_TIMEOUT = 0.2


@dataclass
class Incident:
    """One detected failure and what the supervisor did about it."""

    role: str
    host: str
    health: str
    detected_at: float
    fenced: bool = False
    failover_ms: float | None = None
    # The survivor's guest ran this long after its promotion began (agent's failover reply).
    guest_running_ms: float | None = None
    # The survivor's failover steps (and QEMU's RESUME), ms after its promotion began.
    timeline_ms: list[tuple[str, float]] = field(default_factory=list)
    reprotect_s: float | None = None
    reprotected_onto: str | None = None
    error: str | None = None


@dataclass
class PairSupervisor:
    """Runs the heartbeat loop for one pair until :meth:`stop`."""

    pair: PairController
    heartbeat: Mapping[str, Agent]
    config: DetectorConfig = field(default_factory=DetectorConfig)
    auto_reprotect: bool = True
    # Let clients' retransmissions reach the survivor before re-protection pauses the
    # guest for the switch into COLO.
    reprotect_after: float = 2.0
    lease: float = 1.0  # must match the agents' --lease
    # Fleet mode: a host ready to take the pair's new secondary (its slot reserved, able to
    # reach the serving host) when the lost host does not answer, the hosts to avoid given;
    # None: no such host now (asked again at most every ``elsewhere_period`` seconds).
    elsewhere: Callable[[PairController, set[str]], Awaitable[HostSlot | None]] | None = None
    elsewhere_period: float = 1.0
    on_incident: Callable[[Incident], None] = lambda _incident: None
    # Told of every heartbeat: the host and whether its agent answered (metrics).
    on_beat: Callable[[str, bool], None] = lambda _host, _ok: None
    incidents: list[Incident] = field(default_factory=list)
    clock: Clock = field(default_factory=SystemClock)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _detectors: dict[str, SideDetector] = field(default_factory=dict)

    _elsewhere_at: float = 0.0
    _switchover_requested: bool = False
    rounds: int = 0  # heartbeat rounds of a protected pair so far (tests wait on it)

    def stop(self) -> None:
        """Ask the loop to end."""
        self._stop.set()

    def request_switchover(self) -> None:
        """Ask for a planned switchover; done by the loop itself, so it never races the
        loop's own failure detection (the planned fence looks like a dead primary)."""
        self._switchover_requested = True

    async def close(self) -> None:
        """Close the heartbeat connections (after :meth:`run` returned)."""
        for client in self.heartbeat.values():
            await client.close()

    async def run(self) -> None:
        """Heartbeat and act until stopped; errors are recorded, never raised."""
        while not self._stop.is_set():
            if self._switchover_requested and self.pair.state is PairState.PROTECTED:
                self._switchover_requested = False
                await self._switchover()
            elif self.pair.state is PairState.PROTECTED:
                await self._check_protected()
            elif self.pair.state is PairState.FAILED_OVER and self.auto_reprotect:
                await self._reprotect()
            await self.clock.wait(self._stop, self.config.period)

    async def _beat(self, host: str) -> Beat:
        now = self.clock.monotonic()
        try:
            reply = await self.heartbeat[host].call(
                "ping",
                timeout=QMP_PROBE_TIMEOUT + 0.3,
                qmp_timeout=QMP_PROBE_TIMEOUT,
                heartbeat=True,
            )
        except ColoppError:
            self.on_beat(host, False)
            return Beat(now, agent_ok=False)
        self.on_beat(host, True)
        return Beat(
            now,
            True,
            bool(reply["vm_alive"]),
            bool(reply["qmp_ok"]),
            float(reply.get("checkpoint_stalled_s", 0.0)),
            float(reply.get("restarting_s", 0.0)),
        )

    def _detector(self, host: str) -> SideDetector:
        if host not in self._detectors:
            self._detectors[host] = SideDetector(self.config, self.clock.monotonic())
        return self._detectors[host]

    async def _check_protected(self) -> None:
        primary, secondary = self.pair.primary, self.pair.secondary
        assert secondary is not None
        beats = await asyncio.gather(self._beat(primary.name), self._beat(secondary.name))
        self.rounds += 1
        verdicts = [
            self._detector(primary.name).observe(beats[0]),
            self._detector(secondary.name).observe(beats[1]),
        ]
        if verdicts[0] in (Health.DEAD, Health.HUNG):
            await self._handle(Role.PRIMARY, primary.name, verdicts[0])
        elif verdicts[1] in (Health.DEAD, Health.HUNG):
            await self._handle(Role.SECONDARY, secondary.name, verdicts[1])
        elif verdicts[0] is Health.STALLED:
            await self._handle(Role.SECONDARY, secondary.name, Health.STALLED)
        elif verdicts[0] is Health.UNREACHABLE:
            await self._primary_unreachable(primary.name, secondary.name)
        elif verdicts[1] is Health.UNREACHABLE:
            # A secondary never serves on its own: continue on the primary.
            await self._handle(Role.SECONDARY, secondary.name, Health.UNREACHABLE)

    async def _primary_unreachable(self, primary: str, secondary: str) -> None:
        """Promote the secondary only once the primary must have fenced itself.

        The primary's agent kills its QEMU after ``lease`` seconds without heartbeats *and*
        without its peer. So: wait twice the lease since the primary's last answer, and
        require that the secondary cannot reach the primary's host either (if it can, the
        primary still has its peer, keeps serving, and only the controller is cut off).
        """
        silent = self.clock.monotonic() - self._detector(primary).last_agent_ok
        if silent < 2 * self.lease:
            return
        try:
            probe = await self.heartbeat[secondary].call(
                "probe_tcp",
                host=self.pair.primary.repl_ip,
                port=self.heartbeat[primary].port,
                timeout=2,
            )
        except ColoppError:
            return
        if not probe["reachable"]:
            await self._handle(Role.PRIMARY, primary, Health.UNREACHABLE)

    async def _handle(self, role: Role, host: str, health: Health) -> None:
        incident = Incident(role.value, host, health.value, self.clock.time())
        self.incidents.append(incident)
        started = self.clock.monotonic()
        try:
            if health in (Health.HUNG, Health.STALLED):
                await self._fence(host)
                incident.fenced = True
            result = await self.pair.failover(role)
            incident.failover_ms = (self.clock.monotonic() - started) * 1000
            incident.guest_running_ms = result.get("guest_running_ms")
            incident.timeline_ms = [tuple(item) for item in result.get("timeline_ms") or []]
        except ColoppError as exc:
            incident.error = str(exc)
        self._detectors.clear()
        self.on_incident(incident)

    async def _switchover(self) -> None:
        incident = Incident("primary", self.pair.primary.name, "switchover", self.clock.time())
        self.incidents.append(incident)
        started = self.clock.monotonic()
        try:
            result = await self.pair.switchover()
            incident.failover_ms = (self.clock.monotonic() - started) * 1000
            incident.reprotect_s = result.get("reprotect_s")
        except ColoppError as exc:
            incident.error = str(exc)
        self._detectors.clear()
        self.on_incident(incident)

    async def _fence(self, host: str, timeout: float = 5.0) -> None:
        """SIGKILL the side's QEMU and wait until its agent reports it gone."""
        await fence(self.heartbeat[host], self.clock, timeout, call_timeout=2.0)

    async def _reprotect(self) -> None:
        standby = self.pair.standby
        if standby is None:
            return
        last = self.incidents[-1].detected_at if self.incidents else 0.0
        if self.clock.time() - last < self.reprotect_after:
            return
        target: HostSlot | None = standby
        if not await self._reaches_serving(standby.name):
            target = await self._elsewhere(standby.name)
        if target is None:
            return  # keep serving alone; ask again on a later round
        try:
            result: dict[str, Any] = await self.pair.reprotect(target)
            if self.incidents:
                self.incidents[-1].reprotect_s = result.get("reprotect_s")
                self.incidents[-1].reprotected_onto = target.name
        except ColoppError as exc:
            if self.incidents:
                self.incidents[-1].error = f"re-protect: {exc}"
            self.stop()

    async def _reaches_serving(self, host: str) -> bool:
        """Does ``host``'s agent answer, and reach the serving host's agent?"""
        try:
            probe = await self.heartbeat[host].call(
                "probe_tcp",
                host=self.pair.primary.repl_ip,
                port=self.heartbeat[self.pair.primary.name].port,
                timeout=2,
            )
        except ColoppError:
            return False  # the lost host is still unreachable
        return bool(probe["reachable"])  # False: no replication path to the serving host

    async def _elsewhere(self, lost: str) -> HostSlot | None:
        """Another pool host for the new secondary (fleet mode), else None."""
        now = self.clock.monotonic()
        if self.elsewhere is None or now < self._elsewhere_at:
            return None
        self._elsewhere_at = now + self.elsewhere_period
        try:
            return await self.elsewhere(self.pair, {lost})
        except ColoppError as exc:
            log.warning("%s: no host to re-protect onto yet: %s", self.pair.config.vm.name, exc)
            return None
