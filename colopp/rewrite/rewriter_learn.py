"""Learning, on the secondary host, exactly the offsets its QEMU ``filter-rewriter`` learns
(pure: frames and times in, offsets out). Used with QEMU's ``colo-compare``
(``--comparator builtin``), where no colopp comparator sees both guests' SYN-ACKs.

``net/filter-rewriter.c`` (QEMU 11) learns a young connection's offset from three segments,
all of which pass the secondary host's two replication streams:

1. the client's SYN (``SYN`` without ``ACK``): state ``SYN_RECEIVED``;
2. the secondary guest's SYN-ACK while ``SYN_RECEIVED``: ``offset = seq`` (its ISN). A
   SYN-ACK is never rewritten, so it reaches the ``red1`` stream as the guest sent it;
3. the client's first ``ACK``-only segment while ``SYN_RECEIVED``: ``offset -= ack - 1``
   (``ack - 1`` is the primary's ISN as the client saw it), state ``ESTABLISHED``. The
   client's frames reach the secondary on the ``red0`` stream unchanged.

A checkpoint the secondary loads (``COLO_EVENT_CHECKPOINT``) sets every offset to 0 and keeps
the states: a handshake whose SYN-ACK came before the load then learns
``offset = -(ack - 1)`` (QEMU's garbage offset, docs/rewrite.md cause 4). The record does
*not* repeat that one: it holds each connection's true offset (the promoted guest's sequence
space minus the client's), and promotion switches ``filter-rewriter`` off and lets colopp's
translator apply the whole record (docs/rewrite.md, "Limit (3) closed"). A handshake with no
secondary SYN-ACK since its SYN or since the last load is run, after that load, by the
primary's copy, which holds the ISN the client acknowledges: its true offset is 0
(counted in ``garbage``: ``filter-rewriter`` holds ``-(ack - 1)`` for it until the next load).

Order. The relay reads a client frame *before* QEMU gets it and a guest frame *after*
``filter-rewriter`` handled it, so a SYN-ACK read before a client ACK also passed the
rewriter first; and ``colo-compare`` releases the primary's SYN-ACK (which the client's ACK
answers) only once the secondary's reached it through this relay, unless it gave up
waiting and checkpointed. A load is known from QEMU's RESUME timestamp, read from QMP
*after* the frames around it: :meth:`RewriterLearner.checkpoint_loaded` zeroes only offsets
taken from SYN-ACKs read at or before that stamp (a guest frame read later was sent after
the load, by the loaded guest), and each learned offset carries the time its client ACK was
read, so the agent can drop those a later load voided (:meth:`YoungOffsets.loaded_at`).

Not modelled: IPv4 with IP options or IPv6 (never young in colopp either), a guest that
connects out (``SYN_SENT``; its offset stays 0 in ``filter-rewriter`` too), and an offset a
connection's earlier incarnation left on a reused 4-tuple within one checkpoint period (a
new SYN here starts at 0).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from colopp.compare.packet import ACK, SYN, parse_plain_tcp
from colopp.compare.young_learn import MAX_PENDING, ConnKey, Learned
from colopp.rewrite.table import MASK

# Offset of the TCP flags byte in an untagged IPv4 frame without IP options.
_FLAGS_AT = 14 + 20 + 13
_SYN_ACK = SYN | ACK


@dataclass(frozen=True, slots=True)
class LearnedAt:
    """An offset ``filter-rewriter`` now applies, and when its client ACK was read."""

    learned: Learned
    at: float


@dataclass(slots=True)
class _Handshake:
    """A connection in ``SYN_RECEIVED``: its offset so far, and when it was set."""

    offset: int = 0
    synack_at: float | None = None


class RewriterLearner:
    """Repeats ``filter-rewriter``'s offset learning from the two replication streams."""

    __slots__ = ("_handshakes", "_max_pending", "garbage", "learned", "zeroed")

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._handshakes: OrderedDict[ConnKey, _Handshake] = OrderedDict()
        self._max_pending = max_pending
        self.learned = 0  # non-zero offsets learned
        self.zeroed = 0  # half-learned offsets a checkpoint load zeroed
        self.garbage = 0  # handshakes filter-rewriter completed from offset 0 (true offset 0)

    def __len__(self) -> int:
        return len(self._handshakes)

    def client_frame(self, frame: bytes, vnet_hdr_len: int, now: float) -> LearnedAt | None:
        """A frame for the guest, read from the primary's mirror at ``now`` (before QEMU
        gets it). Returns the offset its ACK completes, if non-zero."""
        at = vnet_hdr_len + _FLAGS_AT
        if not self._handshakes and len(frame) > at and not frame[at] & SYN:
            return None  # the hot path: no handshake open and no SYN
        parsed = parse_plain_tcp(frame, vnet_hdr_len)
        if parsed is None:
            return None
        (_, src, dst, sport, dport), _seq, ack, flags, _, _ = parsed
        key = (dst, dport, src, sport)
        both = flags & _SYN_ACK
        if both == SYN:
            if key not in self._handshakes:  # a retransmitted SYN keeps what it learned
                self._handshakes[key] = _Handshake()
                while len(self._handshakes) > self._max_pending:
                    self._handshakes.popitem(last=False)
            return None
        if both != ACK:
            return None
        handshake = self._handshakes.pop(key, None)
        if handshake is None:
            return None
        if handshake.synack_at is None:
            # No SYN-ACK of the secondary since the SYN or the last load: filter-rewriter
            # now holds -(ack - 1), but the guest runs the connection with the ISN the
            # client took (the loaded primary's): nothing to translate once it is off.
            self.garbage += 1
            return None
        isn_client = (ack - 1) & MASK
        delta = (handshake.offset - isn_client) & MASK
        if delta == 0:
            return None
        self.learned += 1
        return LearnedAt(Learned(key, delta, isn_client), now)

    def guest_frame(self, frame: bytes, vnet_hdr_len: int, now: float) -> None:
        """A frame the secondary guest sent, read from ``red1`` at ``now`` (after
        ``filter-rewriter`` handled it)."""
        if not self._handshakes:
            return
        at = vnet_hdr_len + _FLAGS_AT
        if len(frame) > at and not frame[at] & SYN:
            return
        parsed = parse_plain_tcp(frame, vnet_hdr_len)
        if parsed is None:
            return
        (_, src, dst, sport, dport), seq, _ack, flags, _, _ = parsed
        if flags & _SYN_ACK != _SYN_ACK:
            return
        handshake = self._handshakes.get((src, sport, dst, dport))
        if handshake is not None:
            handshake.offset = seq & MASK
            handshake.synack_at = now

    def checkpoint_loaded(self, stamp: float) -> None:
        """The secondary loaded a checkpoint and resumed at ``stamp`` (QEMU's RESUME time,
        the relay's clock): offsets set from SYN-ACKs read by then are zeroed."""
        for handshake in self._handshakes.values():
            if handshake.synack_at is not None and handshake.synack_at <= stamp:
                if handshake.offset:
                    self.zeroed += 1
                handshake.offset = 0
                handshake.synack_at = None
