"""IPv6 in the comparator: parsing (extension headers, fragments, link control), comparison
like IPv4, pass-through counted per EtherType, checksums as the guest sees them."""

from __future__ import annotations

import struct

import pytest
from compare_actions import checkpoints, released
from compare_frames import arp_frame, tcp_frame
from compare_frames6 import (
    CLIENT6,
    DEST_OPTIONS,
    FRAGMENT,
    GUEST6,
    HOP_BY_HOP,
    ROUTING,
    echo6_frame,
    ethernet6,
    fragment6,
    ipv6,
    mld_report,
    neighbour_advert,
    tcp6_frame,
    to_ipv6,
    udp6_frame,
)

from colopp.compare import Comparator, CompareConfig
from colopp.compare.counters import MAX_ETHERTYPE_LABELS
from colopp.compare.http_reads import ReadClassifier, checksums_ok
from colopp.compare.ipv6 import V6_FLAG, is_ipv6_key
from colopp.compare.packet import (
    ICMPV6,
    OTHER_IP,
    PASSTHROUGH,
    TCP,
    UDP,
    Malformed,
    Packet,
    is_passthrough,
    parse_frame,
)


def parsed(frame: bytes) -> Packet:
    pkt = parse_frame(frame)
    assert isinstance(pkt, Packet), pkt
    return pkt


def test_tcp_over_ipv6_fields_and_key() -> None:
    frame = tcp6_frame(0xDEADBEEF, 42, "AP", b"hello", sport=80, dport=1234)
    pkt = parsed(frame)
    assert pkt.kind == TCP
    assert pkt.key[0] == TCP and pkt.key[3:] == (80, 1234)
    assert pkt.key[1] == V6_FLAG | int.from_bytes(bytes.fromhex("fd420001" + "0" * 20 + "0010"))
    assert (pkt.seq, pkt.ack) == (0xDEADBEEF, 42)
    assert frame[pkt.payload_start : pkt.payload_end] == b"hello"
    assert is_ipv6_key(pkt.key)
    assert not is_ipv6_key(parsed(tcp_frame(1, 1)).key)


@pytest.mark.parametrize(
    "extensions", [(HOP_BY_HOP,), (DEST_OPTIONS,), (HOP_BY_HOP, ROUTING, DEST_OPTIONS)]
)
def test_extension_headers_are_walked(extensions: tuple[int, ...]) -> None:
    frame = tcp6_frame(5, 6, "AP", b"data", extensions=extensions)
    pkt = parsed(frame)
    assert pkt.kind == TCP and frame[pkt.payload_start : pkt.payload_end] == b"data"


def test_udp_icmpv6_and_padding() -> None:
    frame = udp6_frame(b"dns")
    pkt = parsed(frame + bytes(20))  # Ethernet padding after the payload is not compared
    assert pkt.kind == UDP and pkt.key[3:] == (53, 40000)
    assert frame[pkt.payload_end - 3 : pkt.payload_end] == b"dns"
    assert parsed(echo6_frame(b"ping")).kind == ICMPV6


def test_link_control_and_other_ethertypes_pass_through() -> None:
    for frame in (neighbour_advert(), mld_report(), arp_frame()):
        assert is_passthrough(frame)
    vlan = tcp_frame(1, 1)[:12] + b"\x81\x00\x00\x05" + tcp_frame(1, 1)[12:]
    assert parsed(vlan).kind == PASSTHROUGH and parsed(vlan).key[0] == 0x8100
    # Other ICMPv6 (echo, errors such as packet too big) is compared.
    assert not is_passthrough(echo6_frame(b"x"))
    assert not is_passthrough(ethernet6(ipv6(58, bytes([2, 0, 0, 0]) + bytes(8), GUEST6, CLIENT6)))


def test_fragments_ah_esp_and_unknown_protocols_are_compared_datagrams() -> None:
    frag = parsed(fragment6(b"first half"))
    assert frag.kind == OTHER_IP and frag.key[0] == FRAGMENT
    for proto in (50, 51, 59, 132):
        pkt = parsed(ethernet6(ipv6(proto, b"\x11" * 16, GUEST6, CLIENT6)))
        assert pkt.kind == OTHER_IP and pkt.key[0] == proto
        assert pkt.payload_end - pkt.payload_start == 16


