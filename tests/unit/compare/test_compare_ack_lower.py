"""ACK lowering (issue 15): an early read answer leaves with its ACK lowered to what the
secondary acknowledged; bare ACKs give the client the real one as the secondary catches up."""

from __future__ import annotations

import struct

import pytest
from compare_actions import released
from compare_frames import CLIENT, GUEST, _checksum, tcp_frame
from compare_frames6 import HOP_BY_HOP, to_ipv6

from colopp.compare import Action, Comparator, PreRelease, PreReleaseConfig, build_policy
from colopp.compare.ack_frames import bare_ack_frame, lowered_frame
from colopp.compare.ipv6 import upper_layer
from colopp.compare.packet import Packet, parse_frame
from colopp.errors import ConfigError
from colopp.rewrite.segment import tcp_checksum

G_SEQ = 0xFFFF_FF80  # the guest's sequence numbers cross the 2**32 wrap
C_SEQ = 0xFFFF_FFF0  # so do the client's
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
GET = "GET /kv/a HTTP/1.1\r\nHost: guest\r\n\r\n"
END = (C_SEQ + len(GET)) & 0xFFFF_FFFF
REPLY = tcp_frame(G_SEQ, END, "AP", RESPONSE)
SECONDARY_REPLY = REPLY


def comparator(lower_acks: bool = True) -> Comparator:  # opt-in: see ack_lower.py
    config = PreReleaseConfig(
        frozenset({"retransmission", "ack_only", "http_read"}), ("/kv/",), lower_acks=lower_acks
    )
    policy = build_policy(config)
    assert policy is not None
    return Comparator(policy=policy)


def request(text: str, seq: int = C_SEQ) -> bytes:
    return tcp_frame(seq, G_SEQ, "AP", text.encode(), src=CLIENT, dst=GUEST, sport=40000, dport=80)


def early(actions: list[Action]) -> list[bytes]:
    return [f for a in actions if isinstance(a, PreRelease) for f in a.frames]


def fields(frame: bytes) -> Packet:
    pkt = parse_frame(frame)
    assert isinstance(pkt, Packet)
    return pkt


def checksums_ok(frame: bytes) -> bool:
    """Both checksums of an IPv4 frame (or the TCP one of an IPv6 frame) are right."""
    if frame[12:14] == b"\x86\xdd":
        end = 54 + struct.unpack_from("!H", frame, 18)[0]
        found = upper_layer(frame, 14, end)
        assert isinstance(found, tuple) and found[0] == 6 and end == len(frame)
        l4 = found[1]
        pseudo = frame[22:54] + struct.pack("!IxxxB", end - l4, 6)
        return _checksum(pseudo + frame[l4:end]) == 0
    ihl = (frame[14] & 0x0F) * 4
    l4, end = 14 + ihl, 14 + struct.unpack_from("!H", frame, 16)[0]
    src, dst = struct.unpack_from("!II", frame, 26)
    expected = tcp_checksum(frame, l4, end, src, dst)
    return _checksum(frame[14 : 14 + ihl]) == 0 and frame[l4 + 16 : l4 + 18] == struct.pack(
        "!H", expected
    )


def primed(c: Comparator) -> None:
    """The secondary acknowledged everything before the request (its handshake ACK)."""
    c.feed_secondary(tcp_frame(G_SEQ, C_SEQ, "A"), 0.0)
    c.feed_primary(tcp_frame(G_SEQ, C_SEQ, "A"), 0.0)
    c.feed_client(request(GET), 0.0)


# ---- frames -------------------------------------------------------------------------------


def test_lowering_rewrites_only_the_ack_and_keeps_checksums_right() -> None:
    for frame in (REPLY, to_ipv6(REPLY), to_ipv6(REPLY, extensions=(HOP_BY_HOP,))):
        out = lowered_frame(frame, 0, C_SEQ)
        assert out is not None and len(out) == len(frame)
        assert fields(out).ack == C_SEQ and fields(out).seq == G_SEQ
        assert out.endswith(RESPONSE) and checksums_ok(out)


def test_sack_fin_and_offloaded_frames_are_not_lowered() -> None:
    fin = tcp_frame(G_SEQ, END, "AFP", RESPONSE)
    assert lowered_frame(fin, 0, C_SEQ) is None
    # A SACK option (NOP NOP SACK 10: one block) in a 32-byte TCP header.
    sack = bytearray(tcp_frame(G_SEQ, END, "AP", bytes(12) + RESPONSE))
    sack[46] = 8 << 4  # data offset 32
    sack[54:66] = bytes([1, 1, 5, 10]) + struct.pack("!II", END + 10, END + 20)
    assert lowered_frame(bytes(sack), 0, C_SEQ) is None
    # Timestamps alone (NOP NOP TS) are fine.
    stamps = bytearray(sack)
    stamps[54:66] = bytes([1, 1, 8, 10]) + struct.pack("!II", 1, 2)
    assert lowered_frame(bytes(stamps), 0, C_SEQ) is not None
    # virtio-net header asking for checksum offload: the field is partial.
    vnet = tcp_frame(G_SEQ, END, "AP", RESPONSE, vnet=bytes([1]) + bytes(9))
    assert lowered_frame(vnet, 10, C_SEQ) is None
    plain = tcp_frame(G_SEQ, END, "AP", RESPONSE, vnet=bytes(10))
    assert lowered_frame(plain, 10, C_SEQ) is not None


