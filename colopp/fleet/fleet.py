"""A fleet: several protected VMs over a pool of hosts, each pair supervised on its own.

:class:`Fleet` places each new protection (:func:`colopp.fleet.placement.place`: spread,
never both sides on one host), gives it a fleet slot (its ports and tap on every host,
:mod:`colopp.fleet.pool`), reserves that slot on both hosts' agents and protects it with a
:class:`~colopp.controller.pair.PairController` whose agents are *every* pool host (seen
through :class:`~colopp.fleet.routed.ProtectionAgent`). Its
:class:`~colopp.controller.supervisor.PairSupervisor` fails over as for a two-host pair;
when the lost host stays unreachable it asks :meth:`Fleet.elsewhere` for another host,
chosen by :func:`colopp.fleet.placement.new_secondary` from where every protection of the
fleet runs now, and re-protects onto it. So a dead host's protections all end up served
and re-protected on the remaining hosts, each as soon as its own supervisor gets there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from colopp.clock import Clock, SystemClock
from colopp.controller.agent_client import AgentClient
from colopp.controller.pair import PairController
from colopp.controller.rights import PairRights, right_key
from colopp.controller.seam import Agent
from colopp.controller.supervisor import Incident, PairSupervisor
from colopp.domain import HostSlot, PairConfig, ProtectionOptions, VmSpec
from colopp.errors import ColoppError, ConfigError
from colopp.fleet.placement import PoolHost, Sides, new_secondary, place
from colopp.fleet.pool import PoolMember, check_members, fleet_slot, host_slot, slot_ports
from colopp.fleet.routed import ProtectionAgent

log = logging.getLogger(__name__)

#: Makes the client of one host's agent: (connection name, member) → client.
ClientFactory = Callable[[str, PoolMember], Agent]


def pair_sides(pair: PairController) -> Sides:
    """Where a pair runs, counting a secondary being re-protected onto its new host (so two
    protections re-protecting at once do not both pick the least loaded host)."""
    secondary = pair.secondary or pair.onto
    return Sides(pair.primary.name, secondary.name if secondary else None)


@dataclass
class FleetProtection:
    """One protected VM of the fleet."""

    name: str
    slot: int
    pair: PairController
    agents: dict[str, ProtectionAgent]  # every pool host, for the pair's calls
    beats: dict[str, ProtectionAgent]  # every pool host, the supervisor's own connections
    supervisor: PairSupervisor | None = None
    task: asyncio.Task[None] | None = None
    incidents: list[Incident] = field(default_factory=list)

    @property
    def sides(self) -> Sides:
        return pair_sides(self.pair)


class Fleet:
    """Protections over a pool of hosts (one event loop)."""

    def __init__(
        self,
        members: list[PoolMember],
        token: str,
        minimum: int = 3,
        clock: Clock | None = None,
        client: ClientFactory | None = None,
        etcd_endpoints: list[str] | None = None,
    ) -> None:
        """``client``: how to reach a host's agent (default: an AgentClient with ``token``).
        ``etcd_endpoints``: etcd as the agents reach it; set, each protection's serving
        side holds its right to serve there (:mod:`colopp.controller.rights`)."""
        self.etcd_endpoints = list(etcd_endpoints or [])
        #: Tests only: sides hold their right without fencing themselves (PairRights).
        self.unsafe_no_fence = False
        self.members = {m.name: m for m in check_members(members, minimum)}
        self.token = token
        self.clock: Clock = clock or SystemClock()
        self.protections: dict[str, FleetProtection] = {}
        #: The last heartbeat answer of each host's agent (any protection's supervisor).
        self.answered: dict[str, bool] = {}
        self.client: ClientFactory = client or (
            lambda conn, m: AgentClient(conn, m.address, m.port, token)
        )

    # -- where things run ----------------------------------------------------------------
    def placed(self) -> dict[str, Sides]:
        return {name: p.sides for name, p in self.protections.items()}

    def pool(self, avoid: Collection[str] = (), by_beats: bool = True) -> list[PoolHost]:
        """The pool as placement sees it: a host is healthy unless it is in ``avoid`` or
        (``by_beats``) its agent did not answer its last heartbeat."""
        return [
            PoolHost(
                m.name,
                m.name not in avoid and (not by_beats or self.answered.get(m.name, True)),
                m.slots,
            )
            for m in self.members.values()
        ]

    # -- protect ---------------------------------------------------------------------------
    async def protect(
        self,
        name: str,
        vm: VmSpec,
        base_disk: Path,
        options: ProtectionOptions | None = None,
        sides: Sides | None = None,
        boot_timeout: float = 120.0,
    ) -> FleetProtection:
        """Place, reserve and protect one VM (not supervised yet: :meth:`supervise`).

        Raises:
            ConfigError: a name already used, no room in the pool, a host refused the slot.
            ColoppError: protecting failed (the pair is left in ERROR; :meth:`close` stops it).
        """
        if name in self.protections:
            raise ConfigError(f"the fleet already protects {name}")
        where = sides or place(self.pool(), self.placed())
        if where.secondary is None or where.primary == where.secondary:
            raise ConfigError(f"{name}: a protection needs two distinct hosts, not {where}")
        for host in (where.primary, where.secondary):
            if host not in self.members:
                raise ConfigError(f"{name}: {host} is not a host of the pool")
        slot = fleet_slot(p.slot for p in self.protections.values())
        primary, secondary = self.members[where.primary], self.members[where.secondary]
        config = PairConfig(
            vm,
            base_disk,
            host_slot(primary, slot),
            host_slot(secondary, slot),
            ports=slot_ports(slot),
            options=options or ProtectionOptions(),
            boot_timeout=boot_timeout,
        )
        agents = self._agents(name, slot, "pair")
        made = FleetProtection(
            name,
            slot,
            PairController(config, agents, clock=self.clock),
            agents,
            self._agents(name, slot, "hb"),
        )
        if self.etcd_endpoints:
            made.pair.rights = PairRights(
                self.etcd_endpoints, right_key(name), unsafe_no_fence=self.unsafe_no_fence
            )
        self.protections[name] = made
        for host in (where.primary, where.secondary):
            await agents[host].allocate()
        await made.pair.protect()
        return made

    def _agents(self, name: str, slot: int, kind: str) -> dict[str, ProtectionAgent]:
        return {
            host: ProtectionAgent(self.client(f"{host}-{name}-{kind}", member), name, slot)
            for host, member in self.members.items()
        }

    def supervise(
        self, name: str, loop: asyncio.AbstractEventLoop | None = None, **options: float
    ) -> PairSupervisor:
        """Start the protection's supervisor on ``loop`` (default: the running one; a
        synchronous caller names its own); ``options``: PairSupervisor's timings."""
        made = self.protections[name]
        supervisor = PairSupervisor(
            made.pair,
            made.beats,
            elsewhere=self.elsewhere,
            on_beat=self._on_beat,
            incidents=made.incidents,
            clock=self.clock,
            **options,  # type: ignore[arg-type]
        )
        made.supervisor = supervisor
        made.task = (loop or asyncio.get_running_loop()).create_task(supervisor.run())
        return supervisor

    def _on_beat(self, host: str, ok: bool) -> None:
        self.answered[host] = ok

    # -- re-protection elsewhere -------------------------------------------------------------
    async def elsewhere(self, pair: PairController, avoid: set[str]) -> HostSlot | None:
        """A host for ``pair``'s new secondary (see :func:`choose_elsewhere`)."""
        made = next(p for p in self.protections.values() if p.pair is pair)
        return await choose_elsewhere(
            self.members, self.placed(), made.name, pair, made.agents, avoid
        )

    # -- the end -------------------------------------------------------------------------------
    async def unsupervise(self, name: str) -> None:
        made = self.protections[name]
        if made.supervisor is not None:
            made.supervisor.stop()
        if made.task is not None:
            await made.task
            made.task = None

    async def stop(self, name: str) -> None:
        """Stop one protection everywhere and free its slot on every host; never raises."""
        made = self.protections.pop(name)
        with contextlib.suppress(ColoppError):
            await self._unsupervise(made)
        await made.pair.stop()
        for agent in made.agents.values():
            with contextlib.suppress(ColoppError):
                await agent.release(timeout=10)
        for agent in (*made.agents.values(), *made.beats.values()):
            await agent.close()

    async def _unsupervise(self, made: FleetProtection) -> None:
        if made.supervisor is not None:
            made.supervisor.stop()
        if made.task is not None:
            await made.task

    async def close(self) -> None:
        """Stop every protection (teardown); never raises."""
        for name in list(self.protections):
            await self.stop(name)


