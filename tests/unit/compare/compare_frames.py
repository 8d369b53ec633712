"""Builds real Ethernet/IPv4/TCP/UDP/ICMP frames (correct lengths and checksums) for tests."""

from __future__ import annotations

import ipaddress
import struct

GUEST = "198.18.1.10"
CLIENT = "198.18.0.2"
GUEST_MAC = bytes.fromhex("525400000001")
CLIENT_MAC = bytes.fromhex("525400000002")

FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip(addr: str) -> bytes:
    return ipaddress.IPv4Address(addr).packed


def ethernet(payload: bytes, ethertype: int = 0x0800, vnet: bytes = b"") -> bytes:
    return vnet + CLIENT_MAC + GUEST_MAC + struct.pack("!H", ethertype) + payload


def ipv4(proto: int, l4: bytes, src: str, dst: str, ip_id: int = 0, ttl: int = 64) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ip_id, 0x4000, ttl, proto, 0, _ip(src), _ip(dst)
    )
    csum = _checksum(header)
    return header[:10] + struct.pack("!H", csum) + header[12:] + l4


def tcp_frame(
    seq: int,
    ack: int = 0,
    flags: str = "A",
    payload: bytes = b"",
    *,
    src: str = GUEST,
    dst: str = CLIENT,
    sport: int = 80,
    dport: int = 40000,
    ip_id: int = 0,
    window: int = 65535,
    vnet: bytes = b"",
    pad_to: int = 0,
) -> bytes:
    bits = sum(FLAG_BITS[f] for f in flags)
    header = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, bits, window, 0, 0
    )
    pseudo = _ip(src) + _ip(dst) + struct.pack("!BBH", 0, 6, len(header) + len(payload))
    csum = _checksum(pseudo + header + payload)
    segment = header[:16] + struct.pack("!H", csum) + header[18:] + payload
    frame = ethernet(ipv4(6, segment, src, dst, ip_id), vnet=vnet)
    return frame + b"\0" * max(0, pad_to - len(frame))


def udp_frame(
    payload: bytes,
    *,
    src: str = GUEST,
    dst: str = CLIENT,
    sport: int = 53,
    dport: int = 40000,
    ip_id: int = 0,
    vnet: bytes = b"",
) -> bytes:
    header = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    return ethernet(ipv4(17, header + payload, src, dst, ip_id), vnet=vnet)


def icmp_frame(
    payload: bytes, *, ident: int = 1, seq: int = 1, src: str = GUEST, dst: str = CLIENT
) -> bytes:
    header = struct.pack("!BBHHH", 0, 0, 0, ident, seq)
    csum = _checksum(header + payload)
    body = header[:2] + struct.pack("!H", csum) + header[4:] + payload
    return ethernet(ipv4(1, body, src, dst))


def arp_frame() -> bytes:
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + GUEST_MAC + _ip(GUEST) + CLIENT_MAC
    return ethernet(body + _ip(CLIENT), ethertype=0x0806)


def segments(
    data: bytes,
    sizes: list[int],
    *,
    seq: int,
    ack: int,
    fin_separate: bool = True,
    fin: bool = False,
    **kw: object,
) -> list[bytes]:
    """Cut ``data`` into segments of ``sizes`` (cycled); optionally end with a FIN."""
    frames: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        chunk = data[pos : pos + size]
        last = pos + len(chunk) >= len(data)
        flags = "AP" + ("F" if fin and last and not fin_separate else "")
        frames.append(tcp_frame(seq + pos, ack, flags, chunk, **kw))  # type: ignore[arg-type]
        pos += len(chunk)
        i += 1
    if fin and (fin_separate or not data):
        frames.append(tcp_frame(seq + len(data), ack, "AF", **kw))  # type: ignore[arg-type]
    return frames
