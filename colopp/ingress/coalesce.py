"""The secondary guest's output, coalesced for the comparator: fewer, larger frames. Pure.

Measured on a bulk download (``bench.bulk``, ``download_static``, session 21): colopp's
comparator took 31% of the primary host's CPU, four fifths of it in the interpreter, per
frame rather than per byte; every frame of the secondary's output costs it a decode, a
parse and a comparison call, and the primary's guest gets what the comparator leaves. The
relay reads that output anyway, so it sends the comparator, out of each read (nothing ever
waits for more frames to come):

consecutive in-sequence data segments of one connection that carry the same ACK and no
flag but ACK (PSH aside) as one segment: the first one's headers, the payloads in order,
the IPv4 total length set, PSH if any had it; at most an IPv4 datagram (65535 bytes).

What the comparator reads of a secondary segment is its place in the sequence space, its
payload, its ACK and its flags; it never checks a secondary frame's checksums, window or
options, and never sends one anywhere (secondary output only lets primary output go). For
each connection those stay exactly as they were, in order; only the order between
connections may change (the comparator keeps connections apart). A merged segment's
checksums are not recomputed. Anything else (bare ACKs, SYN, FIN, RST, URG, IPv6, ARP, IP
options) goes as it came and ends its connection's run. Bare ACKs are left alone: a
duplicate one counts for the comparator (a hole at the secondary), and an upload brings
few (session 20's bench: 1.5 thousand a second from the secondary, against 16 thousand
data segments a second on a download).
"""

from __future__ import annotations

import struct

from colopp.compare.seq import MASK
from colopp.ingress.wire import PlainTcp, Span

#: TCP flags (low byte of the TCP header's 14th byte).
_ACK, _PSH = 0x10, 0x08
#: Largest IPv4 datagram: a merged segment stays below it.
_MAX_IP_TOTAL = 65535
#: Offsets from the Ethernet header: IPv4 total length, TCP data offset, TCP flags.
_IP_TOTAL, _TCP_DOFF, _TCP_FLAGS = 16, 46, 47
_ETH_IP = 14 + 20

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U32X2 = struct.Struct(">II")


class _Run:
    """One connection's run of data segments that leave as one."""

    __slots__ = ("ack", "frames", "next_seq", "room")

    def __init__(self, ack: int, next_seq: int, frame: int, room: int) -> None:
        self.ack = ack
        self.next_seq = next_seq
        self.frames = [frame]  # indexes into the spans
        self.room = room  # payload bytes it may still take (one IPv4 datagram)


def coalesce(
    buf: bytes, spans: list[Span], fields: list[PlainTcp | None], vnet_hdr: bool
) -> tuple[list[bytes | memoryview], int]:
    """``spans`` of ``buf`` (``fields[i]``: :func:`~colopp.ingress.wire.plain_tcp` of
    ``spans[i]`` or None) as the chunks to write, length words included, and the number of
    frames they hold (at most ``len(spans)``). Frames that leave unchanged are slices of
    ``buf``, adjacent ones in one slice."""
    # Each slot is a span index (it leaves as it came) or a run (placed at its first frame).
    slots: list[int | _Run] = []
    runs: dict[tuple[int, int, int, int], _Run] = {}
    merged = False
    for i, f in enumerate(fields):
        if f is None:
            # Not plain IPv4/TCP: it may still belong to a connection (IP options, say),
            # and nothing of a connection may pass it: every run ends here.
            runs.clear()
            slots.append(i)
            continue
        src, dst, sport, dport, seq, ack, flags, size = f
        key = (src, dst, sport, dport)
        run = runs.get(key)
        if size and flags & ~_PSH == _ACK:
            if run is not None and run.next_seq == seq and run.ack == ack and size <= run.room:
                run.frames.append(i)
                run.next_seq = (seq + size) & MASK
                run.room -= size
                merged = True
                continue
            run = _Run(ack, (seq + size) & MASK, i, _room(buf, spans[i], size))
        else:
            runs.pop(key, None)
            slots.append(i)
            continue
        runs[key] = run
        slots.append(run)
    if not merged:
        return _unchanged(buf, spans), len(spans)
    return _encode(buf, spans, slots, vnet_hdr), len(slots)


