"""The secondary host's log of client bytes its guest has not acknowledged yet. Pure.

Fed every client -> guest frame the primary's mirror delivers (:meth:`ClientLog.client_frame`)
and every frame the secondary guest sends (:meth:`ClientLog.guest_frame`). Per TCP connection
it keeps the client's segments until the guest acknowledges their bytes, and knows the
contiguous range ``[start, end)`` of client bytes it holds: what a receipt may promise
(:meth:`ClientLog.receipts`). At failover, :meth:`ClientLog.unacked` gives the frames to
deliver again to the promoted guest, until its ACKs cover them.

Sequence numbers are the client's: ``filter-rewriter`` rewrites the guest's sequence numbers
and the client's ACK field, never the client's sequence numbers nor the guest's ACK field.
Positions are unwrapped per connection (see :mod:`~colopp.compare.tcp`). Memory is bounded
by ``max_bytes``: a frame past it is not kept, so ``end`` stops there (a receipt never
promises it) until the guest's own ACK passes it.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import NamedTuple

from colopp.compare.packet import (
    ACK,
    FIN,
    RST,
    SYN,
    TCP,
    FlowKey,
    Malformed,
    Packet,
    parse_frame,
)
from colopp.compare.receipts import Receipt
from colopp.compare.seq import HALF, MASK

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class OwedAck(NamedTuple):
    """A client ACK the secondary guest was not given yet (the relay lowered it: the guest
    had not sent that far), handed to the replay at failover."""

    ack: int  # the client's ACK (a guest sequence number)
    frame: bytes  # the client frame furthest in sequence (plain Ethernet): the bare ACK's model
    sent_end: int | None  # the end of what the guest had sent, as the relay saw it


@dataclass
class _Connection:
    """One client connection's log; positions relative to ``anchor`` (a client seq)."""

    anchor: int
    start: int = 0  # every client byte in [start, end) is held (or acknowledged by the guest)
    end: int = 0
    guest_ack: int | None = None  # position
    # (start, end, frame) of kept segments, sorted by start; a FIN counts one position.
    segments: list[tuple[int, int, bytes]] = field(default_factory=list)

    def pos(self, seq: int) -> int:
        d = (seq - self.anchor) & MASK
        return d - (1 << 32) if d >= HALF else d

    def seq(self, pos: int) -> int:
        return (self.anchor + pos) & MASK

    def extend(self, index: int) -> None:
        """Move ``end`` over the kept segments from ``index`` on that touch it.

        Invariant kept: no segment that starts at or before ``end`` reaches past it, so a
        new segment only needs the walk from its own index.
        """
        for seg_start, seg_end, _ in self.segments[index:]:
            if seg_start > self.end:
                return
            self.end = max(self.end, seg_end)

    def trim(self, ack: int) -> int:
        """Forget the segments whose bytes all lie below ``ack``; returns bytes freed."""
        segments = self.segments
        i = bisect_left(segments, (ack, -1, b""))
        if not i:
            return 0
        below = segments[:i]
        keep = [seg for seg in below if seg[1] > ack]
        freed = sum(len(seg[2]) for seg in below if seg[1] <= ack)
        segments[:i] = keep
        return freed


