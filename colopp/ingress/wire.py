"""The relay's hot path on both streams: whole frames as spans of the buffer they came in,
and the few TCP fields the log and the ACK gate read, without a per-frame object. Pure.

:class:`Splitter` cuts a net-filter chardev byte stream (:mod:`colopp.compare.framing`'s
format, the same on every stream the relay touches) into :data:`Span` tuples: where the
frame's length word(s) start, where its bytes (vnet header first) start and end, and its
vnet header length. A frame the relay forwards unchanged goes out as the very bytes it came
in, length words included (:func:`wire_runs`): no re-encoding, and adjacent frames leave in
one slice. :func:`plain_tcp` reads an untagged IPv4/TCP frame's fields in one unpack at its
offset in the buffer; anything else (IPv6, IP options, ARP) is for
:func:`~colopp.compare.packet.parse_frame`, as before.
"""

from __future__ import annotations

import struct

from colopp.compare.framing import MAX_FRAME_LEN, MAX_VNET_HDR_LEN

#: ``(header_start, start, end, vnet_hdr_len)`` of one frame in a buffer: its length
#: word(s) at ``header_start``, its bytes (vnet header, then Ethernet) in ``[start, end)``.
Span = tuple[int, int, int, int]

_U32 = struct.Struct(">I")
_U32X2 = struct.Struct(">II")
#: From the Ethernet header on: EtherType, IPv4 version/IHL, total length, fragment field,
#: protocol, source, destination, then TCP ports, seq, ack, data offset + flags.
_PLAIN_TCP = struct.Struct(">12xHBxHxxHxBxxIIHHIIH")
_PLAIN_TCP_LEN = _PLAIN_TCP.size  # 48
_ETH_HLEN = 14
_TCP = 6

#: ``(src, dst, sport, dport, seq, ack, flags, payload_len)`` of a plain IPv4/TCP frame.
PlainTcp = tuple[int, int, int, int, int, int, int, int]


class Splitter:
    """Incremental: feed any chunking of the stream, get the whole frames it completes.

    Like :class:`~colopp.compare.framing.FrameDecoder`, a header with a length of 0, above
    ``max_frame_len``, or a vnet header length past the frame is counted in
    :attr:`malformed` and skipped one byte at a time; those bytes are in no span, so they
    are never forwarded.
    """

    __slots__ = ("_tail", "malformed", "max_frame_len", "vnet_hdr")

    def __init__(self, vnet_hdr: bool = False, max_frame_len: int = MAX_FRAME_LEN) -> None:
        self.vnet_hdr = vnet_hdr
        self.max_frame_len = max_frame_len
        self.malformed = 0
        self._tail = b""

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._tail)

    def feed(self, chunk: bytes | bytearray | memoryview) -> tuple[bytes, list[Span]]:
        """Append ``chunk``; returns the buffer and the spans of the frames it completes."""
        data = self._tail + chunk if self._tail else bytes(chunk)
        spans: list[Span] = []
        pos, end, limit = 0, len(data), self.max_frame_len
        if self.vnet_hdr:
            unpack2 = _U32X2.unpack_from
            while end - pos >= 8:
                length, vlen = unpack2(data, pos)
                if length == 0 or length > limit or vlen > length or vlen > MAX_VNET_HDR_LEN:
                    self.malformed += 1
                    pos += 1
                    continue
                start = pos + 8
                if end - start < length:
                    break
                spans.append((pos, start, start + length, vlen))
                pos = start + length
        else:
            unpack = _U32.unpack_from
            while end - pos >= 4:
                (length,) = unpack(data, pos)
                if length == 0 or length > limit:
                    self.malformed += 1
                    pos += 1
                    continue
                start = pos + 4
                if end - start < length:
                    break
                spans.append((pos, start, start + length, 0))
                pos = start + length
        self._tail = data[pos:] if pos < end else b""
        return data, spans


def wire_runs(spans: list[Span]) -> list[tuple[int, int]]:
    """``(from, to)`` ranges of the buffer holding ``spans`` as they came in (length words
    included), adjacent frames merged: what forwarding them unchanged writes."""
    runs: list[tuple[int, int]] = []
    for header_start, _, end, _ in spans:
        if runs and runs[-1][1] == header_start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((header_start, end))
    return runs


def plain_tcp(data: bytes, start: int, end: int, vnet_hdr_len: int) -> PlainTcp | None:
    """The fields of the frame ``data[start:end]`` when it is untagged, unfragmented IPv4
    without options carrying a well-formed TCP header; None for anything else (then
    :func:`~colopp.compare.packet.parse_frame` decides, on the frame's own bytes)."""
    eth = start + vnet_hdr_len
    if end - eth < _PLAIN_TCP_LEN:
        return None
    etype, vihl, total, frag, proto, src, dst, sport, dport, seq, ack, off_flags = (
        _PLAIN_TCP.unpack_from(data, eth)
    )
    doff = (off_flags >> 12) << 2
    if (
        etype != 0x0800
        or vihl != 0x45
        or proto != _TCP
        or frag & 0x3FFF
        or total < 40
        or eth + _ETH_HLEN + total > end
        or not 20 <= doff <= total - 20
    ):
        return None
    return src, dst, sport, dport, seq, ack, off_flags & 0x3F, total - 20 - doff