def test_malformed_ipv6() -> None:
    frame = tcp6_frame(1, 1, "AP", b"data", extensions=(HOP_BY_HOP,))
    assert parse_frame(frame[:40]) == Malformed("short_ipv6")
    assert parse_frame(frame[:14] + b"\x45" + frame[15:]) == Malformed("ipv6_version")
    too_long = bytearray(frame)
    too_long[18:20] = struct.pack("!H", 2000)
    assert parse_frame(bytes(too_long)) == Malformed("ipv6_payload_length")
    jumbo = bytearray(frame)
    jumbo[18:20] = b"\0\0"
    assert parse_frame(bytes(jumbo)) == Malformed("ipv6_payload_length")
    # A payload length that ends inside the hop-by-hop header.
    short = bytearray(frame[: 14 + 40 + 4])
    short[18:20] = struct.pack("!H", 4)
    assert parse_frame(bytes(short)) == Malformed("ipv6_truncated_extension")
    # A header length that runs past the payload.
    runs_over = bytearray(frame)
    runs_over[14 + 40 + 1] = 200
    assert parse_frame(bytes(runs_over)) == Malformed("ipv6_truncated_extension")
    chain = ethernet6(ipv6(6, b"", GUEST6, CLIENT6, extensions=(DEST_OPTIONS,) * 9))
    assert parse_frame(chain) == Malformed("ipv6_extension_chain")
    truncated_fragment = ethernet6(ipv6(FRAGMENT, b"\x11\0\0", GUEST6, CLIENT6))
    assert parse_frame(truncated_fragment) == Malformed("ipv6_truncated_extension")
    assert parse_frame(tcp6_frame(1, 1)[:-4] + b"") == Malformed("ipv6_payload_length")
    bad_doff = bytearray(tcp6_frame(1, 1, "AP", b"xy"))
    bad_doff[14 + 40 + 12] = 0x20
    assert parse_frame(bytes(bad_doff)) == Malformed("tcp_data_offset")


def test_ipv6_tcp_is_compared_and_a_mismatch_checkpoints() -> None:
    c = Comparator()
    p = tcp6_frame(100, 7, "AP", b"hello")
    assert c.feed_primary(p, 0.0) == []
    assert released(c.feed_secondary(tcp6_frame(100, 7, "AP", b"hello"), 0.001)) == [p]
    c.feed_primary(tcp6_frame(105, 7, "AP", b"world"), 0.002)
    out = c.feed_secondary(tcp6_frame(105, 7, "AP", b"WORLD"), 0.003)
    assert checkpoints(out) == ["tcp_payload_mismatch"] and released(out) == []
    assert c.counters.passthrough_frames == 0


def test_ipv4_and_ipv6_flows_with_the_same_ports_stay_apart() -> None:
    c = Comparator()
    c.feed_primary(tcp_frame(100, 7, "AP", b"four"), 0.0)
    # The secondary's IPv6 segment of the "same" ports does not release the IPv4 one.
    assert released(c.feed_secondary(tcp6_frame(100, 7, "AP", b"four"), 0.0)) == []
    assert c.snapshot()["tcp_connections"] == 2


def test_icmpv6_and_udp_over_ipv6_mismatch_reasons() -> None:
    c = Comparator()
    c.feed_primary(echo6_frame(b"ping"), 0.0)
    assert checkpoints(c.feed_secondary(echo6_frame(b"pong"), 0.0)) == ["icmpv6_payload_mismatch"]
    c = Comparator()
    c.feed_primary(udp6_frame(b"a"), 0.0)
    assert checkpoints(c.feed_secondary(udp6_frame(b"b"), 0.0)) == ["udp_payload_mismatch"]


def test_fragments_leave_only_when_compared_else_time_out_into_a_checkpoint() -> None:
    c = Comparator(CompareConfig(compare_timeout=0.5))
    first, second = fragment6(b"A" * 64), fragment6(b"B" * 8, offset=8, more=False)
    assert c.feed_primary(first, 0.0) == [] and c.feed_primary(second, 0.0) == []
    assert released(c.feed_secondary(fragment6(b"A" * 64), 0.1)) == [first]
    assert c.tick(0.2) == []
    assert checkpoints(c.tick(1.0)) == ["compare_timeout"]
    assert released(c.checkpoint_done(1.1)) == [second]
    assert c.counters.passthrough_frames == 0


def test_passthrough_by_ethertype_never_lists_ipv6() -> None:
    c = Comparator()
    vlan = tcp_frame(1, 1)[:12] + b"\x81\x00\x00\x05" + tcp_frame(1, 1)[12:]
    frames = [arp_frame(), vlan, neighbour_advert(), mld_report(), tcp6_frame(1, 1, "AP", b"x")]
    frames += [udp6_frame(b"u"), echo6_frame(b"e"), fragment6(b"f")]
    for i, frame in enumerate(frames):
        c.feed_primary(frame, i * 0.001)
    snap = c.snapshot()
    assert snap["passthrough_by_ethertype"] == {"0x0806": 1, "0x8100": 1}
    assert snap["passthrough_ipv6_control"] == 2
    assert snap["passthrough_frames"] == 4
    assert snap["held_frames"] == 4  # TCP, UDP, ICMPv6 and the fragment wait for the secondary


