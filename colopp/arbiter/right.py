"""The holder's side of a right to serve: a pure state machine.

It takes what happened (the grant, renew answers, the clock) and says what to do (stop
releasing output, kill QEMU). It never waits and never talks to etcd; the keeper
(:mod:`colopp.arbiter.keeper`) does, and feeds it. Times are the holder's monotonic clock.

    IDLE --granted--> HOLDING --(deadline | lost | clock went back)--> FENCING --killed--> FENCED
                         └--release--> RELEASED

A renew answer counts from when its request was *sent* (etcd received it no earlier), and
an answer older than the newest one already counted never shortens nor lengthens anything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from colopp.arbiter.timing import LeaseTiming
from colopp.errors import StateError


class RightState(enum.Enum):
    """Lifecycle of one right to serve."""

    IDLE = "idle"
    HOLDING = "holding"
    FENCING = "fencing"
    FENCED = "fenced"
    RELEASED = "released"


class FenceAction(enum.Enum):
    """What the holder must do, in this order."""

    STOP_OUTPUT = "stop-output"
    KILL_QEMU = "kill-qemu"


_ALLOWED: dict[RightState, frozenset[RightState]] = {
    RightState.IDLE: frozenset({RightState.HOLDING}),
    RightState.HOLDING: frozenset({RightState.FENCING, RightState.RELEASED}),
    RightState.FENCING: frozenset({RightState.FENCED}),
    RightState.FENCED: frozenset(),
    RightState.RELEASED: frozenset(),
}

FENCE = (FenceAction.STOP_OUTPUT, FenceAction.KILL_QEMU)


@dataclass
class ServeRight:
    """One side's right to serve one protection."""

    timing: LeaseTiming
    state: RightState = RightState.IDLE
    token: int = 0
    #: When the newest renew etcd acknowledged was sent (holder's clock).
    renewed_sent_at: float = 0.0
    reason: str = ""
    #: Every transition as (from, to, reason): tests assert the exact sequence.
    transitions: list[tuple[RightState, RightState, str]] = field(default_factory=list)
    _last_now: float = float("-inf")

    def _move(self, to: RightState, reason: str) -> None:
        if to not in _ALLOWED[self.state]:
            raise StateError(f"right to serve: {self.state.value} -> {to.value} not allowed")
        self.transitions.append((self.state, to, reason))
        self.state, self.reason = to, reason

    @property
    def fence_at(self) -> float:
        """When fencing must start (holder's clock)."""
        return self.renewed_sent_at + self.timing.fence_after

    def granted(self, token: int, sent_at: float) -> None:
        """The lease was granted (requested at ``sent_at``) and the key created at ``token``.

        Raises:
            StateError: not IDLE, or a token that is not positive.
        """
        if token <= 0:
            raise StateError(f"fencing token must be positive, got {token}")
        self._move(RightState.HOLDING, "granted")
        self.token, self.renewed_sent_at = token, sent_at

    def renewed(self, sent_at: float, ttl: int, now: float) -> tuple[FenceAction, ...]:
        """etcd answered a renew sent at ``sent_at`` with ``ttl`` (0: the lease is gone)."""
        if self.state is not RightState.HOLDING:
            return ()
        if ttl <= 0:
            return self._fence("lease gone at etcd")
        if ttl < self.timing.ttl:  # a shorter lease than planned: never trust more than asked
            return self._fence(f"etcd renewed for {ttl}s, less than {self.timing.ttl}s")
        self.renewed_sent_at = max(self.renewed_sent_at, sent_at)
        return self.tick(now)

    def lost(self, why: str) -> tuple[FenceAction, ...]:
        """The key is gone or belongs to someone else: fence now."""
        if self.state is not RightState.HOLDING:
            return ()
        return self._fence(why)

    def tick(self, now: float) -> tuple[FenceAction, ...]:
        """Look at the clock; fence when the deadline passed or the clock went backwards."""
        back = now < self._last_now
        self._last_now = max(self._last_now, now)
        if self.state is not RightState.HOLDING:
            return ()
        if back:
            return self._fence("monotonic clock went backwards")
        if now >= self.fence_at:
            return self._fence(f"no renew acknowledged for {now - self.renewed_sent_at:.2f}s")
        return ()

    def may_release(self, now: float) -> bool:
        """May output be released at ``now``? (Checked on every release: the output gate.)"""
        return self.state is RightState.HOLDING and self._last_now <= now < self.fence_at

    def killed(self) -> None:
        """The local QEMU is dead (reaped): fencing is complete (``reason`` stays why)."""
        why = self.reason
        self._move(RightState.FENCED, "qemu killed")
        self.reason = why

    def release(self) -> tuple[FenceAction, ...]:
        """Give the right up on purpose (switchover): stop output before the key goes."""
        self._move(RightState.RELEASED, "released")
        return (FenceAction.STOP_OUTPUT,)

    def _fence(self, why: str) -> tuple[FenceAction, ...]:
        self._move(RightState.FENCING, why)
        return FENCE
