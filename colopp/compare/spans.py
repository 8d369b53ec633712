"""Whole frames as spans of the buffer they came in, and the few TCP fields a hot path reads
without a per-frame object (pure): host B's relay on both its streams and the comparator on
the client copy.

:class:`Splitter` cuts a net-filter chardev byte stream (:mod:`colopp.compare.framing`'s
format) into :data:`Span` tuples: where the frame's length word(s) start, where its bytes
(vnet header first) start and end, and its vnet header length. A frame forwarded unchanged
goes out as the very bytes it came in, length words included (:func:`wire_runs`).
:func:`plain_tcp` reads an untagged IPv4/TCP frame's fields in one unpack at its offset in the
buffer; anything else (IPv6, IP options, ARP) is for :func:`~colopp.compare.packet.parse_frame`.
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
