"""The agent's hold on the right to serve a protection (fleet mode).

``hold_right`` takes the protection's key at etcd for this side and keeps renewing it
(:class:`~colopp.arbiter.keeper.RightKeeper`); the answer's ``token`` is what commands to
this side must carry. When the right cannot be kept, the keeper fences this side before
the lease can expire at etcd:

1. stop output: SIGSTOP the QEMU (every vCPU and every net filter halts at once, with no
   QMP round trip that a wedged monitor could delay) and kill the comparator, the only
   path by which a primary's output is released;
2. kill QEMU: SIGKILL, and wait (within the fence budget) until it is reaped.

Without ``hold_right`` nothing changes: the single-controller mode never calls it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from colopp.arbiter.etcd import EtcdGateway
from colopp.arbiter.keeper import Etcd, RightKeeper
from colopp.arbiter.right import FenceAction
from colopp.arbiter.timing import LeaseTiming
from colopp.clock import Clock, SystemClock
from colopp.errors import ConfigError, StaleToken, StateError

log = logging.getLogger(__name__)

RIGHT_METHODS = ("hold_right", "right_status", "release_right")
#: The commands that make a side serve: with :data:`RIGHT_PARAM` they need its right.
SERVE_METHODS = ("failover",)
#: The parameter carrying the fencing token (``colopp.controller.rights.RIGHT_PARAM``).
RIGHT_PARAM = "right_token"


class _Process(Protocol):
    exited: asyncio.Event

    def alive(self) -> bool: ...

    def kill(self, sig: int = ...) -> None: ...


class _Comparator(Protocol):
    def kill(self) -> None: ...


class _Side(Protocol):
    @property
    def process(self) -> _Process: ...

    @property
    def comparator(self) -> _Comparator | None: ...


class ServingRight:
    """One side's right to serve; ``side_of()`` is the side it fences (None: no VM yet)."""

    def __init__(
        self,
        side_of: Callable[[], _Side | None],
        clock: Clock | None = None,
        etcd_for: Callable[[list[str], float], Etcd] | None = None,
    ) -> None:
        self._side_of = side_of
        self.clock = clock or SystemClock()
        self._etcd_for = etcd_for or (lambda urls, timeout: EtcdGateway(urls, timeout=timeout))
        self.keeper: RightKeeper | None = None

    async def hold_right(
        self, endpoints: list[str], key: str, ttl: int = 3, unsafe_no_fence: bool = False
    ) -> dict[str, Any]:
        """Take ``key`` for this side and keep it; returns the fencing token.

        ``unsafe_no_fence`` (tests only: the control that shows two primaries serving when
        nothing fences) keeps the right's bookkeeping but makes every fencing step a no-op.

        Raises:
            ConfigError: bad endpoints, key or TTL.
            StateError: this side already holds a right.
            NotAcquired: another side holds it. EtcdUnavailable: etcd did not answer.
        """
        if not isinstance(endpoints, list) or not all(isinstance(u, str) for u in endpoints):
            raise ConfigError("endpoints must be a list of etcd URLs")
        if not isinstance(key, str) or not key.startswith("colopp/") or len(key) > 200:
            raise ConfigError(f"right key {key!r} must start with 'colopp/'")
        if isinstance(ttl, bool) or not isinstance(ttl, int):
            raise ConfigError("ttl must be an integer")
        if not isinstance(unsafe_no_fence, bool):
            raise ConfigError("unsafe_no_fence must be a boolean")
        if self.keeper is not None and not self.keeper.done.is_set():
            raise StateError(f"this side already holds {self.keeper.key}")
        timing = LeaseTiming(ttl=ttl)
        keeper = RightKeeper(
            self._etcd_for(endpoints, timing.request_timeout),
            key,
            "agent",
            timing,
            self.clock,
            self._not_fencing if unsafe_no_fence else self.fence,
        )
        token = await keeper.acquire()
        self.keeper = keeper
        return {"token": token, "fence_after_s": timing.fence_after}

    async def right_status(self) -> dict[str, Any]:
        """The right's state, token and whether output may flow now."""
        if self.keeper is None:
            return {"state": "none", "token": 0, "may_release": False}
        return {
            "state": self.keeper.right.state.value,
            "token": self.keeper.token,
            "may_release": self.keeper.may_release(),
            "reason": self.keeper.right.reason,
        }

    async def release_right(self) -> dict[str, Any]:
        """Give the right up (switchover): output stops first, then the lease goes."""
        if self.keeper is not None:
            await self.keeper.release()
        return await self.right_status()

    def check_token(self, token: object) -> None:
        """Refuse a command to serve unless ``token`` is this side's current right.

        Raises:
            ConfigError: not a positive integer.
            StaleToken: this side holds no right, or holds it under another token (an
                older one: a controller that does not know the right moved; a newer one
                cannot exist here).
        """
        if isinstance(token, bool) or not isinstance(token, int) or token <= 0:
            raise ConfigError(f"{RIGHT_PARAM} must be a positive integer, got {token!r}")
        keeper = self.keeper
        if keeper is None or keeper.done.is_set() or not keeper.may_release():
            raise StaleToken(f"fencing token {token}: this side holds no right to serve")
        if token != keeper.token:
            raise StaleToken(
                f"fencing token {token} is not this side's right to serve (token {keeper.token})"
            )

    def guard(self, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """``method`` (one of :data:`SERVE_METHODS`), refused unless the token it carries
        is this side's right; a call without one (single-controller mode) passes."""

        async def guarded(**params: Any) -> Any:
            if RIGHT_PARAM in params:
                self.check_token(params.pop(RIGHT_PARAM))
            return await method(**params)

        return guarded

    async def _not_fencing(self, action: FenceAction) -> None:
        log.warning("NOT fencing (unsafe_no_fence, tests only): %s skipped", action.value)

    async def fence(self, action: FenceAction) -> None:
        """One fencing step on this side's QEMU and comparator."""
        side = self._side_of()
        if side is None:
            return
        if action is FenceAction.STOP_OUTPUT:
            side.process.kill(signal.SIGSTOP)
            if side.comparator is not None:
                side.comparator.kill()
            log.warning("fenced output: QEMU stopped, comparator killed")
            return
        side.process.kill(signal.SIGKILL)
        budget = self.keeper.timing.fence_budget if self.keeper else 0.5
        try:
            await asyncio.wait_for(side.process.exited.wait(), budget)
        except TimeoutError:
            log.warning("QEMU not reaped %.1fs after SIGKILL", budget)
        log.warning("fenced: QEMU killed")
