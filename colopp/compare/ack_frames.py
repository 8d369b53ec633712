"""The frames of ACK lowering (:mod:`~colopp.compare.ack_lower`), pure: a TCP segment with a
lower ACK number, and a bare ACK made from a segment's header. IPv4 and IPv6 (extension
headers included); checksums updated incrementally (RFC 1624) from the guest's own, so the
pseudo-header is never rebuilt. Never raises: a frame they may not rewrite gives None."""

from __future__ import annotations

import struct

from colopp.compare.checksum import adjust32, checksum_of, remove, sum16
from colopp.compare.ipv6 import IPV6_HLEN, upper_layer
from colopp.compare.packet import ACK, FIN, RST, SYN, TCP

_ETH_HLEN = 14
_SACK = 5
_EOL = 0
_NOP = 1
_NEEDS_CSUM = 1  # VIRTIO_NET_HDR_F_NEEDS_CSUM
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_SEQ_ACK_WORD = struct.Struct(">III")  # seq, ack, data offset + flags + window


def _locate(frame: bytes, vnet_hdr_len: int) -> tuple[int, int, int, bool] | None:
    """(ip, l4, end, ipv6) of a TCP segment that may be rewritten, or None."""
    if vnet_hdr_len and (len(frame) < 2 or frame[0] & _NEEDS_CSUM or frame[1]):
        return None  # offloads: the checksum field is partial, or one frame is many segments
    ip = vnet_hdr_len + _ETH_HLEN
    size = len(frame)
    if vnet_hdr_len < 0 or size < ip + 20:
        return None
    etype = (frame[ip - 2] << 8) | frame[ip - 1]
    if etype == 0x0800:
        ihl = (frame[ip] & 0x0F) << 2
        end = ip + ((frame[ip + 2] << 8) | frame[ip + 3])
        if frame[ip] >> 4 != 4 or frame[ip + 9] != TCP or ihl < 20 or end > size:
            return None
        if (frame[ip + 6] & 0x3F) | frame[ip + 7]:
            return None  # a fragment
        l4, v6 = ip + ihl, False
    elif etype == 0x86DD:
        if size < ip + IPV6_HLEN:
            return None
        end = ip + IPV6_HLEN + ((frame[ip + 4] << 8) | frame[ip + 5])
        if end > size:
            return None
        found = upper_layer(frame, ip, end)
        if not isinstance(found, tuple) or found[0] != TCP:
            return None
        l4, v6 = found[1], True
    else:
        return None
    if end - l4 < 20 or l4 + ((frame[l4 + 12] >> 4) << 2) > end:
        return None
    return ip, l4, end, v6


def _has_sack(frame: bytes, start: int, stop: int) -> bool:
    """True when the TCP options ``frame[start:stop]`` hold a SACK block (or are garbled)."""
    pos = start
    while pos < stop:
        kind = frame[pos]
        if kind == _EOL:
            return False
        if kind == _NOP:
            pos += 1
            continue
        if kind == _SACK or pos + 1 >= stop or frame[pos + 1] < 2:
            return True
        pos += frame[pos + 1]
    return False


def lowered_frame(frame: bytes, vnet_hdr_len: int, ack: int) -> bytes | None:
    """``frame`` with its TCP ACK number set to ``ack``, or None when it may not be lowered:
    SYN, FIN or RST set, SACK blocks, offloads (see :mod:`~colopp.compare.ack_lower`)."""
    found = _locate(frame, vnet_hdr_len)
    if found is None:
        return None
    l4 = found[1]
    doff = (frame[l4 + 12] >> 4) << 2
    if frame[l4 + 13] & (FIN | SYN | RST) or _has_sack(frame, l4 + 20, l4 + doff):
        return None
    out = bytearray(frame)
    old = _U32.unpack_from(frame, l4 + 8)[0]
    _U32.pack_into(out, l4 + 8, ack)
    _U16.pack_into(out, l4 + 16, adjust32(_U16.unpack_from(frame, l4 + 16)[0], old, ack))
    return bytes(out)


def bare_ack_frame(template: bytes, vnet_hdr_len: int, seq: int, ack: int) -> bytes | None:
    """A header-only copy of the segment ``template`` (flags: ACK only) carrying ``seq`` and
    ``ack``; None if ``template`` may not be rewritten."""
    found = _locate(template, vnet_hdr_len)
    if found is None:
        return None
    ip, l4, end, v6 = found
    stop = l4 + ((template[l4 + 12] >> 4) << 2)
    out = bytearray(template[:stop])
    old_seq, old_ack, old_word = _SEQ_ACK_WORD.unpack_from(template, l4 + 4)
    csum = remove(_U16.unpack_from(template, l4 + 16)[0], sum16(template[stop:end]))
    csum = adjust32(csum, end - l4, stop - l4)  # the pseudo-header's TCP length
    _U32.pack_into(out, l4 + 4, seq)
    _U32.pack_into(out, l4 + 8, ack)
    out[l4 + 13] = ACK
    csum = adjust32(adjust32(csum, old_seq, seq), old_ack, ack)
    csum = adjust32(csum, old_word, _U32.unpack_from(out, l4 + 12)[0])
    _U16.pack_into(out, l4 + 16, csum)
    if v6:
        _U16.pack_into(out, ip + 4, stop - ip - IPV6_HLEN)
    else:
        _U16.pack_into(out, ip + 2, stop - ip)
        ihl = (out[ip] & 0x0F) << 2
        out[ip + 10 : ip + 12] = b"\0\0"
        _U16.pack_into(out, ip + 10, checksum_of(sum16(bytes(out[ip : ip + ihl]))))
    return bytes(out)
