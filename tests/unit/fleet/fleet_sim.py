"""A simulated pool for fleet tests: one scripted agent per host, each running sides of
several protections, a host that can be cut off; fake time, no processes."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from typing import Any

from colopp.clock import FakeClock
from colopp.controller.seam import ScriptedAgent
from colopp.errors import AgentError, ConfigError
from colopp.fleet.pool import PoolMember


@dataclass
class SimSide:
    slot: int
    vm_alive: bool = False
    role: str | None = None


@dataclass
class SimHost:
    """One host's agent; ``sides`` by protection."""

    member: PoolMember
    pool: dict[str, SimHost]
    reachable: bool = True
    sides: dict[str, SimSide] = field(default_factory=dict)
    journal: list[tuple[str, str, str | None]] = field(default_factory=list)
    #: When set, resume_replication waits for it (re-protections held in flight).
    resume_gate: asyncio.Event | None = None

    def side(self, protection: str | None) -> SimSide:
        if protection is None or protection not in self.sides:
            raise ConfigError(f"protection {protection!r} has no allocation on this host")
        return self.sides[protection]

    async def answer(self, method: str, params: dict[str, Any]) -> Any:
        await asyncio.sleep(0)
        if not self.reachable:
            raise AgentError(f"agent {self.member.name} unreachable")
        protection = params.get("protection")
        self.journal.append((self.member.name, method, protection))
        if method == "allocate":
            slot = params["slot"]
            held = {s.slot: p for p, s in self.sides.items()}
            if held.get(slot, protection) != protection:
                raise ConfigError(f"slot {slot} is held by protection {held[slot]} on this host")
            self.sides.setdefault(protection, SimSide(slot))
            return {"slot": slot}
        if method == "release":
            return {"released": self.sides.pop(protection, None) is not None}
        side = self.side(protection) if protection is not None else None  # routed as the agent
        if method == "probe_tcp":
            target = next(h for h in self.pool.values() if h.member.repl_ip == params["host"])
            return {"reachable": target.reachable}
        if side is None:
            raise ConfigError(f"{method} needs a protection here")
        if method == "ping":
            return {"vm_alive": side.vm_alive, "qmp_ok": side.vm_alive}
        if method == "kill_vm":
            assert params.get("signum", int(signal.SIGKILL)) == int(signal.SIGKILL)
            side.vm_alive = False
        elif method == "stop_vm":
            side.vm_alive, side.role = False, None
        elif method == "launch":
            side.vm_alive, side.role = True, params["side"]["role"]
        elif method == "failover":
            side.role = "primary"
        elif method == "resume_replication" and self.resume_gate is not None:
            await self.resume_gate.wait()
        return {"pid": 1, "version": "11.1.3", "runtime": "fake", "boot_s": 1.0, "took_ms": 1.0}

    def serving(self) -> set[str]:
        """Protections whose primary runs here."""
        return {p for p, s in self.sides.items() if s.vm_alive and s.role == "primary"}


def sim_pool(names: list[str]) -> tuple[list[PoolMember], dict[str, SimHost], FakeClock]:
    members = [
        PoolMember(n, f"198.18.2.{10 + i}", f"198.18.1.{10 + i}") for i, n in enumerate(names)
    ]
    pool: dict[str, SimHost] = {}
    for member in members:
        pool[member.name] = SimHost(member, pool)
    return members, pool, FakeClock(limit=600.0)


def scripted(pool: dict[str, SimHost]) -> Any:
    """The Fleet's client factory: a scripted agent answering as the named host."""
    return lambda conn, member: ScriptedAgent(conn, pool[member.name].answer, member.port)