async def choose_elsewhere(
    members: Mapping[str, PoolMember],
    placed: Mapping[str, Sides],
    name: str,
    pair: PairController,
    agents: Mapping[str, ProtectionAgent],
    avoid: set[str],
) -> HostSlot | None:
    """A host for protection ``name``'s new secondary: placement's choice
    (:func:`new_secondary`, over where every protection runs now) among the hosts that
    answer and reach the serving host, its fleet slot reserved there. None: none left.

    Every pool host is tried at most once, so a dead pool costs one probe per host.
    """
    serving = pair.primary.name
    tried = set(avoid)
    pool = [PoolHost(m.name, True, m.slots) for m in members.values()]
    while True:
        # The probes below are the truth here: a host that came back counts again.
        host = new_secondary(pool, placed, name, serving, tried)
        if host is None:
            return None
        tried.add(host)
        agent = agents[host]
        try:
            # Asked of the host's agent itself: the protection has no side there yet.
            probe = await agent.agent.call(
                "probe_tcp", host=pair.primary.repl_ip, port=members[serving].port, timeout=2
            )
            if not probe["reachable"]:
                continue
            await agent.allocate()
        except ColoppError as exc:
            log.warning("%s: %s cannot take its secondary: %s", name, host, exc)
            continue
        return host_slot(members[host], agent.slot)
