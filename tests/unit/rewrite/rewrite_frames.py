"""Ethernet/IPv4/TCP frames with options (SACK) and a correct TCP checksum, for the tests."""

from __future__ import annotations

import struct

GUEST = 0xC6120A0A  # 198.18.10.10
CLIENT = 0xC6120002  # 198.18.0.2
GUEST_PORT = 80
CLIENT_PORT = 40000
GUEST_KEY = (GUEST, GUEST_PORT, CLIENT, CLIENT_PORT)

FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10}


def checksum_ok(frame: bytes, vnet: int = 0) -> bool:
    ip = vnet + 14
    ihl = (frame[ip] & 0x0F) * 4
    total = struct.unpack_from(">H", frame, ip + 2)[0]
    src, dst = struct.unpack_from(">II", frame, ip + 12)
    seg = frame[ip + ihl : ip + total]
    data = seg + (b"\0" if len(seg) % 2 else b"")
    acc = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + 6 + len(seg)
    acc += sum(struct.unpack(f">{len(data) // 2}H", data))
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return acc == 0xFFFF


def tcp(
    seq: int,
    ack: int,
    flags: str = "A",
    payload: bytes = b"",
    *,
    from_guest: bool = True,
    options: bytes = b"",
    vnet: bytes = b"",
    port_client: int = CLIENT_PORT,
) -> bytes:
    src, dst = (GUEST, CLIENT) if from_guest else (CLIENT, GUEST)
    sport, dport = (GUEST_PORT, port_client) if from_guest else (port_client, GUEST_PORT)
    options += b"\0" * (-len(options) % 4)
    doff = (20 + len(options)) // 4
    bits = sum(FLAGS[f] for f in flags)
    head = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, doff << 4, bits, 65535, 0, 0)
    seg = bytearray(head + options + payload)
    data = bytes(seg) + (b"\0" if len(seg) % 2 else b"")
    acc = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + 6 + len(seg)
    acc += sum(struct.unpack(f">{len(data) // 2}H", data))
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    struct.pack_into(">H", seg, 16, ~acc & 0xFFFF)
    ip = struct.pack(">BBHHHBBHII", 0x45, 0, 20 + len(seg), 0, 0x4000, 64, 6, 0, src, dst)
    eth = b"\x52\x54\0\0\0\1\x52\x54\0\0\0\2\x08\x00"
    return vnet + eth + ip + bytes(seg)


def sack(*edges: int, lead: bytes = b"\x01\x01") -> bytes:
    return lead + bytes([5, 2 + 4 * len(edges)]) + b"".join(struct.pack(">I", e) for e in edges)


def fields(frame: bytes, vnet: int = 0) -> tuple[int, int, int]:
    """(seq, ack, flags) of a frame built by :func:`tcp`."""
    l4 = vnet + 14 + 20
    seq, ack = struct.unpack_from(">II", frame, l4 + 4)
    return seq, ack, frame[l4 + 13]
