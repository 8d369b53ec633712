"""A scripted etcd for unit tests: one key space, leases on a fake clock, failure modes."""

from __future__ import annotations

import asyncio

from colopp.arbiter.etcd import KeyValue
from colopp.arbiter.timing import LeaseTiming
from colopp.clock import FakeClock
from colopp.errors import EtcdUnavailable

T = LeaseTiming()


class ScriptedEtcd:
    """An etcd with one key space. ``cut``: every call fails at once (a member cut off from
    the majority; failing at once keeps the fake clock driven by the keeper alone);
    ``hang``: every call hangs (a transport whose timeout failed)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.cut = False
        self.hang = False
        self.isolated_leader = False
        self.term = 2
        self.new_term_on_read = 0
        self.keys: dict[str, KeyValue] = {}
        self.leases: dict[int, float] = {}  # lease -> expiry (fake monotonic)
        self.revision = 10
        self.log: list[str] = []
        self._never = asyncio.Event()

    async def _gate(self, timeout: float | None = None) -> None:
        if self.hang:
            await self._never.wait()
        if self.cut:
            raise EtcdUnavailable("no leader")

    def expire(self) -> None:
        now = self.clock.monotonic()
        for lease, until in list(self.leases.items()):
            if until <= now:
                del self.leases[lease]
                self.keys = {k: v for k, v in self.keys.items() if v.lease != lease}

    async def lease_grant(self, ttl: int, timeout: float | None = None) -> tuple[int, int]:
        await self._gate(timeout)
        lease = len(self.log) + 100
        self.leases[lease] = self.clock.monotonic() + ttl
        self.log.append(f"grant {lease}")
        return lease, ttl

    async def lease_keepalive(self, lease: int, timeout: float | None = None) -> tuple[int, int]:
        await self._gate(timeout)
        self.expire()
        if lease not in self.leases:
            return 0, self.term
        self.leases[lease] = self.clock.monotonic() + T.ttl
        return T.ttl, self.term

    async def get(self, key: str, timeout: float | None = None) -> tuple[KeyValue | None, int]:
        await self._gate(timeout)
        self.expire()
        if self.isolated_leader:  # the renew went through; the quorum read does not
            raise EtcdUnavailable("read index: no quorum")
        self.term += self.new_term_on_read
        return self.keys.get(key), self.term

    async def lease_revoke(self, lease: int, timeout: float | None = None) -> None:
        await self._gate(timeout)
        self.log.append(f"revoke {lease}")
        self.leases[lease] = self.clock.monotonic()
        self.expire()

    async def create(
        self, key: str, value: str, lease: int, timeout: float | None = None
    ) -> tuple[bool, KeyValue | None]:
        await self._gate(timeout)
        self.expire()
        if key in self.keys:
            return self.keys[key].lease == lease, self.keys[key]
        self.revision += 1
        self.keys[key] = KeyValue(key, value, self.revision, self.revision, lease)
        return True, self.keys[key]
