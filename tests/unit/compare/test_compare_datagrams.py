"""UDP, ICMP, other IPv4 and non-IPv4 frames in the core."""

from __future__ import annotations

from compare_actions import checkpoints, released
from compare_frames import arp_frame, icmp_frame, tcp_frame, udp_frame
from compare_frames6 import neighbour_advert

from colopp.compare import Comparator, Release


def test_udp_matches_in_order_ignoring_ip_id() -> None:
    c = Comparator()
    p = [udp_frame(b"a", ip_id=1), udp_frame(b"b", ip_id=2)]
    out = c.feed_primary(p[0], 0.0) + c.feed_primary(p[1], 0.0)
    out += c.feed_secondary(udp_frame(b"a", ip_id=77), 0.0)
    out += c.feed_secondary(udp_frame(b"b", ip_id=78), 0.0)
    assert released(out) == p
    assert checkpoints(out) == []


def test_udp_payload_mismatch_checkpoints_once() -> None:
    c = Comparator()
    c.feed_primary(udp_frame(b"answer 1"), 0.0)
    out = c.feed_secondary(udp_frame(b"answer 2"), 0.0)
    out += c.feed_primary(udp_frame(b"more"), 0.0)
    out += c.feed_secondary(udp_frame(b"other"), 0.0)
    assert checkpoints(out) == ["udp_payload_mismatch"]


def test_icmp_echo_reply() -> None:
    c = Comparator()
    p = icmp_frame(b"ping" * 8, seq=3)
    c.feed_primary(p, 0.0)
    assert released(c.feed_secondary(icmp_frame(b"ping" * 8, seq=3), 0.0)) == [p]
    c.feed_primary(icmp_frame(b"ping", seq=4), 0.0)
    assert checkpoints(c.feed_secondary(icmp_frame(b"pong", seq=4), 0.0)) == [
        "icmp_payload_mismatch"
    ]


def test_arp_and_neighbour_discovery_pass_through_from_primary_dropped_from_secondary() -> None:
    c = Comparator()
    for frame in (arp_frame(), neighbour_advert()):
        assert released(c.feed_primary(frame, 0.0)) == [frame]
        assert c.feed_secondary(frame, 0.0) == []
    assert c.counters.passthrough_frames == 2
    assert c.counters.secondary_dropped == 2
    snap = c.snapshot()
    assert snap["passthrough_by_ethertype"] == {"0x0806": 1}
    assert snap["passthrough_ipv6_control"] == 1


def test_vnet_header_is_preserved() -> None:
    c = Comparator()
    vnet = bytes(range(12))
    p = tcp_frame(7, 8, "AP", b"payload", vnet=vnet)
    c.feed_primary(p, 0.0, vnet_hdr_len=12)
    out = c.feed_secondary(tcp_frame(7, 8, "AP", b"payload", vnet=bytes(12)), 0.0, 12)
    assert out == [Release([p], 12)]


def test_ethernet_padding_is_not_compared() -> None:
    c = Comparator()
    p = tcp_frame(7, 8, "A", pad_to=60)
    c.feed_primary(p, 0.0)
    assert released(c.feed_secondary(tcp_frame(7, 8, "A"), 0.0)) == [p]


def test_malformed_frames_are_dropped_and_counted() -> None:
    c = Comparator()
    good = tcp_frame(1, 2, "AP", b"abc")
    out = c.feed_primary(good[:40], 0.0) + c.feed_secondary(good[:20], 0.0)
    assert released(out) == []
    assert c.counters.malformed == {"primary_ip_total_length": 1, "secondary_short_ip": 1}