def test_a_bare_ack_is_the_header_with_new_numbers_and_right_checksums() -> None:
    for frame in (REPLY, to_ipv6(REPLY), to_ipv6(REPLY, extensions=(HOP_BY_HOP,))):
        bare = bare_ack_frame(frame, 0, G_SEQ + 45, END)
        assert bare is not None
        pkt = fields(bare)
        assert (pkt.seq, pkt.ack, pkt.flags, pkt.payload_end - pkt.payload_start) == (
            (G_SEQ + 45) & 0xFFFF_FFFF,
            END,
            0x10,
            0,
        )
        assert checksums_ok(bare)


# ---- the core -----------------------------------------------------------------------------


def test_an_answer_leaves_early_with_the_ack_the_secondary_gave() -> None:
    c = comparator()
    primed(c)
    out = c.feed_primary(REPLY, 0.01)  # the secondary has not acknowledged the request
    [sent] = early(out)
    assert fields(sent).ack == C_SEQ and sent.endswith(RESPONSE) and checksums_ok(sent)
    # The secondary's answer (ACK piggy-backed): compared, not sent twice; a bare ACK gives
    # the client the real ACK at once, at the end of what it was sent.
    out = c.feed_secondary(SECONDARY_REPLY, 0.02)
    assert released(out) == []
    [bare] = early(out)
    pkt = fields(bare)
    assert (pkt.ack, pkt.seq) == (END, (G_SEQ + len(RESPONSE)) & 0xFFFF_FFFF)
    assert pkt.payload_end == pkt.payload_start and checksums_ok(bare)
    snap = c.snapshot()
    assert (snap["prerelease_ack_lowered"], snap["prerelease_bare_acks"]) == (1, 1)
    assert snap["held_frames"] == 0 and snap["checkpoints_requested"] == 0
    assert snap["pre_release"]["lower_acks"] is True


def test_the_secondary_bare_ack_raises_the_client_ack_once() -> None:
    c = comparator()
    primed(c)
    early(c.feed_primary(REPLY, 0.01))
    half = (C_SEQ + 10) & 0xFFFF_FFFF
    [bare] = early(c.feed_secondary(tcp_frame(G_SEQ, half, "A"), 0.02))
    assert fields(bare).ack == half  # as far as the secondary got, no further
    [bare] = early(c.feed_secondary(tcp_frame(G_SEQ, END, "A"), 0.03))
    assert fields(bare).ack == END
    # Nothing more is owed: the secondary's answer sends nothing (no duplicate ACK).
    assert c.feed_secondary(SECONDARY_REPLY, 0.04) == []
    assert c.counters.prerelease_bare_acks == 2


def test_a_checkpoint_gives_the_client_what_it_is_owed() -> None:
    c = comparator()
    primed(c)
    early(c.feed_primary(REPLY, 0.01))
    c.checkpoint_started(0.1)
    out = c.checkpoint_done(0.2)
    [bare] = early(out)
    assert fields(bare).ack == END and released(out) == []


def test_a_later_compared_frame_with_the_real_ack_needs_no_bare_ack() -> None:
    c = comparator()
    primed(c)
    early(c.feed_primary(REPLY, 0.01))
    put = "PUT /kv/b HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"
    c.feed_client(request(put, END), 0.01)
    more = tcp_frame(G_SEQ + len(RESPONSE), (END + len(put)) & 0xFFFF_FFFF, "AP", RESPONSE)
    assert c.feed_primary(more, 0.01) == []  # a write's answer: refused
    # The checkpoint flushes it with its real ACK: that is the client's ACK; nothing owed.
    out = c.checkpoint_done(0.2)
    assert released(out) == [more] and early(out) == []


def test_without_lowering_the_answer_waits_for_the_secondary_ack() -> None:
    c = comparator(lower_acks=False)
    primed(c)
    assert c.feed_primary(REPLY, 0.01) == []
    assert released(c.feed_secondary(SECONDARY_REPLY, 0.02)) == [REPLY]
    assert c.counters.late_ack_refused == 1 and c.counters.prerelease_ack_lowered == 0


def test_a_write_answer_is_never_lowered() -> None:
    c = comparator()
    c.feed_secondary(tcp_frame(G_SEQ, C_SEQ, "A"), 0.0)
    put = "PUT /kv/a HTTP/1.1\r\nContent-Length: 3\r\n\r\nnew"
    end = (C_SEQ + len(put)) & 0xFFFF_FFFF
    c.feed_client(request(put), 0.0)
    reply = tcp_frame(G_SEQ, end, "AP", RESPONSE)
    assert c.feed_primary(reply, 0.01) == []
    assert released(c.feed_secondary(reply, 0.02)) == [reply]
    assert c.counters.prerelease_ack_lowered == 0


def test_lowering_is_opt_in_on_the_cli() -> None:
    from colopp.compare.__main__ import options_from_args

    base = ["--primary-in", "unix:/p", "--secondary-in", "unix:/s", "--outdev", "unix:/o"]
    args = [*base, "--prerelease=auto", "--prerelease-read-prefix", "/kv/"]
    on = options_from_args([*args, "--prerelease-ack-lowering"])
    off = options_from_args(args)  # off by default: not safe with other writers
    assert on.prerelease.lower_acks and not off.prerelease.lower_acks
    assert PreReleaseConfig().lower_acks is False
    with pytest.raises(ConfigError):
        options_from_args([*base, "--prerelease-ack-lowering"])
