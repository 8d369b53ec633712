"""The etcd right to serve, as the controller drives it for one pair (fleet etcd mode).

With etcd endpoints configured, a pair's serving side holds the protection's key at etcd
(the agent's ``hold_right``, :class:`colopp.agent.serving.ServingRight`): it renews the
lease and fences its own QEMU before the lease can expire when it cannot. The controller:

- asks the primary to hold the right once the pair is protected;
- at a failover of the primary, asks the old primary to give the right up (best effort: a
  live side failed over on purpose revokes its lease at once; a lost host cannot answer,
  and its lease expires after its own fence), then has the survivor take the right,
  retrying while the old holder's lease lives, *before* it makes it serve;
- sends the right's revision (the fencing token) with the ``failover`` command as
  :data:`RIGHT_PARAM`; the agent refuses a token that is not its own current right's.

Without endpoints (:attr:`PairController.rights` None) nothing here runs: the
single-controller mode is unchanged.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from colopp.clock import Clock
from colopp.controller.seam import Agent
from colopp.errors import ColoppError, ConfigError, NotAcquired

#: The ``failover`` parameter that carries the serving side's fencing token.
RIGHT_PARAM = "right_token"
#: The key prefix of a protection's right at etcd.
RIGHT_PREFIX = "colopp/right/"
#: How often the survivor retries while the old holder's lease lives (seconds).
RETRY_S = 0.2


def right_key(protection: str) -> str:
    """The etcd key of ``protection``'s right to serve.

    Raises:
        ConfigError: an empty name or one with a slash.
    """
    if not protection or "/" in protection or len(protection) > 100:
        raise ConfigError(f"protection name {protection!r} cannot name a right")
    return RIGHT_PREFIX + protection


def acquire_within(ttl: int) -> float:
    """How long a survivor may wait for the old holder's lease to go: a lost holder stops
    renewing at the latest when it is declared lost, so its lease is gone one TTL later;
    one more TTL covers an etcd leader change (which restarts every lease's TTL)."""
    return 2.0 * ttl + 1.0


@dataclass
class PairRights:
    """One pair's right to serve at etcd: where it is, and the serving side's token."""

    endpoints: list[str]
    key: str
    ttl: int = 3
    token: int = 0  # the serving side's fencing token (0: not known yet)
    #: Tests only: the holder does not fence itself when it loses the right (the control
    #: scenario that must show two primaries; ``hold_right``'s ``unsafe_no_fence``).
    unsafe_no_fence: bool = False

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ConfigError("a right to serve needs etcd endpoints")
        if isinstance(self.ttl, bool) or not isinstance(self.ttl, int) or self.ttl < 2:
            raise ConfigError(f"right ttl {self.ttl!r} must be an integer >= 2")

    async def hold(self, agent: Agent, clock: Clock, within: float | None = None) -> int:
        """Have ``agent``'s side take the right; retry while another holder's lease lives.

        Raises:
            NotAcquired: still held by another side after ``within`` seconds.
            ColoppError: the agent or etcd failed otherwise.
        """
        deadline = clock.monotonic() + (acquire_within(self.ttl) if within is None else within)
        while True:
            try:
                unsafe = {"unsafe_no_fence": True} if self.unsafe_no_fence else {}
                reply = await agent.call(
                    "hold_right",
                    timeout=5.0,
                    endpoints=self.endpoints,
                    key=self.key,
                    ttl=self.ttl,
                    **unsafe,
                )
            except NotAcquired:
                if clock.monotonic() + RETRY_S > deadline:
                    raise
                await clock.sleep(RETRY_S)
                continue
            self.token = int(reply["token"])
            return self.token

    async def current(self, agent: Agent) -> int:
        """The serving side's token (asked of its agent when this controller does not know
        it, e.g. after a re-attach).

        Raises:
            ColoppError: the agent failed, or its side holds no right.
        """
        if not self.token:
            status: dict[str, Any] = await agent.call("right_status", timeout=5.0)
            if status.get("state") != "holding" or not status.get("token"):
                raise NotAcquired(f"{agent.name} holds no right to serve {self.key}")
            self.token = int(status["token"])
        return self.token

    async def give_up(self, agent: Agent, timeout: float = 1.0) -> None:
        """Best effort: the (old) serving side stops output and revokes its lease."""
        self.token = 0
        with contextlib.suppress(ColoppError):
            await agent.call("release_right", timeout=timeout)
