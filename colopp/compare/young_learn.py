"""Learning a young connection's offset from both guests' opening segments.

The comparator sees the primary's and the secondary's raw output. For a connection opened
since the last checkpoint, each guest picks its own initial sequence number (ISN) in its
SYN-ACK (the guest accepts) or SYN (the guest connects). The client sees the primary's,
translated by the primary's own table (``isn_client``); the secondary's translator must then
shift that connection by ``delta = secondary_isn - isn_client``.

Unlike QEMU's ``filter-rewriter`` (which infers the primary's ISN from the client's ACK of
the SYN-ACK, ``th_ack - 1``, because it never sees the primary's output), this learns the
offset before anything of the connection is released, so the comparator can replicate it to
the secondary host first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from colopp.compare.seq import MASK

#: (guest address, guest port, peer address, peer port), addresses as integers.
ConnKey = tuple[int, int, int, int]

#: Half-learned connections kept at most (oldest dropped first): a SYN flood costs memory
#: bounded by this, never unbounded growth.
MAX_PENDING = 4096


@dataclass(frozen=True, slots=True)
class Learned:
    """The secondary's translation for ``key``: ``guest_seq = client_seq + delta``."""

    key: ConnKey
    delta: int
    # The primary's ISN, the one its client saw if it saw any (not part of equality: the
    # translation is key and delta).
    isn_client: int = field(default=0, compare=False)


class IsnLearner:
    """Pairs the primary's and the secondary's ISN per connection; see the module doc."""

    __slots__ = (
        "_max_pending",
        "_primary",
        "_secondary",
        "_stale_secondary",
        "_straddling",
        "reopened",
        "straddled",
    )

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._primary: OrderedDict[ConnKey, int] = OrderedDict()
        self._secondary: OrderedDict[ConnKey, int] = OrderedDict()
        # Half-learned when a checkpoint came: never young (see clear()).
        self._straddling: OrderedDict[ConnKey, None] = OrderedDict()
        # The secondary opened these before a checkpoint, the primary not yet: that ISN died
        # with the load (see clear()); a fresh secondary opening after it is learned.
        self._stale_secondary: OrderedDict[ConnKey, int] = OrderedDict()
        self._max_pending = max_pending
        self.straddled = 0  # opening segments ignored because their key straddled a checkpoint
        self.reopened = 0  # offsets learned after the secondary's first opening died in a load

    def __len__(self) -> int:
        return len(self._primary) + len(self._secondary)

    def primary_isn(self, key: ConnKey, isn_client: int) -> Learned | None:
        """The primary opened ``key`` with ``isn_client`` (as the client sees it)."""
        if key in self._straddling:
            self.straddled += 1
            return None
        other = self._secondary.pop(key, None)
        if other is None:
            _remember(self._primary, key, isn_client & MASK, self._max_pending)
            return None
        return self._learned(key, other, isn_client)

    def secondary_isn(self, key: ConnKey, isn: int) -> Learned | None:
        """The secondary opened ``key`` with ``isn`` (its own, untranslated)."""
        if key in self._straddling:
            self.straddled += 1
            return None
        if self._stale_secondary.get(key) == isn & MASK:
            # A retransmission of the opening the load voided (another ISN is the loaded
            # state's own; the entry stays, as a late copy may still come after it).
            self.straddled += 1
            return None
        other = self._primary.pop(key, None)
        if other is None:
            _remember(self._secondary, key, isn & MASK, self._max_pending)
            return None
        return self._learned(key, isn, other)

    def _learned(self, key: ConnKey, secondary: int, primary: int) -> Learned:
        if key in self._stale_secondary:
            self.reopened += 1
        return Learned(key, (secondary - primary) & MASK, primary & MASK)

    def clear(self) -> None:
        """A checkpoint (the primary's STOP, every frame either guest sent before it read).

        Half-learned on the *primary's* side: the primary's guest opened the connection
        before the snapshot, so after the load the secondary holds the same request socket
        with the primary's ISN and needs no offset. Its remaining opening segments (a
        primary SYN-ACK retransmission, a secondary SYN-ACK sent before the load but read
        after the STOP) must not pair up into a bogus offset: such keys are ignored from now
        on (bounded, oldest forgotten first).

        Half-learned on the *secondary's* side: the secondary answered before it stopped
        (it stops first), the primary had not answered yet. The load voids the secondary's
        ISN, but it does not make the two guests agree: if the client's SYN was still
        unprocessed in the snapshot (in the guest's receive ring), both guests answer it
        after the checkpoint, each with its own ISN, and the secondary's ``filter-rewriter``
        translates the connection from then on (it re-learns from the fresh SYN-ACK), so the
        offset must be learned and carried like any young one (issue 18, session 10: a
        connection broken at the switchover after such a checkpoint, once `rew0` no longer
        translated the promoted side). Only the stale ISN is ignored; a secondary opening
        with another ISN is the loaded state's own and pairs with the primary's.
        """
        for key in self._primary:
            _remember(self._straddling, key, None, self._max_pending)
        for key, isn in self._secondary.items():
            if key not in self._straddling:
                _remember(self._stale_secondary, key, isn, self._max_pending)
        self._primary.clear()
        self._secondary.clear()


def _remember(
    pending: OrderedDict[ConnKey, Any], key: ConnKey, isn: int | None, limit: int
) -> None:
    pending[key] = isn
    pending.move_to_end(key)
    while len(pending) > limit:
        pending.popitem(last=False)
