"""What the comparator's parsers return: packet kinds, flow keys, :class:`Packet` and
:class:`Malformed` (shared by :mod:`~colopp.compare.packet` and :mod:`~colopp.compare.ipv6`)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Packet kinds (ints, not an Enum: this is the comparator's hot path).
TCP = 6
UDP = 17
ICMP = 1
ICMPV6 = 58
OTHER_IP = 0
PASSTHROUGH = -1

KIND_NAMES = {
    TCP: "tcp",
    UDP: "udp",
    ICMP: "icmp",
    ICMPV6: "icmpv6",
    OTHER_IP: "ip",
    PASSTHROUGH: "passthrough",
}

# TCP flag bits.
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10

ETH_HLEN = 14
ETHERTYPE_IPV4 = 0x0800


FlowKey = tuple[int, int, int, int, int]
"""(ip protocol, source address, destination address, source port, destination port)."""


@dataclass(slots=True)
class Packet:
    """A parsed frame. ``payload_start``/``payload_end`` bound the bytes that are compared.

    For TCP that is the segment payload; for UDP, ICMP and other IP protocols it is the
    whole IP payload (colo-compare ignores the IP header: ID, TTL and checksum differ).
    """

    kind: int
    key: FlowKey
    seq: int = 0
    ack: int = 0
    flags: int = 0
    payload_start: int = 0
    payload_end: int = 0


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame that cannot be parsed; ``reason`` names the first check that failed."""

    reason: str


#: Source and destination port, the first four bytes of a TCP or UDP header.
PORTS = struct.Struct(">HH")


def udp_packet(frame: bytes, l4: int, end: int, src: int, dst: int) -> Packet | Malformed:
    """The UDP datagram at ``l4`` (IPv4 or IPv6 alike): its whole IP payload is compared."""
    if end - l4 < 8:
        return Malformed("short_udp")
    sport, dport = PORTS.unpack_from(frame, l4)
    return Packet(UDP, (UDP, src, dst, sport, dport), payload_start=l4, payload_end=end)
