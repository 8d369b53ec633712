"""The pool of hosts a fleet controller places protections on (pure, validated).

A pool member is a host with its agent: a name (as placement and the pair records use it),
the agent's management address and port, and the host's replication address (its peers
reach its NBD export, migration and mirror ports there). The pool is configured as a list
of such members (``COLOPP_POOL`` in the API, a JSON list of objects); :func:`parse_pool`
refuses bad names, bad addresses, duplicates and a pool of fewer than three hosts.

Each protection of the fleet has one *fleet slot* ``k``, the same on every host: its ports
(``base + 4k`` .. ``base + 4k + 3``, as the agent's allocator numbers them) and its tap
(``cpp<k>``). So a protection keeps its ports and tap name when it moves to another host,
and two protections never meet on one host's ports.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from colopp.domain import HostSlot, Ports
from colopp.errors import ConfigError

HOST_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
#: The smallest pool that can re-protect after losing a host.
MIN_POOL = 3
#: As the agent's allocator (``colopp.agent.allocator``): base port, slots, tap prefix.
BASE_PORT = 9100
SLOTS = 64
TAP_PREFIX = "cpp"


@dataclass(frozen=True)
class PoolMember:
    """One host of the pool and how to reach its agent."""

    name: str
    address: str  # the agent's management address
    repl_ip: str  # the host's replication address
    port: int = 7400
    slots: int = 8  # protections (sides) this host may run at once

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "repl_ip": self.repl_ip,
            "port": self.port,
            "slots": self.slots,
        }

    @classmethod
    def from_dict(cls, data: Any) -> PoolMember:
        """Raises ConfigError naming the bad field."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a pool host must be an object, not {data!r}")
        unknown = set(data) - {"name", "address", "repl_ip", "port", "slots"}
        if unknown:
            raise ConfigError(f"pool host: unknown fields {sorted(unknown)}")
        name = data.get("name")
        if not isinstance(name, str) or not HOST_RE.match(name):
            raise ConfigError(f"pool host name {name!r} must match {HOST_RE.pattern}")
        address = _ip(data.get("address"), f"pool host {name}: address")
        repl_ip = _ip(data.get("repl_ip", address), f"pool host {name}: repl_ip")
        port = data.get("port", 7400)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError(f"pool host {name}: port {port!r} must be in 1..65535")
        slots = data.get("slots", 8)
        if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= SLOTS:
            raise ConfigError(f"pool host {name}: slots {slots!r} must be in 1..{SLOTS}")
        return cls(name, address, repl_ip, port, slots)


def _ip(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{what} {value!r} must be an IP address")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ConfigError(f"{what} {value!r} is not an IP address") from None


def check_members(members: Iterable[PoolMember], minimum: int = MIN_POOL) -> list[PoolMember]:
    """The members as a list, checked: distinct names and addresses, at least ``minimum``.

    Raises:
        ConfigError: naming the problem.
    """
    hosts = list(members)
    if len(hosts) < minimum:
        raise ConfigError(f"a pool needs at least {minimum} hosts, has {len(hosts)}")
    for field in ("name", "address", "repl_ip"):
        values = [getattr(h, field) for h in hosts]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ConfigError(f"pool hosts must have distinct {field} values: {dupes} repeated")
    return hosts


def parse_pool(text: str, minimum: int = MIN_POOL) -> list[PoolMember]:
    """A pool from its JSON text (a list of host objects).

    Raises:
        ConfigError: not JSON, not a list, a bad host, duplicates, too few hosts.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"the pool is not JSON: {exc}") from exc
    if not isinstance(data, list):
        raise ConfigError("the pool must be a JSON list of hosts")
    return check_members([PoolMember.from_dict(item) for item in data], minimum)


def fleet_slot(taken: Iterable[int], slots: int = SLOTS) -> int:
    """The lowest fleet slot no active protection holds.

    Raises:
        ConfigError: every slot is held.
    """
    used = set(taken)
    for k in range(slots):
        if k not in used:
            return k
    raise ConfigError(f"all {slots} fleet slots are held")


def slot_ports(slot: int, base: int = BASE_PORT) -> Ports:
    """The ports of fleet slot ``slot`` (the agent's allocator hands out the same)."""
    first = base + 4 * slot
    return Ports(mirror=first, compare=first + 1, nbd=first + 2, migration=first + 3)


def host_slot(member: PoolMember, slot: int) -> HostSlot:
    """How a pair sees ``member`` for the protection in fleet slot ``slot``."""
    return HostSlot(member.name, f"{TAP_PREFIX}{slot}", member.repl_ip)
