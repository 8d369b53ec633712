"""Pure parsing of the guest's Ethernet frames: just the fields the comparator needs.

:func:`parse_frame` never raises: a frame it cannot make sense of comes back as
:class:`Malformed` with a short reason (counted by the core). Like colo-compare
(``parse_packet_early`` in QEMU's ``net/colo.c``), untagged IPv4 is parsed here; unlike it,
untagged IPv6 is parsed too (:mod:`~colopp.compare.ipv6`: extension headers walked, fragments
compared, neighbour discovery and MLD passed through like ARP). Anything else -- ARP,
VLAN-tagged frames, other EtherTypes -- is classified :data:`PASSTHROUGH` with its EtherType
in ``key[0]``: the comparator does not compare it, and counts it per EtherType.

Offsets in :class:`Packet` index the whole frame as received, vnet header included.
"""

from __future__ import annotations

import struct

from colopp.compare.ipv6 import ETHERTYPE_IPV6, parse_ipv6
from colopp.compare.parsed import (
    ACK,
    ETH_HLEN,
    ETHERTYPE_IPV4,
    FIN,
    ICMP,
    ICMPV6,
    KIND_NAMES,
    OTHER_IP,
    PASSTHROUGH,
    PSH,
    RST,
    SYN,
    TCP,
    UDP,
    FlowKey,
    Malformed,
    Packet,
    udp_packet,
)

__all__ = [
    "ACK",
    "ETHERTYPE_IPV4",
    "ETHERTYPE_IPV6",
    "ETH_HLEN",
    "FIN",
    "ICMP",
    "ICMPV6",
    "KIND_NAMES",
    "OTHER_IP",
    "PASSTHROUGH",
    "PSH",
    "RST",
    "SYN",
    "TCP",
    "UDP",
    "FlowKey",
    "Malformed",
    "Packet",
    "PlainTcp",
    "ethertype_of",
    "is_passthrough",
    "parse_frame",
    "parse_plain_tcp",
]

_IP_FIELDS = struct.Struct(">BxHxxHxBxxII")  # ver/ihl, total len, frag, proto, src, dst
_TCP_FIELDS = struct.Struct(">HHIIH")  # sport, dport, seq, ack, data offset + flags
# The common case in one call: a 20-byte IPv4 header followed by a TCP header.
_IP_TCP_FIELDS = struct.Struct(">BxHxxHxBxxIIHHIIH")
# The same, from the Ethernet header on: ethertype, then the fields above.
_ETH_IP_TCP_FIELDS = struct.Struct(">12xHBxHxxHxBxxIIHHIIH")
_ETH_IP_TCP_LEN = _ETH_IP_TCP_FIELDS.size  # 48: Ethernet + IPv4 + the TCP fields we read


