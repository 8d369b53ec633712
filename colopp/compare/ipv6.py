"""Pure parsing of IPv6 frames for the comparator (called by :mod:`~colopp.compare.packet`).

QEMU's colo-compare stops at anything that is not IPv4; colopp compares IPv6 exactly like IPv4:

* **Extension headers are walked**: hop-by-hop options, routing, destination options (their
  length is in 8-octet units after the first 8). The upper-layer header that follows decides
  the kind: TCP, UDP and ICMPv6 are compared as over IPv4 (flow keys, sequence alignment,
  retransmission and pre-release rules); any other protocol is an ``OTHER_IP`` datagram whose
  bytes from the upper-layer header on are compared.
* **Fragments are compared, never passed**: a frame with a fragment header is an ``OTHER_IP``
  datagram of flow ``(44, src, dst, 0, 0)`` whose compared bytes start at the fragment header
  (offset, more-fragments flag, identification and data): a primary fragment leaves only when
  the secondary sent the same one, else the compare timeout or the mismatch forces a
  checkpoint. Fragment identifications come from guest state that a checkpoint copies, so
  both guests normally agree; when they do not, the price is a checkpoint, not a hole.
* **AH and ESP** (IPsec) are compared as opaque bytes from their header on, like any other
  upper-layer protocol (never passed through): ESP's random IVs make the two guests differ, so
  IPsec traffic costs a checkpoint per divergence but is never released uncompared.
* **Neighbour discovery and MLD** (ICMPv6 types 130-137 and 143) are link-local control,
  like ARP: ``PASSTHROUGH`` (the primary's released at once, the secondary's dropped); the
  core counts them apart from pass-through EtherTypes.

Addresses in flow keys are the 128-bit address with bit 128 set (:data:`V6_FLAG`), so an
IPv6 flow never shares a key with an IPv4 one (IPv4 keys hold 32-bit addresses).

A payload length of 0 (a jumbogram) and anything truncated is :class:`Malformed`; Ethernet
padding after the payload is ignored, as after an IPv4 datagram.
"""

from __future__ import annotations

import struct

from colopp.compare.parsed import (
    ICMPV6,
    OTHER_IP,
    PASSTHROUGH,
    TCP,
    UDP,
    FlowKey,
    Malformed,
    Packet,
    udp_packet,
)

ETHERTYPE_IPV6 = 0x86DD
IPV6_HLEN = 40
#: Set in both addresses of every IPv6 flow key.
V6_FLAG = 1 << 128

HOP_BY_HOP = 0
ROUTING = 43
FRAGMENT = 44
ESP = 50
AH = 51
NO_NEXT_HEADER = 59
DEST_OPTIONS = 60
#: Extension headers walked to find the upper-layer protocol (all share the
#: next-header / length-in-8-octets layout).
_WALKED = frozenset((HOP_BY_HOP, ROUTING, DEST_OPTIONS))
#: At most this many extension headers are walked (a chain of options headers is no way
#: for a guest to hide output: past it, the frame is malformed).
MAX_EXTENSION_HEADERS = 8

#: ICMPv6 types of link-local control: MLD (130-132, 143) and neighbour discovery (133-137).
LINK_CONTROL_TYPES = frozenset((130, 131, 132, 133, 134, 135, 136, 137, 143))

_ADDRESSES = struct.Struct(">QQQQ")
_TCP_FIELDS = struct.Struct(">HHIIH")


def address(frame: bytes, offset: int) -> int:
    """The 128-bit address at ``offset``, as a flow-key integer (with :data:`V6_FLAG`)."""
    return V6_FLAG | int.from_bytes(frame[offset : offset + 16], "big")


