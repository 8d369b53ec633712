"""``pool`` placement: two hosts of the configured pool (``COLOPP_POOL``), chosen by
:mod:`colopp.fleet.placement`, and re-protection onto another pool host.

A pool protection has a fleet slot (its ports and tap ``cpp<k>`` on every host) and a
name on the agents (``p<id>``: agents run sides of several protections, routed by that
name). Its pair's agents are every pool host, so its supervisor can re-protect onto any of
them (:func:`colopp.fleet.fleet.choose_elsewhere`) when the lost host stays unreachable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from colopp.controller.agent_client import AgentClient
from colopp.controller.rights import PairRights, right_key
from colopp.domain import ComparatorKind, PairConfig
from colopp.errors import ConfigError
from colopp.fleet.placement import PoolHost, Sides, place
from colopp.fleet.pool import PoolMember, fleet_slot, host_slot, slot_ports
from colopp.fleet.routed import ProtectionAgent
from colopp_api.config import Settings, read_secret_file
from colopp_api.live.placement import (
    DISK_BOOT_TIMEOUT_S,
    UNSET,
    Placement,
    hosts_vm,
    with_colopp_plus,
)
from colopp_api.schemas import ProtectionCreate


def agent_name(protection_id: str) -> str:
    """The protection's name on the agents (their pattern: a letter first)."""
    return f"p{protection_id}"


def members(settings: Settings) -> dict[str, PoolMember]:
    return {m.name: m for m in settings.pool}


def choose(
    settings: Settings, placed: Mapping[str, Sides], slots: Iterable[int]
) -> tuple[int, Sides]:
    """A new protection's fleet slot and hosts, given the active pool protections.

    Raises:
        ConfigError: no pool configured, every slot held, or no two hosts with room.
    """
    if not settings.pool:
        raise ConfigError("placement pool needs COLOPP_POOL (the pool's hosts)")
    slot = fleet_slot(slots)
    hosts = [PoolHost(m.name, True, m.slots) for m in settings.pool]
    return slot, place(hosts, placed)


def pool_agents(
    settings: Settings, token: str, runtime: Mapping[str, Any], kind: str
) -> dict[str, ProtectionAgent]:
    """One routed client per pool host for this protection (``kind`` names the connection)."""
    name, slot = str(runtime["protection"]), int(runtime["slot"])
    return {
        m.name: ProtectionAgent(
            AgentClient(f"{m.name}-{name}-{kind}", m.address, m.port, token), name, slot
        )
        for m in settings.pool
    }


def pair_rights(settings: Settings, runtime: Mapping[str, Any]) -> PairRights | None:
    """The protection's right to serve at etcd (fleet mode with ``COLOPP_RIGHT_ENDPOINTS``;
    :mod:`colopp.controller.rights`), else None."""
    if not settings.right_endpoints:
        return None
    return PairRights(list(settings.right_endpoints), right_key(str(runtime["protection"])))


def agent_token(settings: Settings) -> str:
    """Raises ConfigError: no agent token file, or not 0600."""
    if settings.agent_token_file is None:
        raise ConfigError("placement pool needs COLOPP_AGENT_TOKEN_FILE (the agents' token)")
    return read_secret_file(settings.agent_token_file)


async def pool_placement(
    spec: ProtectionCreate, settings: Settings, runtime: Mapping[str, Any]
) -> Placement:
    """The pair on the hosts ``runtime`` names (chosen at create), its slot reserved there.

    Raises:
        ConfigError: no token file, a host no longer in the pool, a host refused the slot.
        AgentError: an agent is unreachable.
    """
    token = agent_token(settings)
    pool = members(settings)
    primary, secondary = runtime["sides"]
    for host in (primary, secondary):
        if host not in pool:
            raise ConfigError(f"host {host} is not in the pool any more")
    slot = int(runtime["slot"])
    vm = hosts_vm(spec)
    config = PairConfig(
        vm,
        Path(spec.base_disk or UNSET),
        host_slot(pool[primary], slot),
        host_slot(pool[secondary], slot),
        ports=slot_ports(slot),
        boot_timeout=DISK_BOOT_TIMEOUT_S if vm.kernel is None else 120.0,
    ).with_options(
        comparator=ComparatorKind(spec.comparator),
        checkpoint_delay_ms=spec.checkpoint_delay_ms,
    )
    agents = pool_agents(settings, token, runtime, "pair")
    for host in (primary, secondary):
        await agents[host].allocate()
    assert settings.agent_token_file is not None
    return Placement(
        with_colopp_plus(config, spec),
        agents,
        token,
        settings.agent_token_file,
        {"service": None},
        addresses={m.name: (m.address, m.port) for m in settings.pool},
    )