def parse_frame(frame: bytes, vnet_hdr_len: int = 0) -> Packet | Malformed:
    """Classify and parse ``frame`` (``vnet_hdr_len`` bytes of virtio-net header first).

    Returns a :class:`Packet` (kind TCP, UDP, ICMP, ICMPV6, OTHER_IP or PASSTHROUGH) or a
    :class:`Malformed`. Never raises; IP fragments are parsed as OTHER_IP.
    """
    size = len(frame)
    eth = vnet_hdr_len
    if eth < 0 or size - eth < ETH_HLEN:
        return Malformed("short_ethernet")
    if frame[eth + 12] != 0x08 or frame[eth + 13] != 0x00:
        ethertype = (frame[eth + 12] << 8) | frame[eth + 13]
        if ethertype == ETHERTYPE_IPV6:
            return parse_ipv6(frame, eth + ETH_HLEN)
        return Packet(PASSTHROUGH, (ethertype, 0, 0, 0, 0))
    ip = eth + ETH_HLEN
    if size - ip >= 34 and frame[ip] == 0x45 and frame[ip + 9] == TCP:
        # The common case in one unpack: IPv4 without options carrying TCP.
        _, total, frag, _, src, dst, sport, dport, seq, ack, off_flags = _IP_TCP_FIELDS.unpack_from(
            frame, ip
        )
        end = ip + total
        doff = (off_flags >> 12) << 2
        if not frag & 0x3FFF and total >= 40 and end <= size and 20 <= doff <= total - 20:
            key = (TCP, src, dst, sport, dport)
            return Packet(TCP, key, seq, ack, off_flags & 0x3F, ip + 20 + doff, end)
    if size - ip < 20:
        return Malformed("short_ip")
    vihl, total, frag, proto, src, dst = _IP_FIELDS.unpack_from(frame, ip)
    ihl = (vihl & 0x0F) << 2
    if vihl >> 4 != 4:
        return Malformed("ip_version")
    if ihl < 20:
        return Malformed("ip_header_length")
    end = ip + total
    if total < ihl or end > size:
        return Malformed("ip_total_length")
    l4 = ip + ihl
    if frag & 0x3FFF:
        return Packet(OTHER_IP, (proto, src, dst, 0, 0), payload_start=l4, payload_end=end)
    if proto == TCP:
        return _parse_tcp(frame, l4, end, src, dst)
    if proto == UDP:
        return udp_packet(frame, l4, end, src, dst)
    if proto == ICMP:
        if end - l4 < 4:
            return Malformed("short_icmp")
        return Packet(ICMP, (ICMP, src, dst, 0, 0), payload_start=l4, payload_end=end)
    return Packet(OTHER_IP, (proto, src, dst, 0, 0), payload_start=l4, payload_end=end)


PlainTcp = tuple[FlowKey, int, int, int, int, int]
"""(key, seq, ack, flags, payload_start, payload_end) of a plain IPv4/TCP frame."""


def parse_plain_tcp(frame: bytes, vnet_hdr_len: int = 0) -> PlainTcp | None:
    """The comparator's hot path: the fields of an untagged, unfragmented IPv4 frame without
    IP options carrying a well-formed TCP segment, as one tuple (no :class:`Packet` built).

    Returns None for anything else; :func:`parse_frame` then has the last word. When this
    returns a tuple, :func:`parse_frame` returns a TCP :class:`Packet` with the same fields.
    """
    size = len(frame)
    if size - vnet_hdr_len < _ETH_IP_TCP_LEN or vnet_hdr_len < 0:
        return None
    etype, vihl, total, frag, proto, src, dst, sport, dport, seq, ack, off_flags = (
        _ETH_IP_TCP_FIELDS.unpack_from(frame, vnet_hdr_len)
    )
    ip = vnet_hdr_len + ETH_HLEN
    end = ip + total
    doff = (off_flags >> 12) << 2
    if (
        etype != ETHERTYPE_IPV4
        or vihl != 0x45
        or proto != TCP
        or frag & 0x3FFF
        or total < 40
        or end > size
        or not 20 <= doff <= total - 20
    ):
        return None
    return (TCP, src, dst, sport, dport), seq, ack, off_flags & 0x3F, ip + 20 + doff, end


def _parse_tcp(frame: bytes, l4: int, end: int, src: int, dst: int) -> Packet | Malformed:
    if end - l4 < 20:
        return Malformed("short_tcp")
    sport, dport, seq, ack, off_flags = _TCP_FIELDS.unpack_from(frame, l4)
    doff = (off_flags >> 12) << 2
    if doff < 20 or l4 + doff > end:
        return Malformed("tcp_data_offset")
    return Packet(TCP, (TCP, src, dst, sport, dport), seq, ack, off_flags & 0x3F, l4 + doff, end)


def is_passthrough(frame: bytes, vnet_hdr_len: int = 0) -> bool:
    """True when ``frame`` is a whole Ethernet frame that is never compared (neither IPv4
    nor IPv6, or IPv6 neighbour discovery / MLD)."""
    parsed = parse_frame(frame, vnet_hdr_len)
    return isinstance(parsed, Packet) and parsed.kind == PASSTHROUGH


def ethertype_of(pkt: Packet) -> int:
    """The EtherType of a :data:`PASSTHROUGH` packet (IPv6 link control included)."""
    return pkt.key[0]
