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

    __slots__ = ("_max_pending", "_primary", "_secondary", "_straddling", "straddled")

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._primary: OrderedDict[ConnKey, int] = OrderedDict()
        self._secondary: OrderedDict[ConnKey, int] = OrderedDict()
        # Half-learned when a checkpoint came: never young (see clear()).
        self._straddling: OrderedDict[ConnKey, None] = OrderedDict()
        self._max_pending = max_pending
        self.straddled = 0  # opening segments ignored because their key straddled a checkpoint

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
        return Learned(key, (other - isn_client) & MASK, isn_client & MASK)

    def secondary_isn(self, key: ConnKey, isn: int) -> Learned | None:
        """The secondary opened ``key`` with ``isn`` (its own, untranslated)."""
        if key in self._straddling:
            self.straddled += 1
            return None
        other = self._primary.pop(key, None)
        if other is None:
            _remember(self._secondary, key, isn & MASK, self._max_pending)
            return None
        return Learned(key, (isn - other) & MASK, other)

    def clear(self) -> None:
        """A checkpoint: the secondary became the primary's copy, so a connection half-learned
        now exists in both guests with the primary's ISN and needs no offset. Its remaining
        opening segments (a primary SYN-ACK retransmission, a secondary SYN-ACK sent before
        the checkpoint but read after it) must not pair up into a bogus offset: such keys
        are ignored from now on (bounded, oldest forgotten first)."""
        for key in (*self._primary, *self._secondary):
            _remember(self._straddling, key, None, self._max_pending)
        self._primary.clear()
        self._secondary.clear()


def _remember(
    pending: OrderedDict[ConnKey, Any], key: ConnKey, isn: int | None, limit: int
) -> None:
    pending[key] = isn
    pending.move_to_end(key)
    while len(pending) > limit:
        pending.popitem(last=False)
