"""The comparator's side of young-offset learning (pure): SYN-ACKs in, offsets out.

The comparator calls :meth:`YoungTap.primary` and :meth:`YoungTap.secondary` with every
frame it reads from each guest (before its own core); only segments carrying SYN cost more
than one byte test. :meth:`YoungTap.checkpoint_completed` is called when the primary resumes
after a checkpoint (the comparator's epoch boundary). Each learned offset comes back as a
:class:`YoungMessage` to send to the secondary host (:mod:`colopp.compare.young_send`)
*before* that connection's SYN-ACK is released.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from colopp.compare.packet import SYN, parse_plain_tcp
from colopp.compare.young_learn import IsnLearner, Learned

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
        }


class YoungTap:
    """Learns young connections' offsets from both guests' opening segments."""

    __slots__ = ("epoch", "learner")

    def __init__(self) -> None:
        self.learner = IsnLearner()
        self.epoch = 0  # checkpoints completed since COLO started

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

    def checkpoint_completed(self) -> None:
        """The secondary is the primary's copy again: half-learned pairs are void."""
        self.epoch += 1
        self.learner.clear()

    def _message(self, learned: Learned | None) -> YoungMessage | None:
        if learned is None or learned.delta == 0:
            return None
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
