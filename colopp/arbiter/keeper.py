"""Keep a right to serve alive at etcd, and fence when it cannot be kept.

:class:`RightKeeper` acquires the key (a lease, then a create-if-absent under it), renews
the lease every ``renew_interval`` and feeds :class:`~colopp.arbiter.right.ServeRight`. The
renew runs in its own task, so a renew stuck on a cut-off etcd member never delays the
clock checks: fencing starts on time whether or not etcd answers.

Fencing calls ``fence(action)`` for each :class:`~colopp.arbiter.right.FenceAction` in
order (stop output, then kill QEMU); only after both returned is the lease revoked (best
effort), so the other side never gets the key while this one may still run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from colopp.arbiter.etcd import KeyValue
from colopp.arbiter.right import FenceAction, RightState, ServeRight
from colopp.arbiter.timing import LeaseTiming
from colopp.clock import Clock
from colopp.errors import ArbiterError, EtcdUnavailable, NotAcquired

log = logging.getLogger(__name__)

Fence = Callable[[FenceAction], Awaitable[None]]


class Etcd(Protocol):
    """What the keeper needs of etcd (:class:`~colopp.arbiter.etcd.EtcdGateway`)."""

    async def lease_grant(self, ttl: int, timeout: float | None = None) -> tuple[int, int]: ...

    async def lease_keepalive(
        self, lease: int, timeout: float | None = None
    ) -> tuple[int, int]: ...

    async def lease_revoke(self, lease: int, timeout: float | None = None) -> None: ...

    async def create(
        self, key: str, value: str, lease: int, timeout: float | None = None
    ) -> tuple[bool, KeyValue | None]: ...

    async def get(self, key: str, timeout: float | None = None) -> tuple[KeyValue | None, int]: ...


class RightKeeper:
    """One side's right to serve ``key``, held as ``holder``."""

    def __init__(
        self,
        etcd: Etcd,
        key: str,
        holder: str,
        timing: LeaseTiming,
        clock: Clock,
        fence: Fence,
    ) -> None:
        self.etcd, self.key, self.holder = etcd, key, holder
        self.timing, self.clock = timing, clock
        self.right = ServeRight(timing)
        self._fence = fence
        self.lease = 0
        self._task: asyncio.Task[None] | None = None
        self._renewing: asyncio.Task[None] | None = None
        self.done = asyncio.Event()

    @property
    def token(self) -> int:
        """The fencing token (the key's revision); 0 before the grant."""
        return self.right.token

    async def acquire(self) -> int:
        """Take the right and start keeping it; returns the fencing token.

        Raises:
            NotAcquired: another holder's key exists (its lease is alive).
            EtcdUnavailable: etcd did not answer in time.
            ArbiterError: etcd granted a shorter TTL than asked.
        """
        t = self.timing
        sent = self.clock.monotonic()
        self.lease, ttl = await self.etcd.lease_grant(t.ttl, t.request_timeout)
        try:
            token = await self._claim(ttl)
        except ArbiterError:
            await self._revoke()
            raise
        self.right.granted(token, sent)
        self._task = asyncio.create_task(self._keep())
        log.info("holding %s as %s, token %d", self.key, self.holder, self.token)
        return self.token

    async def _claim(self, ttl: int) -> int:
        t = self.timing
        if ttl < t.ttl:
            raise ArbiterError(f"etcd granted a {ttl}s lease, {t.ttl}s asked")
        created, kv = await self.etcd.create(self.key, self.holder, self.lease, t.request_timeout)
        if not created or kv is None:
            who = f"{kv.value!r} at revision {kv.mod_revision}" if kv else "someone"
            raise NotAcquired(f"{self.key} is held by {who}")
        return kv.mod_revision

    async def _keep(self) -> None:
        next_renew = self.right.renewed_sent_at + self.timing.renew_interval
        try:
            while self.right.state is RightState.HOLDING:
                now = self.clock.monotonic()
                self.right.tick(now)
                if self.right.state is not RightState.HOLDING:
                    break
                if now >= next_renew and (self._renewing is None or self._renewing.done()):
                    self._renewing = asyncio.create_task(self._renew())
                    next_renew = now + self.timing.renew_interval
                await self.clock.sleep(self.timing.check_period)
            if self.right.state is RightState.FENCING:
                await self._run_fence()
        finally:
            if self._renewing is not None:
                self._renewing.cancel()
            self.done.set()

    async def _renew(self) -> None:
        """Renew, then confirm the renew through a linearizable read at the same raft term.

        etcd (3.4) lets a leader cut off from its quorum renew leases until it steps down,
        possibly after a new leader was elected on the other side. The read that follows
        needs the leader to confirm it still leads a quorum; at the same term that proves
        the renew was made before any newer leader existed, so the new leader (which
        restarts every lease's TTL on election) expires the lease no earlier than the
        holder's deadline assumes. It also checks the key is still this holder's.
        """
        sent = self.clock.monotonic()
        timeout = self.timing.request_timeout
        try:
            ttl, term = await self.etcd.lease_keepalive(self.lease, timeout)
            kv, read_term = await self.etcd.get(self.key, timeout) if ttl > 0 else (None, term)
        except EtcdUnavailable as exc:
            log.warning("renew of %s failed: %s", self.key, exc)
            return
        if ttl > 0 and read_term != term:
            log.warning(
                "renew of %s at term %d not confirmed (read at %d)", self.key, term, read_term
            )
            return
        if ttl > 0 and (kv is None or kv.lease != self.lease):
            self.right.lost("the key is gone or held under another lease")
            return
        self.right.renewed(sent, ttl, self.clock.monotonic())

    async def _run_fence(self) -> None:
        log.warning("fencing %s (%s): %s", self.key, self.holder, self.right.reason)
        for action in (FenceAction.STOP_OUTPUT, FenceAction.KILL_QEMU):
            await self._fence(action)
        self.right.killed()
        self.done.set()
        await self._revoke()

    async def _revoke(self) -> None:
        # A courtesy that lets the other side take over sooner; bounded even if the
        # transport's own timeout fails, since a fenced side must not linger.
        if self.lease:
            with contextlib.suppress(EtcdUnavailable, TimeoutError):
                await asyncio.wait_for(
                    self.etcd.lease_revoke(self.lease, self.timing.request_timeout),
                    2 * self.timing.request_timeout,
                )

    def may_release(self) -> bool:
        """The output gate: may output be released now?"""
        return self.right.may_release(self.clock.monotonic())

    async def release(self) -> None:
        """Give the right up (switchover, shutdown): stop output, then revoke the lease."""
        if self.right.state is not RightState.HOLDING:
            return
        self.right.release()
        await self._fence(FenceAction.STOP_OUTPUT)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._revoke()
        self.done.set()
