"""Pure rewriting of one frame through an :class:`~colopp.rewrite.table.OffsetTable`.

- :func:`translate_guest_output`: a frame the guest sent. Its ``seq`` is in the guest's space
  and goes out in the client's (``seq - delta``).
- :func:`translate_client_input`: a frame for the guest. Its ``ack`` and SACK blocks are in
  the client's space and go in in the guest's (``+ delta``).

The TCP checksum is updated incrementally (RFC 1624), so the payload is never summed.
Frames of connections without an entry -- and every frame when the table is empty -- come
back as the very same ``bytes`` object, untouched: that is the hot path. Both functions
never raise: a frame they cannot parse passes unchanged. They also feed the entry's FIN/RST
tracking (see :class:`~colopp.rewrite.table.Entry`).

A frame whose virtio-net header asks for checksum offload (``NEEDS_CSUM``: a guest with
send offloads, or a client's segment passed to a guest with ``rx_offload``) holds only the
pseudo-header's sum in its checksum field; the device sums the TCP bytes, rewritten ones
included, when it completes it. So such a frame's checksum field is left as it is: the
rewrite changes neither the addresses nor the length that sum covers.
"""

from __future__ import annotations

import struct

from colopp.compare.checksum import adjust32 as _adjust32
from colopp.rewrite.table import MASK, SYN_REUSE_IDLE_S, ConnKey, Entry, OffsetTable

_ETH_HLEN = 14
_TCP = 6
_ACK = 0x10
_SYN = 0x02
_SACK = 5
_EOL = 0
_NOP = 1

_IP_HEAD = struct.Struct(">HBxHxxHxBxxII")  # ethertype, ver/ihl, total, frag, proto, src, dst
_TCP_HEAD = struct.Struct(">HHIIH")  # sport, dport, seq, ack, offset/flags
_U32 = struct.Struct(">I")
_NEEDS_CSUM = 0x01  # VIRTIO_NET_HDR_F_NEEDS_CSUM
_U16 = struct.Struct(">H")


def _tcp_fields(
    frame: bytes, vnet_hdr_len: int
) -> tuple[int, int, int, int, int, int, int, int, int, int] | None:
    """(l4, doff, end, src, dst, sport, dport, seq, ack, flags) of an IPv4/TCP frame, or None."""
    eth = vnet_hdr_len
    if eth < 0 or len(frame) - eth < _ETH_HLEN + 20:
        return None
    etype, vihl, total, frag, proto, src, dst = _IP_HEAD.unpack_from(frame, eth + 12)
    if etype != 0x0800 or vihl >> 4 != 4 or proto != _TCP or frag & 0x3FFF:
        return None
    ip = eth + _ETH_HLEN
    ihl = (vihl & 0x0F) << 2
    end = ip + total
    l4 = ip + ihl
    if ihl < 20 or end > len(frame) or end - l4 < 20:
        return None
    sport, dport, seq, ack, off_flags = _TCP_HEAD.unpack_from(frame, l4)
    doff = (off_flags >> 12) << 2
    if doff < 20 or l4 + doff > end:
        return None
    return l4, doff, end, src, dst, sport, dport, seq, ack, off_flags & 0x3F


def translate_guest_output(
    frame: bytes, table: OffsetTable, now: float, vnet_hdr_len: int = 0
) -> bytes:
    """``frame`` as the client must see it: ``seq`` lowered by the connection's delta."""
    if not table:
        return frame
    fields = _tcp_fields(frame, vnet_hdr_len)
    if fields is None:
        return frame
    l4, doff, end, src, dst, sport, dport, seq, ack, flags = fields
    entry = table.get((src, sport, dst, dport))
    if entry is None or entry.isn_client is not None:  # pending: undecided, untouched
        return frame
    new_seq = (seq - entry.delta) & MASK
    out = bytearray(frame)
    _U32.pack_into(out, l4 + 4, new_seq)
    if not _partial(frame, vnet_hdr_len):
        _set_checksum(out, l4, _adjust32(_U16.unpack_from(out, l4 + 16)[0], seq, new_seq))
    entry.observe_guest(new_seq, ack, flags, end - l4 - doff, now)
    return bytes(out)