#: Offsets in an IPv4 frame without IP options, from the Ethernet header on.
_IP_TOTAL, _IP_CSUM, _TCP_SEQ, _TCP_ACK, _TCP_FLAGS, _TCP_CSUM = 16, 24, 38, 42, 47, 50
_TCP_OFF = 34
_ACK_FLAG = 0x10
_FIN_FLAG = 0x01
#: virtio-net header flag: the TCP checksum field holds only the pseudo-header's sum.
_VNET_NEEDS_CSUM = 0x01


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _checksum(data: bytes | bytearray) -> int:
    if len(data) % 2:
        data = bytes(data) + b"\0"
    return ~_fold(sum(struct.unpack(f"!{len(data) // 2}H", data))) & 0xFFFF


def lower_ack(frame: bytes, vnet_hdr_len: int, ack: int) -> bytes:
    """``frame`` (a :func:`plain_tcp` frame) with its ACK field set to ``ack``, its TCP
    checksum updated to match (RFC 1624). A frame whose virtio-net header asks the device
    to complete the checksum (``NEEDS_CSUM``: a GSO super-frame from an offloading client)
    keeps its checksum field: it holds only the pseudo-header's sum, which the ACK is not
    part of, and the guest trusts such a frame."""
    out = bytearray(frame)
    eth = vnet_hdr_len
    if vnet_hdr_len and frame[0] & _VNET_NEEDS_CSUM:
        out[eth + _TCP_ACK : eth + _TCP_ACK + 4] = ack.to_bytes(4, "big")
        return bytes(out)
    old = int.from_bytes(out[eth + _TCP_ACK : eth + _TCP_ACK + 4], "big")
    csum = int.from_bytes(out[eth + _TCP_CSUM : eth + _TCP_CSUM + 2], "big")
    total = (~csum & 0xFFFF) + (~(old >> 16) & 0xFFFF) + (~old & 0xFFFF)
    total += (ack >> 16) + (ack & 0xFFFF)
    out[eth + _TCP_ACK : eth + _TCP_ACK + 4] = ack.to_bytes(4, "big")
    out[eth + _TCP_CSUM : eth + _TCP_CSUM + 2] = (~_fold(total) & 0xFFFF).to_bytes(2, "big")
    return bytes(out)


def pure_ack(frame: bytes, vnet_hdr_len: int, ack: int) -> bytes:
    """The bare ACK the client of ``frame`` (a :func:`plain_tcp` frame) would send after
    it: the same headers and TCP options, no payload, sequence number past the frame's
    payload (and FIN), flags ACK only, acknowledging ``ack``. Its checksums are computed
    anew (a ``NEEDS_CSUM`` frame's partial one is not used) and it asks no offload."""
    eth = vnet_hdr_len
    doff = (frame[eth + _TCP_OFF + 12] >> 4) << 2
    total = int.from_bytes(frame[eth + _IP_TOTAL : eth + _IP_TOTAL + 2], "big")
    payload = total - 20 - doff
    flags = frame[eth + _TCP_FLAGS]
    seq = int.from_bytes(frame[eth + _TCP_SEQ : eth + _TCP_SEQ + 4], "big")
    seq = (seq + payload + (flags & _FIN_FLAG)) & 0xFFFFFFFF
    ip = bytearray(frame[eth + _ETH_HLEN : eth + _ETH_HLEN + 20])
    ip[2:4] = (20 + doff).to_bytes(2, "big")
    ip[10:12] = b"\0\0"
    ip[10:12] = _checksum(ip).to_bytes(2, "big")
    tcp = bytearray(frame[eth + _TCP_OFF : eth + _TCP_OFF + doff])
    tcp[4:8] = seq.to_bytes(4, "big")
    tcp[8:12] = ack.to_bytes(4, "big")
    tcp[13] = _ACK_FLAG
    tcp[16:18] = b"\0\0"
    pseudo = ip[12:20] + bytes((0, _TCP)) + doff.to_bytes(2, "big")
    tcp[16:18] = _checksum(pseudo + tcp).to_bytes(2, "big")
    vnet = bytes(vnet_hdr_len)  # no offload asked of anyone
    return vnet + frame[eth : eth + _ETH_HLEN] + bytes(ip) + bytes(tcp)


#: The TCP window field, from the Ethernet header on (IPv4 without options).
_TCP_WINDOW = _TCP_OFF + 14
_TCP_OPTIONS = _TCP_OFF + 20
_OPT_END, _OPT_NOP, _OPT_WSCALE = 0, 1, 3


def tcp_window(data: bytes, start: int, vnet_hdr_len: int) -> int:
    """The raw window field of the :func:`plain_tcp` frame at ``start``."""
    at = start + vnet_hdr_len + _TCP_WINDOW
    return int.from_bytes(data[at : at + 2], "big")


def window_scale(data: bytes, start: int, end: int, vnet_hdr_len: int) -> int:
    """The window scale option of the :func:`plain_tcp` frame at ``start`` (a SYN or
    SYN-ACK), 0 without one. Malformed options end the walk (0 unless found before)."""
    eth = start + vnet_hdr_len
    doff = (data[eth + _TCP_OFF + 12] >> 4) << 2
    pos, stop = eth + _TCP_OPTIONS, min(end, eth + _TCP_OFF + doff)
    while pos < stop:
        kind = data[pos]
        if kind == _OPT_END:
            return 0
        if kind == _OPT_NOP:
            pos += 1
            continue
        if pos + 1 >= stop or data[pos + 1] < 2:
            return 0
        length = data[pos + 1]
        if kind == _OPT_WSCALE and length == 3 and pos + 2 < stop:
            return data[pos + 2]
        pos += length
    return 0