def test_tcp_checksum_over_ipv6() -> None:
    for extensions in ((), (HOP_BY_HOP,), (DEST_OPTIONS,)):
        good = tcp6_frame(9, 9, "AP", b"odd", extensions=extensions)
        bad = tcp6_frame(9, 9, "AP", b"odd", extensions=extensions, bad_checksum=True)
        assert checksums_ok(good, 14, parsed(good))
        assert not checksums_ok(bad, 14, parsed(bad))
    # With a routing header the pseudo-header's destination is the final one: not checked.
    routed = tcp6_frame(9, 9, "AP", b"odd", extensions=(ROUTING,), bad_checksum=True)
    assert checksums_ok(routed, 14, parsed(routed))


def test_read_classifier_ignores_bad_checksum_ipv6_client_segments() -> None:
    classifier = ReadClassifier(("GET",), ("/kv/",))
    request = b"GET /kv/a HTTP/1.1\r\nHost: g\r\n\r\n"
    common = {"src": CLIENT6, "dst": GUEST6, "sport": 40000, "dport": 80}
    bad = tcp6_frame(1000, 5, "AP", request, bad_checksum=True, **common)  # type: ignore[arg-type]
    assert classifier.observe(parsed(bad), bad) is None
    assert classifier.bad_checksum_frames == 1
    good = tcp6_frame(1000, 5, "AP", request, **common)  # type: ignore[arg-type]
    key = classifier.observe(parsed(good), good)
    assert key is not None and is_ipv6_key(key)
    assert classifier.read_requests == 1 and classifier.covers(key, 1000 + len(request))


def test_to_ipv6_keeps_every_l4_byte() -> None:
    four = tcp_frame(77, 88, "AP", b"payload")
    six = to_ipv6(four, extensions=(HOP_BY_HOP,))
    p4, p6 = parsed(four), parsed(six)
    assert four[p4.payload_start : p4.payload_end] == six[p6.payload_start : p6.payload_end]
    assert checksums_ok(six, 14, p6)


def test_passthrough_labels_are_bounded() -> None:
    c = Comparator()
    base = arp_frame()
    for ethertype in range(0x0900, 0x0900 + MAX_ETHERTYPE_LABELS + 10):
        c.feed_primary(base[:12] + struct.pack("!H", ethertype) + base[14:], 0.0)
    by_type = c.snapshot()["passthrough_by_ethertype"]
    assert len(by_type) == MAX_ETHERTYPE_LABELS + 1 and by_type["other"] == 10


@pytest.mark.parametrize("flags", ["SA", "S"])
def test_a_new_ipv6_connection_waits_for_a_checkpoint(flags: str) -> None:
    """No IPv6 connection is ever young: its opening segment leaves with a checkpoint, even
    when the secondary's matches (filter-rewriter could not translate its sequence numbers)."""
    c = Comparator()
    syn_ack = tcp6_frame(1000, 77 if "A" in flags else 0, flags)
    out = c.feed_primary(syn_ack, 0.0)
    assert checkpoints(out) == ["ipv6_new_connection"] and released(out) == []
    out = c.feed_secondary(tcp6_frame(5555, 77 if "A" in flags else 0, flags), 0.001)
    assert released(out) == [] and checkpoints(out) == []
    assert c.counters.ipv6_birth_checkpoints == 1
    assert c.snapshot()["divergences"] == {}  # not a divergence
    assert released(c.checkpoint_done(0.05)) == [syn_ack]
    # After the checkpoint the connection is an ordinary one: data is compared and leaves.
    data = tcp6_frame(1001, 78, "AP", b"hi")
    c.feed_primary(data, 0.06)
    assert released(c.feed_secondary(tcp6_frame(1001, 78, "AP", b"hi"), 0.07)) == [data]


def test_an_ipv6_syn_during_a_pending_checkpoint_waits_for_that_one() -> None:
    c = Comparator()
    c.feed_primary(tcp6_frame(1, 1, "AP", b"x"), 0.0)
    assert checkpoints(c.feed_secondary(tcp6_frame(1, 1, "AP", b"y"), 0.0)) == [
        "tcp_payload_mismatch"
    ]
    syn_ack = tcp6_frame(1000, 77, "SA", dport=40001)
    assert c.feed_primary(syn_ack, 0.01) == []  # the pending checkpoint serves it too
    assert syn_ack in released(c.checkpoint_done(0.05))


def test_ipv4_syn_ack_is_not_held_for_a_checkpoint() -> None:
    c = Comparator()
    syn_ack = tcp_frame(1000, 77, "SA")
    assert c.feed_primary(syn_ack, 0.0) == []
    assert released(c.feed_secondary(tcp_frame(5555, 77, "SA"), 0.001)) == [syn_ack]
    assert c.counters.ipv6_birth_checkpoints == 0