class ClientLog:
    """The client bytes this host holds, per connection (keyed guest -> client, as the
    comparator keys them)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes_kept = 0
        self.frames_refused = 0  # not kept: over max_bytes
        self._conns: dict[FlowKey, _Connection] = {}
        #: Set at failover (:meth:`~colopp.ingress.relay.Relay.promote`): the client ACKs
        #: the guest still needs, per connection (guest -> client); the replay's to send.
        self.owed_acks: dict[FlowKey, OwedAck] = {}
        self._dirty: set[FlowKey] = set()
        # Connections whose last receipt the comparator may have forgotten (a checkpoint, a
        # new stream to it): their next guest ACK is followed by a receipt even if only
        # ``start`` moved, as every ACK's was before receipts were sent only on ``end``.
        self._forgotten: set[FlowKey] = set()

    def client_frame(
        self, frame: bytes, vnet_hdr_len: int = 0, pkt: Packet | Malformed | None = None
    ) -> None:
        """A client -> guest frame as the primary's mirror delivered it (``pkt``: the frame
        parsed already, by the caller)."""
        if pkt is None:
            pkt = parse_frame(frame, vnet_hdr_len)
        if isinstance(pkt, Malformed) or pkt.kind != TCP:
            return
        _, client, guest, cport, gport = pkt.key
        size = pkt.payload_end - pkt.payload_start + (1 if pkt.flags & FIN else 0)
        plain = frame[vnet_hdr_len:] if vnet_hdr_len else frame
        self.client_segment((TCP, guest, client, gport, cport), pkt.flags, pkt.seq, size, plain)

    def client_segment(self, key: FlowKey, flags: int, seq: int, size: int, frame: bytes) -> None:
        """:meth:`client_frame` on fields read already: ``key`` guest -> client, ``size``
        the payload plus one for a FIN, ``frame`` plain Ethernet (no vnet header). The
        relay's hot path calls it only for frames with a SYN, RST or FIN, or payload."""
        conn = self._conns.get(key)
        if flags & RST:
            self._drop(key)
            return
        if flags & SYN:
            if conn is None or conn.seq(0) != (seq + 1) & MASK:
                self._drop(key)  # a new incarnation of the 4-tuple
                self._conns[key] = _Connection((seq + 1) & MASK)
            return
        if not size:
            return
        if conn is None:  # first seen mid-stream: hold from here on
            conn = self._conns[key] = _Connection(seq)
        start = conn.pos(seq)
        end = start + size
        if end <= conn.start:
            return  # the guest acknowledged all of it already
        if self.bytes_kept + len(frame) > self.max_bytes:
            self.frames_refused += 1
            return
        segment = (start, end, frame)
        segments = conn.segments
        if not segments or segments[-1] < segment:  # in order: the common case
            index = len(segments)
            segments.append(segment)
        else:
            index = bisect_left(segments, segment)
            segments.insert(index, segment)
        self.bytes_kept += len(frame)
        if start <= conn.end < end:
            conn.extend(index)
            self._dirty.add(key)

    def guest_frame(
        self, frame: bytes, vnet_hdr_len: int = 0, pkt: Packet | Malformed | None = None
    ) -> None:
        """A frame the secondary guest sent: its ACK releases what it acknowledges."""
        if pkt is None:
            pkt = parse_frame(frame, vnet_hdr_len)
        if isinstance(pkt, Malformed) or pkt.kind != TCP:
            return
        self.guest_ack(pkt.key, pkt.flags, pkt.ack)

    def guest_ack(self, key: FlowKey, flags: int, ack: int) -> None:
        """:meth:`guest_frame` on fields read already (``key`` guest -> client).

        A receipt follows only when ``end`` moved: one whose ``start`` alone moved (to the
        guest's ACK) promises the comparator nothing new, since coverage asks ``start <=``
        the secondary guest's ACK, which the old ``start`` already met (receipts.py).
        """
        conn = self._conns.get(key)
        if conn is None:
            return
        if flags & RST:
            self._drop(key)
            return
        if not flags & ACK or flags & SYN:
            return
        ack = conn.pos(ack)
        if conn.guest_ack is not None and ack <= conn.guest_ack:
            return
        conn.guest_ack = ack
        if conn.segments:
            self.bytes_kept -= conn.trim(ack)
        if ack > conn.start:
            conn.start = ack
            if ack > conn.end:
                # The guest got bytes this host did not keep: hold again from its ACK on.
                conn.end = ack
                conn.extend(0)
                self._dirty.add(key)
            elif key in self._forgotten:
                self._dirty.add(key)
            self._forgotten.discard(key)

    def receipts_forgotten(self) -> None:
        """The comparator forgot every receipt (a checkpoint, or a new stream to it): the
        next guest ACK on each connection is followed by a receipt again."""
        self._forgotten = set(self._conns)

    def has_receipts(self) -> bool:
        """True when :meth:`receipts` has something to say."""
        return bool(self._dirty)

    def receipts(self) -> list[Receipt]:
        """What changed since the last call: ``(key, start, end)`` per connection, client
        sequence numbers. Send them after every guest frame already forwarded."""
        out = [
            Receipt(key, conn.seq(conn.start), conn.seq(conn.end))
            for key in sorted(self._dirty)
            if (conn := self._conns.get(key)) is not None
        ]
        self._dirty.clear()
        return out

    def unacked(self) -> list[bytes]:
        """Every kept frame (plain Ethernet, no vnet header) with bytes past its guest's
        ACK, per connection in stream order: what the promoted guest must be given again
        (it drops what it has)."""
        out: list[bytes] = []
        for conn in self._conns.values():
            ack = conn.guest_ack
            out += [f for _, end, f in conn.segments if ack is None or end > ack]
        return out

    def unacked_of(self, key: FlowKey) -> list[bytes]:
        """:meth:`unacked` for one connection (keyed guest -> client)."""
        conn = self._conns.get(key)
        if conn is None:
            return []
        ack = conn.guest_ack
        return [f for _, end, f in conn.segments if ack is None or end > ack]

    def settled(self) -> bool:
        """True when the guest acknowledged every kept byte."""
        return not self.unacked()

    def _drop(self, key: FlowKey) -> None:
        conn = self._conns.pop(key, None)
        if conn is not None:
            self.bytes_kept -= sum(len(s[2]) for s in conn.segments)
        self._dirty.discard(key)
        self._forgotten.discard(key)