def _room(buf: bytes, span: Span, size: int) -> int:
    """Payload bytes a run that begins with ``span`` (``size`` payload bytes) may still take."""
    _, start, _, vnet = span
    doff = (buf[start + vnet + _TCP_DOFF] >> 4) << 2
    return _MAX_IP_TOTAL - 20 - doff - size


def _unchanged(buf: bytes, spans: list[Span]) -> list[bytes | memoryview]:
    """Every span as it came: ``buf`` itself when the spans cover it, else its slices."""
    if not spans:
        return []
    if spans[0][0] == 0 and spans[-1][2] == len(buf) and _contiguous(spans):
        return [buf]
    view = memoryview(buf)
    return [view[a:b] for a, b in _ranges(spans, range(len(spans)))]


def _contiguous(spans: list[Span]) -> bool:
    return all(spans[k][2] == spans[k + 1][0] for k in range(len(spans) - 1))


def _ranges(spans: list[Span], indexes: range | list[int]) -> list[tuple[int, int]]:
    """Byte ranges of the spans at ``indexes`` (in order), adjacent ones merged."""
    out: list[tuple[int, int]] = []
    for k in indexes:
        header_start, _, end, _ = spans[k]
        if out and out[-1][1] == header_start:
            out[-1] = (out[-1][0], end)
        else:
            out.append((header_start, end))
    return out


def _encode(
    buf: bytes, spans: list[Span], slots: list[int | _Run], vnet_hdr: bool
) -> list[bytes | memoryview]:
    view = memoryview(buf)
    chunks: list[bytes | memoryview] = []
    plain: list[int] = []  # span indexes that leave as they came, not yet in ``chunks``
    for slot in slots:
        if isinstance(slot, int):
            plain.append(slot)
        elif len(slot.frames) == 1:
            plain.append(slot.frames[0])
        else:
            chunks += [view[a:b] for a, b in _ranges(spans, plain)]
            plain = []
            chunks += _merged(buf, view, spans, slot.frames, vnet_hdr)
    chunks += [view[a:b] for a, b in _ranges(spans, plain)]
    return chunks


def _merged(
    buf: bytes, view: memoryview, spans: list[Span], frames: list[int], vnet_hdr: bool
) -> list[bytes | memoryview]:
    """One segment out of a data run's frames: length word(s), headers, payloads."""
    _, start, _, vnet = spans[frames[0]]
    eth = start + vnet
    head_end = eth + _ETH_IP + ((buf[eth + _TCP_DOFF] >> 4) << 2)
    header = bytearray(buf[start:head_end])
    payloads: list[bytes | memoryview] = []
    total = head_end - eth - 14
    psh = 0
    for k in frames:
        _, frame_start, _, frame_vnet = spans[k]
        at = frame_start + frame_vnet  # its Ethernet header
        doff = (buf[at + _TCP_DOFF] >> 4) << 2
        (ip_total,) = _U16.unpack_from(buf, at + _IP_TOTAL)
        p_start, p_end = at + _ETH_IP + doff, at + 14 + ip_total  # Ethernet padding left out
        payloads.append(view[p_start:p_end])
        total += p_end - p_start
        psh |= buf[at + _TCP_FLAGS] & _PSH
    _U16.pack_into(header, vnet + _IP_TOTAL, total)
    header[vnet + _TCP_FLAGS] |= psh
    length = len(header) + total - (head_end - eth - 14)
    word = _U32X2.pack(length, vnet) if vnet_hdr else _U32.pack(length)
    return [word, bytes(header), *payloads]
