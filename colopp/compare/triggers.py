"""When the comparator asks QEMU for a checkpoint, and why. Pure: time is passed in.

A divergence (a mismatch, a queue overflow) asks at once; timers ask from
:meth:`~colopp.compare.core.Comparator.tick`: a held primary frame past
``compare_timeout`` (with ``secondary_timeout``, unmatched secondary output too), a lagging
secondary (``max_lag``), a head parked behind bytes the secondary skipped
(``secondary_gap_wait``) or waiting only for its ACK (``ack_wait``).
Some checkpoints are not divergences: a new IPv6 connection's opening segment
(:data:`IPV6_NEW_CONNECTION`) and the pre-release policy's re-arm. At most one request is
pending; an unanswered one is asked again after ``checkpoint_retry``.
"""

from __future__ import annotations

from collections.abc import Iterable

from colopp.compare.config import CompareConfig
from colopp.compare.counters import Counters
from colopp.compare.flows import DatagramFlow
from colopp.compare.held import HeldFrame
from colopp.compare.packet import FlowKey
from colopp.compare.sweep import oldest_secondary
from colopp.compare.tcp import TcpConnection
from colopp.compare.tcp_check import SECONDARY_ACK_WAIT, SECONDARY_GAP
from colopp.compare.tcp_waits import waits_on_ack, waits_on_gap
from colopp.compare.verdict import Action, Checkpoint

#: Held frames a tick looks through for the oldest one that did not leave early (bounds the
#: work; past it, only ``max_lag_early`` applies).
WAITING_SCAN = 4096

#: The reason of the checkpoint a new IPv6 connection's opening segment waits for.
IPV6_NEW_CONNECTION = "ipv6_new_connection"


class CheckpointTrigger:
    """The comparator's checkpoint requests: at most one pending (:attr:`since`)."""

    __slots__ = ("counters", "since")

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        #: When the pending request was made (None: none is pending).
        self.since: float | None = None

    def request(self, reason: str, now: float) -> list[Action]:
        """A divergence (``reason``): a checkpoint, unless one is pending already."""
        if self.since is not None:
            if reason.endswith("mismatch"):
                self.counters.divergences[reason] += 1
            return []
        self.counters.divergences[reason] += 1
        return self._ask(reason, now)

    def request_birth(self, now: float) -> list[Action]:
        """A checkpoint for a new IPv6 connection's opening segment (not a divergence): the
        secondary then holds its sequence numbers before the client sees them."""
        self.counters.ipv6_birth_checkpoints += 1
        return [] if self.since is not None else self._ask(IPV6_NEW_CONNECTION, now)

    def request_rearm(self, now: float) -> list[Action]:
        """Not a divergence: a checkpoint bought to let reads leave early again (the caller
        checked none is pending)."""
        self.counters.rearm_checkpoints += 1
        return self._ask("prerelease_rearm", now)

    def retry_due(self, now: float, retry_after: float) -> list[Action]:
        """Ask again for a checkpoint pending ``retry_after`` seconds or more."""
        since = self.since
        if since is None or now - since < retry_after:
            return []
        return self._ask("checkpoint_retry", now)

    def done(self) -> None:
        """The checkpoint ended: nothing is pending."""
        self.since = None

    def _ask(self, reason: str, now: float) -> list[Action]:
        self.since = now
        self.counters.checkpoints_requested += 1
        return [Checkpoint(reason)]


def held_too_long(
    config: CompareConfig,
    tcp: dict[FlowKey, TcpConnection],
    head: HeldFrame | None,
    now: float,
    held: Iterable[HeldFrame] = (),
) -> str | None:
    """Why the oldest held primary frame ``head`` (None: nothing is held) forces a
    checkpoint now, or None. ``held``: every held frame in arrival order (``head`` first),
    looked at only when ``max_lag_early`` lets frames that left early wait longer."""
    age = now - head.arrival if head is not None else 0.0
    lag = config.max_lag
    if age > config.compare_timeout:
        return "compare_timeout"
    if lag is not None and age > lag and lag_passed(config, held, age, now):
        return "secondary_lag"  # a lagging secondary skips its backlog
    if head is None:
        return None
    # Only the connection of the oldest held frame is looked at: one lookup per tick.
    conn = tcp.get(head.key)
    if conn is None:
        return None
    if (
        age >= config.secondary_gap_wait
        and conn.queue
        and conn.stream.pending_bytes
        and waits_on_gap(conn, conn.queue[0])
    ):
        return SECONDARY_GAP
    wait = config.ack_wait
    if wait is not None and age >= wait and waits_on_ack(conn, now, wait):
        return SECONDARY_ACK_WAIT
    return None


def lag_passed(config: CompareConfig, held: Iterable[HeldFrame], age: float, now: float) -> bool:
    """The head is ``age`` old, past ``max_lag``: is a lag bound passed? Without
    ``max_lag_early`` yes; with it, when the head is older than that, or the oldest frame
    that did not leave early (a client waits for it) is older than ``max_lag``."""
    early, lag = config.max_lag_early, config.max_lag
    if early is None or age > early:
        return True
    assert lag is not None
    for index, frame in enumerate(held):
        if index >= WAITING_SCAN:
            break
        if not frame.released and not frame.pre_released:
            return now - frame.arrival > lag
    return False


def secondary_overdue(
    config: CompareConfig,
    tcp: dict[FlowKey, TcpConnection],
    flows: dict[FlowKey, DatagramFlow],
    now: float,
) -> bool:
    """colo-compare's check of the secondary's side (``secondary_timeout`` on): some of its
    output has been left unmatched for longer than ``compare_timeout``."""
    if not config.secondary_timeout:
        return False
    oldest = oldest_secondary(tcp, flows)
    return oldest is not None and now - oldest > config.compare_timeout
