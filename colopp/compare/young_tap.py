"""The comparator's side of young-offset learning (pure): SYN-ACKs in, offsets out.

The comparator calls :meth:`YoungTap.primary` and :meth:`YoungTap.secondary` with every
frame it reads from each guest (before its own core); only segments carrying SYN cost more
than one byte test. The epoch boundary is the primary's STOP (:meth:`YoungTap.checkpoint_started`,
called once every frame sent before it has been read): whatever either guest sends after it
is the next epoch's, as in the comparator's core. :meth:`YoungTap.checkpoint_completed` (the
primary resumed) only confirms it. Until session 6 the boundary was the RESUME: frames the
primary sent right after resuming (the SYN-ACK of a SYN queued during the checkpoint pause)
were read before the comparator processed the RESUME event, so that connection was taken
for one half-learned across the checkpoint and never learned, although both guests opened it
after the load and the secondary's ``filter-rewriter`` translated it (issue 18, the one
connection broken at a connection every 0.1 s). Each learned offset comes back as a
:class:`YoungMessage` to send to the secondary host (:mod:`colopp.compare.young_send`)
*before* that connection's SYN-ACK is released.

*Adoption* (issue 18). A learned offset is right only if the client took the primary's
SYN-ACK. If the primary dies after the offset reached the secondary host but before its
SYN-ACK reached the client, the client retransmits its SYN to the promoted secondary, takes
*its* ISN, and the connection needs no translation: an offset kept in the promoted side's
record would shift it wrongly after the next re-protection (measured: the churn bench's
connection opened at the kill). A guest sends nothing but SYN-ACKs until the client's ACK of
its SYN-ACK arrived, so the first ACK-carrying, non-SYN, non-RST segment of a learned
connection from *either* guest proves the client took the primary's ISN:
:meth:`YoungTap.adoption` reports it (only while some learned offset awaits it), and the
secondary host keeps in the record only adopted offsets.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from colopp.compare.packet import ACK, RST, SYN, parse_plain_tcp
from colopp.compare.young_learn import MAX_PENDING, ConnKey, IsnLearner, Learned

# Offset of the TCP flags byte in an untagged IPv4 frame without IP options.
_FLAGS_AT = 14 + 20 + 13


@dataclass(frozen=True, slots=True)
class YoungMessage:
    learned: Learned
    epoch: int

    def to_json(self) -> dict[str, Any]:
        g, gp, p, pp = self.learned.key
        return {
            "op": "young",
            "guest": [g, gp],
            "peer": [p, pp],
            "delta": self.learned.delta,
            "epoch": self.epoch,
            "adoption": True,  # an "adopted" message will follow once the client took it
            "isn": self.learned.isn_client,
        }


def adopted_json(key: ConnKey, epoch: int) -> dict[str, Any]:
    """The message saying the client took the primary's ISN for ``key``."""
    g, gp, p, pp = key
    return {"op": "adopted", "guest": [g, gp], "peer": [p, pp], "epoch": epoch}


class YoungTap:
    """Learns young connections' offsets from both guests' opening segments."""

    __slots__ = ("_stopped", "awaiting", "epoch", "learner")

    def __init__(self) -> None:
        self.learner = IsnLearner()
        self.epoch = 0  # checkpoints started (STOP seen) since COLO started
        self._stopped = False  # between a STOP and its RESUME
        # Learned offsets whose adoption is not proven yet (bounded, oldest dropped: an
        # offset never proven adopted is left out of the record, the safe side).
        self.awaiting: OrderedDict[ConnKey, int] = OrderedDict()

    def primary(self, frame: bytes, vnet_hdr_len: int = 0) -> YoungMessage | None:
        isn = _opening_isn(frame, vnet_hdr_len)
        if isn is None:
            return None
        return self._message(self.learner.primary_isn(isn[0], isn[1]))

    def secondary(self, frame: bytes, vnet_hdr_len: int = 0) -> YoungMessage | None:
        isn = _opening_isn(frame, vnet_hdr_len)
        if isn is None:
            return None
        return self._message(self.learner.secondary_isn(isn[0], isn[1]))

    def adoption(self, frame: bytes, vnet_hdr_len: int = 0) -> tuple[ConnKey, int] | None:
        """The key and epoch of a learned offset that this guest frame proves adopted
        (once), else None. Call it only while :attr:`awaiting` is not empty (it parses
        every frame)."""
        parsed = parse_plain_tcp(frame, vnet_hdr_len)
        if parsed is None:
            return None
        (_, src, dst, sport, dport), _seq, _ack, flags, _, _ = parsed
        if flags & (SYN | RST) or not flags & ACK:
            return None
        key = (src, sport, dst, dport)
        epoch = self.awaiting.pop(key, None)
        return None if epoch is None else (key, epoch)

    def checkpoint_started(self) -> None:
        """The primary stopped for a checkpoint and everything it sent before is read: what
        either guest sends from now on is the next epoch's. A pair half-learned now straddles
        the checkpoint and is void (see :meth:`IsnLearner.clear`)."""
        if not self._stopped:
            self._stopped = True
            self.epoch += 1
            self.learner.clear()

    def checkpoint_completed(self) -> None:
        """The secondary is the primary's copy again (the primary resumed). Offsets of older
        epochs no longer await adoption (the load voided them); those learned since the
        STOP are the new epoch's and stay. Without a STOP (no QMP monitor) this is the
        boundary too."""
        self.checkpoint_started()
        self._stopped = False
        for key in [k for k, epoch in self.awaiting.items() if epoch < self.epoch]:
            del self.awaiting[key]

    def _message(self, learned: Learned | None) -> YoungMessage | None:
        if learned is None or learned.delta == 0:
            return None
        self.awaiting[learned.key] = self.epoch
        self.awaiting.move_to_end(learned.key)
        while len(self.awaiting) > MAX_PENDING:
            self.awaiting.popitem(last=False)
        return YoungMessage(learned, self.epoch)


def _opening_isn(frame: bytes, vnet_hdr_len: int) -> tuple[tuple[int, int, int, int], int] | None:
    """((guest, gport, peer, pport), ISN) of a guest's SYN or SYN-ACK, else None."""
    at = vnet_hdr_len + _FLAGS_AT
    if len(frame) > at and not frame[at] & SYN and frame[vnet_hdr_len + 14] == 0x45:
        return None  # the hot path: plain IPv4/TCP-sized frame without SYN
    parsed = parse_plain_tcp(frame, vnet_hdr_len)
    if parsed is None:
        return None
    (_, src, dst, sport, dport), seq, _ack, flags, _, _ = parsed
    if not flags & SYN:
        return None
    return (src, sport, dst, dport), seq