def parse_ipv6(frame: bytes, ip: int) -> Packet | Malformed:
    """Parse the IPv6 datagram whose fixed header starts at ``ip``. Never raises."""
    size = len(frame)
    if size - ip < IPV6_HLEN:
        return Malformed("short_ipv6")
    if frame[ip] >> 4 != 6:
        return Malformed("ipv6_version")
    length = (frame[ip + 4] << 8) | frame[ip + 5]
    end = ip + IPV6_HLEN + length
    if length == 0 or end > size:
        return Malformed("ipv6_payload_length")
    src = address(frame, ip + 8)
    dst = address(frame, ip + 24)
    found = upper_layer(frame, ip, end)
    if isinstance(found, Malformed):
        return found
    proto, l4 = found
    if proto == TCP:
        return _tcp(frame, l4, end, src, dst)
    if proto == UDP:
        return udp_packet(frame, l4, end, src, dst)
    if proto == ICMPV6:
        if end - l4 < 4:
            return Malformed("short_icmpv6")
        if frame[l4] in LINK_CONTROL_TYPES:
            return Packet(PASSTHROUGH, (ETHERTYPE_IPV6, 0, 0, frame[l4], 0))
        return Packet(ICMPV6, (ICMPV6, src, dst, 0, 0), payload_start=l4, payload_end=end)
    return Packet(OTHER_IP, (proto, src, dst, 0, 0), payload_start=l4, payload_end=end)


def upper_layer(frame: bytes, ip: int, end: int) -> tuple[int, int] | Malformed:
    """(protocol, offset) of the first header after the walked extension headers of the
    datagram at ``ip`` ending at ``end``: a fragment header stops the walk (protocol 44)."""
    proto = frame[ip + 6]
    offset = ip + IPV6_HLEN
    for _ in range(MAX_EXTENSION_HEADERS):
        if proto not in _WALKED:
            if proto == FRAGMENT and end - offset < 8:
                return Malformed("ipv6_truncated_extension")
            return proto, offset
        if end - offset < 8:
            return Malformed("ipv6_truncated_extension")
        following = offset + ((frame[offset + 1] + 1) << 3)
        if following > end:
            return Malformed("ipv6_truncated_extension")
        proto = frame[offset]
        offset = following
    return Malformed("ipv6_extension_chain")


def _tcp(frame: bytes, l4: int, end: int, src: int, dst: int) -> Packet | Malformed:
    if end - l4 < 20:
        return Malformed("short_tcp")
    sport, dport, seq, ack, off_flags = _TCP_FIELDS.unpack_from(frame, l4)
    doff = (off_flags >> 12) << 2
    if doff < 20 or l4 + doff > end:
        return Malformed("tcp_data_offset")
    return Packet(TCP, (TCP, src, dst, sport, dport), seq, ack, off_flags & 0x3F, l4 + doff, end)


def tcp_checksum_ok(frame: bytes, ip: int, pkt: Packet) -> bool:
    """True unless the TCP checksum of the IPv6 datagram at ``ip`` is provably wrong (the
    pseudo-header of RFC 8200 section 8.1; a routing header's final destination is not
    looked for: such a segment is assumed good)."""
    length = (frame[ip + 4] << 8) | frame[ip + 5]
    end = ip + IPV6_HLEN + length
    if end != pkt.payload_end:
        return True  # not where the parser found it: cannot verify, assume the guest took it
    found = upper_layer(frame, ip, end)
    if isinstance(found, Malformed) or found[0] != TCP:
        return True
    l4 = found[1]
    if _has_routing_header(frame, ip, l4):
        return True
    segment = frame[l4:end]
    # One's-complement sums via big integers: 2**16 = 1 (mod 0xFFFF), so does 2**64.
    words: tuple[int, ...] = _ADDRESSES.unpack_from(frame, ip + 8)
    pseudo = sum(words) + (end - l4) + TCP
    if len(segment) & 1:
        segment += b"\0"
    return (pseudo + int.from_bytes(segment, "big")) % 0xFFFF == 0


def _has_routing_header(frame: bytes, ip: int, l4: int) -> bool:
    proto = frame[ip + 6]
    offset = ip + IPV6_HLEN
    while offset < l4:
        if proto == ROUTING:
            return True
        proto = frame[offset]
        offset += (frame[offset + 1] + 1) << 3
    return False


def is_ipv6_key(key: FlowKey) -> bool:
    """True when ``key`` is an IPv6 flow's."""
    return key[1] >= V6_FLAG