def translate_client_input(
    frame: bytes, table: OffsetTable, now: float, vnet_hdr_len: int = 0
) -> bytes:
    """``frame`` as the guest must see it: ``ack`` and SACK blocks raised by the delta.

    A SYN (without ACK) for a 4-tuple whose entry ended, or saw no packet for
    :data:`~colopp.rewrite.table.SYN_REUSE_IDLE_S`, starts a new connection: the entry is
    dropped and the frame passes untouched. (A SYN on a busy entry is a retransmission of its
    own handshake's.)
    """
    if not table:
        return frame
    fields = _tcp_fields(frame, vnet_hdr_len)
    if fields is None:
        return frame
    l4, doff, end, src, dst, sport, dport, seq, ack, flags = fields
    key: ConnKey = (dst, dport, src, sport)
    entry = table.get(key)
    if entry is None:
        return frame
    if flags & (_SYN | _ACK) == _SYN and (entry.ended or now - entry.last_seen >= SYN_REUSE_IDLE_S):
        table.forget(key)
        return frame
    if entry.isn_client is not None:
        if not _adopted(entry, flags, ack):
            if flags & (_SYN | _ACK):  # decided: the client took the promoted guest's ISN
                table.forget(key)
                table.decided = True
            return frame
        table.decided = True
    delta = entry.delta
    out = bytearray(frame)
    csum = _U16.unpack_from(out, l4 + 16)[0]
    odd = False
    if flags & _ACK:
        new_ack = (ack + delta) & MASK
        _U32.pack_into(out, l4 + 8, new_ack)
        csum = _adjust32(csum, ack, new_ack)
    if doff > 20:
        csum, odd = _translate_sack(out, l4 + 20, l4 + doff, delta, csum)
    if _partial(frame, vnet_hdr_len):
        pass  # the device sums the rewritten bytes itself
    elif odd:
        _set_checksum(out, l4, tcp_checksum(bytes(out), l4, end, src, dst))
    else:
        _set_checksum(out, l4, csum)
    entry.observe_peer(seq, ack, flags, end - l4 - doff, now)
    return bytes(out)


def _adopted(entry: Entry, flags: int, ack: int) -> bool:
    """Decide a pending entry from a client segment: True (and the entry is settled) when
    its acknowledgement lies nearer after the primary's ISN than after the promoted guest's.
    A SYN without ACK (the client restarted its handshake: it never got the primary's
    SYN-ACK) or a segment without ACK decides nothing in favour of the offset."""
    isn = entry.isn_client
    assert isn is not None
    if flags & _SYN or not flags & _ACK:
        return False
    from_client_isn = (ack - 1 - isn) & MASK
    from_guest_isn = (ack - 1 - isn - entry.delta) & MASK
    if from_client_isn <= from_guest_isn:
        entry.isn_client = None
        return True
    return False


def _translate_sack(
    out: bytearray, start: int, stop: int, delta: int, csum: int
) -> tuple[int, bool]:
    """Raise every SACK edge in the options ``out[start:stop]``; (checksum, needs full sum)."""
    odd = False
    pos = start
    while pos < stop:
        kind = out[pos]
        if kind == _EOL:
            break
        if kind == _NOP:
            pos += 1
            continue
        if pos + 1 >= stop:
            break
        length = out[pos + 1]
        if length < 2 or pos + length > stop:
            break
        if kind == _SACK and (length - 2) % 8 == 0:
            for edge in range(pos + 2, pos + length, 4):
                old = _U32.unpack_from(out, edge)[0]
                new = (old + delta) & MASK
                _U32.pack_into(out, edge, new)
                if (edge - start) % 2:
                    odd = True
                else:
                    csum = _adjust32(csum, old, new)
        pos += length
    return csum, odd


def _partial(frame: bytes, vnet_hdr_len: int) -> bool:
    """Does the frame's virtio-net header leave its checksum to the device?"""
    return bool(vnet_hdr_len) and bool(frame[0] & _NEEDS_CSUM)


def _set_checksum(out: bytearray, l4: int, csum: int) -> None:
    _U16.pack_into(out, l4 + 16, csum)


def tcp_checksum(frame: bytes, l4: int, end: int, src: int, dst: int) -> int:
    """The full TCP checksum of ``frame[l4:end]`` (its checksum field counted as zero)."""
    segment = bytearray(frame[l4:end])
    segment[16:18] = b"\0\0"
    if len(segment) % 2:
        segment.append(0)
    total = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + _TCP + (end - l4)
    total += int(sum(struct.unpack(f">{len(segment) // 2}H", segment)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
