"""IPv6 frames for tests: builders, and :func:`to_ipv6`, which turns any IPv4 test frame of
compare_frames.py into the same datagram over IPv6 (same L4 bytes, checksums recomputed over
the IPv6 pseudo-header), optionally behind extension headers."""

from __future__ import annotations

import ipaddress
import struct

from compare_frames import CLIENT_MAC, FLAG_BITS, GUEST_MAC, _checksum

GUEST6 = "fd42:1::10"
CLIENT6 = "fd42:1::2"
PREFIX6 = ipaddress.IPv6Address("fd42:1::")

HOP_BY_HOP = 0
ROUTING = 43
FRAGMENT = 44
DEST_OPTIONS = 60


def ethernet6(payload: bytes, vnet: bytes = b"") -> bytes:
    return vnet + CLIENT_MAC + GUEST_MAC + struct.pack("!H", 0x86DD) + payload


def _packed(addr: str) -> bytes:
    return ipaddress.IPv6Address(addr).packed


def pseudo6(src: str, dst: str, proto: int, length: int) -> bytes:
    return _packed(src) + _packed(dst) + struct.pack("!IxxxB", length, proto)


def options_header(next_header: int, body_len: int = 6) -> bytes:
    """A hop-by-hop / destination options header of ``body_len + 2`` bytes (PadN filled)."""
    assert (body_len + 2) % 8 == 0
    pad = bytes([1, body_len - 2]) + bytes(body_len - 2) if body_len >= 2 else bytes(body_len)
    return bytes([next_header, (body_len + 2) // 8 - 1]) + pad


def ipv6(
    proto: int,
    l4: bytes,
    src: str,
    dst: str,
    *,
    extensions: tuple[int, ...] = (),
    payload_length: int | None = None,
) -> bytes:
    """An IPv6 datagram carrying ``l4`` of ``proto``, behind options headers of the types in
    ``extensions`` (HOP_BY_HOP, DEST_OPTIONS or ROUTING, 8 bytes each)."""
    types = [*extensions, proto]
    chain = b"".join(options_header(following) for following in types[1:])
    first = types[0]
    length = len(chain) + len(l4) if payload_length is None else payload_length
    header = struct.pack("!IHBB", 6 << 28, length, first, 64) + _packed(src) + _packed(dst)
    return header + chain + l4


def tcp6_frame(
    seq: int,
    ack: int = 0,
    flags: str = "A",
    payload: bytes = b"",
    *,
    src: str = GUEST6,
    dst: str = CLIENT6,
    sport: int = 80,
    dport: int = 40000,
    extensions: tuple[int, ...] = (),
    bad_checksum: bool = False,
) -> bytes:
    bits = sum(FLAG_BITS[f] for f in flags)
    header = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, bits, 65535, 0, 0
    )
    csum = _checksum(pseudo6(src, dst, 6, len(header) + len(payload)) + header + payload)
    if bad_checksum:
        csum ^= 0x0101
    segment = header[:16] + struct.pack("!H", csum) + header[18:] + payload
    return ethernet6(ipv6(6, segment, src, dst, extensions=extensions))


def udp6_frame(
    payload: bytes, *, src: str = GUEST6, dst: str = CLIENT6, sport: int = 53, dport: int = 40000
) -> bytes:
    header = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    csum = _checksum(pseudo6(src, dst, 17, len(header) + len(payload)) + header + payload)
    return ethernet6(ipv6(17, header[:6] + struct.pack("!H", csum) + payload, src, dst))


def icmp6_frame(
    icmp_type: int,
    body: bytes = b"",
    *,
    src: str = GUEST6,
    dst: str = CLIENT6,
    extensions: tuple[int, ...] = (),
) -> bytes:
    header = struct.pack("!BBH", icmp_type, 0, 0)
    csum = _checksum(pseudo6(src, dst, 58, 4 + len(body)) + header + body)
    message = header[:2] + struct.pack("!H", csum) + body
    return ethernet6(ipv6(58, message, src, dst, extensions=extensions))


def echo6_frame(payload: bytes, *, reply: bool = True, ident: int = 1, seq: int = 1) -> bytes:
    return icmp6_frame(129 if reply else 128, struct.pack("!HH", ident, seq) + payload)


def neighbour_advert() -> bytes:
    """A neighbour advertisement (ICMPv6 136) from the guest, to the all-nodes group."""
    return icmp6_frame(136, bytes(4) + _packed(GUEST6), dst="ff02::1")


def mld_report() -> bytes:
    """An MLDv2 report (ICMPv6 143) behind a hop-by-hop header, as Linux sends it."""
    return icmp6_frame(143, bytes(4), dst="ff02::16", extensions=(HOP_BY_HOP,))


def fragment6(
    data: bytes, *, offset: int = 0, more: bool = True, ident: int = 7, proto: int = 17
) -> bytes:
    """One fragment of a datagram: a fragment header then ``data``."""
    header = struct.pack("!BBHI", proto, 0, (offset << 3) | int(more), ident)
    return ethernet6(ipv6(FRAGMENT, header + data, GUEST6, CLIENT6))


def _map_address(packed4: bytes) -> str:
    return str(PREFIX6 + int.from_bytes(packed4, "big"))


def to_ipv6(frame: bytes, *, extensions: tuple[int, ...] = ()) -> bytes:
    """The IPv4 test frame ``frame`` (no vnet header) as the same datagram over IPv6: the
    addresses mapped into fd42:1::/96, TCP/UDP checksums recomputed, ICMP echo turned into
    ICMPv6 echo. Frames that are not IPv4 come back unchanged."""
    if frame[12:14] != b"\x08\x00":
        return frame
    ip = 14
    ihl = (frame[ip] & 0x0F) * 4
    total = int.from_bytes(frame[ip + 2 : ip + 4], "big")
    proto = frame[ip + 9]
    src = _map_address(frame[ip + 12 : ip + 16])
    dst = _map_address(frame[ip + 16 : ip + 20])
    l4 = bytearray(frame[ip + ihl : ip + total])
    if proto == 1:
        proto = 58
        l4[0] = {0: 129, 8: 128}.get(l4[0], l4[0])
    where = {6: 16, 17: 6, 58: 2}.get(proto)
    if where is not None and len(l4) >= where + 2:
        l4[where : where + 2] = b"\0\0"
        csum = _checksum(pseudo6(src, dst, proto, len(l4)) + bytes(l4))
        l4[where : where + 2] = struct.pack("!H", csum)
    return ethernet6(ipv6(proto, bytes(l4), src, dst, extensions=extensions))
