"""Frame parsing: fields, passthrough classes, malformed reasons."""

from __future__ import annotations

from compare_frames import arp_frame, icmp_frame, tcp_frame, udp_frame
from compare_frames6 import neighbour_advert

from colopp.compare.packet import (
    ACK,
    FIN,
    ICMP,
    PASSTHROUGH,
    PSH,
    TCP,
    UDP,
    Malformed,
    Packet,
    parse_frame,
)


def test_tcp_fields() -> None:
    frame = tcp_frame(0xDEADBEEF, 42, "APF", b"hello", sport=80, dport=1234)
    pkt = parse_frame(frame)
    assert isinstance(pkt, Packet)
    assert pkt.kind == TCP
    assert pkt.key[0] == TCP and pkt.key[3:] == (80, 1234)
    assert (pkt.seq, pkt.ack, pkt.flags) == (0xDEADBEEF, 42, ACK | PSH | FIN)
    assert frame[pkt.payload_start : pkt.payload_end] == b"hello"


def test_vnet_offset() -> None:
    frame = bytes(12) + udp_frame(b"q")
    pkt = parse_frame(frame, 12)
    assert isinstance(pkt, Packet) and pkt.kind == UDP
    assert frame[pkt.payload_end - 1 :] == b"q"


def test_icmp_and_passthrough() -> None:
    assert getattr(parse_frame(icmp_frame(b"x")), "kind", None) == ICMP
    for frame in (arp_frame(), neighbour_advert()):
        assert getattr(parse_frame(frame), "kind", None) == PASSTHROUGH


def test_vlan_is_passthrough_like_colo_compare() -> None:
    frame = tcp_frame(1, 1, "A")
    tagged = frame[:12] + b"\x81\x00\x00\x05" + frame[12:]
    assert getattr(parse_frame(tagged), "kind", None) == PASSTHROUGH


def test_malformed_reasons() -> None:
    frame = tcp_frame(1, 1, "AP", b"data")
    assert parse_frame(frame[:10]) == Malformed("short_ethernet")
    assert parse_frame(frame[:30]) == Malformed("short_ip")
    assert parse_frame(frame[:40]) == Malformed("ip_total_length")
    bad_version = frame[:14] + b"\x65" + frame[15:]
    assert parse_frame(bad_version) == Malformed("ip_version")
    bad_doff = bytearray(frame)
    bad_doff[14 + 20 + 12] = 0x20
    assert parse_frame(bytes(bad_doff)) == Malformed("tcp_data_offset")
    assert parse_frame(frame, vnet_hdr_len=len(frame)) == Malformed("short_ethernet")
