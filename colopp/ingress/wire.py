"""The relay's hot path on both streams (pure): whole frames as spans of the buffer they
came in and their plain-TCP fields (:mod:`colopp.compare.spans`, re-exported here), and the
frames the relay makes itself: a client segment with its ACK lowered, pure ACKs, windows.
A frame the relay forwards unchanged goes out as the very bytes it came in, length words
included (:func:`wire_runs`): no re-encoding, and adjacent frames leave in one slice.
"""

from __future__ import annotations

import struct

# The spans and the plain-TCP reader live with the comparator, which reads the client copy
# the same way; the relay's modules import them from here.
from colopp.compare.spans import PlainTcp, Span, Splitter, plain_tcp, wire_runs

__all__ = [
    "PlainTcp",
    "Span",
    "Splitter",
    "lower_ack",
    "plain_tcp",
    "pure_ack",
    "tcp_window",
    "window_scale",
    "wire_runs",
]

_ETH_HLEN = 14
_TCP = 6

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
