"""TCP comparison in the pure core: segmentation, ack rule, retransmission, teardown."""

from __future__ import annotations

from compare_actions import checkpoints, released
from compare_frames import CLIENT, GUEST, segments, tcp_frame

from colopp.compare import Action, Comparator, CompareConfig

DATA = bytes(range(256)) * 40  # 10 KiB
SEQ = 1_000_000
ACK = 5_000


def feed_all(c: Comparator, primary: list[bytes], secondary: list[bytes], t: float = 0.0):
    out: list[Action] = []
    for f in primary:
        out += c.feed_primary(f, t)
    for f in secondary:
        out += c.feed_secondary(f, t)
    return out


def test_same_stream_different_segmentation_releases_all_without_checkpoint() -> None:
    c = Comparator()
    p = segments(DATA, [1448], seq=SEQ, ack=ACK, fin=True, fin_separate=False)
    s = segments(DATA, [500, 700, 1], seq=SEQ, ack=ACK, fin=True, fin_separate=True)
    out = feed_all(c, p, s)
    assert released(out) == p
    assert checkpoints(out) == []
    assert c.counters.held_frames == 0
    assert c.counters.held_secondary_bytes == 0


def test_secondary_first_then_primary() -> None:
    c = Comparator()
    p = segments(DATA, [1448], seq=SEQ, ack=ACK)
    s = segments(DATA, [999], seq=SEQ, ack=ACK)
    out = feed_all(c, [], s) + feed_all(c, p, [])
    assert released(out) == p
    assert checkpoints(out) == []


def test_one_byte_difference_triggers_exactly_one_checkpoint() -> None:
    c = Comparator()
    bad = bytearray(DATA)
    bad[5000] ^= 0x01
    p = segments(DATA, [1448], seq=SEQ, ack=ACK)
    s = segments(bytes(bad), [1000], seq=SEQ, ack=ACK)
    out = feed_all(c, p, s)
    # More traffic afterwards must not ask again before the checkpoint completes.
    out += feed_all(c, [tcp_frame(SEQ + len(DATA), ACK, "AP", b"x")], [])
    assert checkpoints(out) == ["tcp_payload_mismatch"]
    assert c.counters.checkpoints_requested == 1
    assert all(f in p[:4] for f in released(out))  # only bytes before the difference left


def test_ack_rule_holds_segment_until_secondary_acked_as_much() -> None:
    c = Comparator()
    p = tcp_frame(SEQ, ACK + 100, "AP", b"hello")
    out = c.feed_primary(p, 0.0)
    out += c.feed_secondary(tcp_frame(SEQ, ACK, "AP", b"hello"), 0.0)
    assert released(out) == []  # same bytes, but the secondary has not seen the client's 100
    out = c.feed_secondary(tcp_frame(SEQ + 5, ACK + 100, "A"), 0.1)
    assert released(out) == [p]


def test_pure_ack_follows_ack_rule() -> None:
    c = Comparator()
    p = tcp_frame(SEQ, ACK + 10, "A")
    assert released(c.feed_primary(p, 0.0)) == []
    assert released(c.feed_secondary(tcp_frame(SEQ, ACK + 9, "A"), 0.0)) == []
    assert released(c.feed_secondary(tcp_frame(SEQ, ACK + 10, "A"), 0.0)) == [p]


def test_ack_rule_across_sequence_wrap() -> None:
    c = Comparator()
    near = 0xFFFFFFF0
    p = tcp_frame(near, 0x10, "AP", b"a" * 32)  # seq and ack both wrap
    c.feed_secondary(tcp_frame(near, 0xFFFFFFFF, "AP", b"a" * 32), 0.0)
    assert released(c.feed_primary(p, 0.0)) == []
    assert released(c.feed_secondary(tcp_frame(near + 32, 0x10, "A"), 0.0)) == [p]


def test_retransmission_is_released_without_new_comparison() -> None:
    c = Comparator()
    p = segments(DATA[:3000], [1000], seq=SEQ, ack=ACK)
    s = segments(DATA[:3000], [1500], seq=SEQ, ack=ACK)
    out = feed_all(c, p, s)
    assert released(out) == p
    out = c.feed_primary(p[1], 1.0)
    assert released(out) == [p[1]]
    assert checkpoints(out) == []
    assert c.counters.retransmitted_frames == 1


def test_secondary_retransmission_is_ignored() -> None:
    c = Comparator()
    p = segments(DATA[:3000], [1000], seq=SEQ, ack=ACK)
    s = segments(DATA[:3000], [1000], seq=SEQ, ack=ACK)
    out = feed_all(c, p, [s[0], s[0], s[1], s[0], s[2]])
    assert released(out) == p
    assert checkpoints(out) == []


def test_primary_reordering_releases_in_sequence_order() -> None:
    c = Comparator()
    p = segments(DATA[:4000], [1000], seq=SEQ, ack=ACK)
    s = segments(DATA[:4000], [4000], seq=SEQ, ack=ACK)
    out = feed_all(c, [p[1], p[0], p[3], p[2]], s)
    assert released(out) == p
    assert checkpoints(out) == []


def test_secondary_reordering() -> None:
    c = Comparator()
    p = segments(DATA[:4000], [1000], seq=SEQ, ack=ACK)
    s = segments(DATA[:4000], [700], seq=SEQ, ack=ACK)
    out = feed_all(c, p, list(reversed(s)))
    assert released(out) == p
    assert checkpoints(out) == []


def test_passive_open_handshake_compares_across_isns() -> None:
    """The guest accepts: secondary SYN-ACK keeps its own ISN, later segments are rewritten."""
    c = Comparator()
    client_isn, p_isn, s_isn = 7000, 100_000, 9_999_999
    p_synack = tcp_frame(p_isn, client_isn + 1, "SA")
    out = c.feed_primary(p_synack, 0.0)
    assert released(out) == []
    out = c.feed_secondary(tcp_frame(s_isn, client_isn + 1, "SA"), 0.0)
    assert released(out) == [p_synack]
    p = segments(DATA, [1448], seq=p_isn + 1, ack=client_isn + 50, fin=True)
    s = segments(DATA, [512], seq=p_isn + 1, ack=client_isn + 50, fin=True, fin_separate=False)
    out = feed_all(c, p, s)
    assert released(out) == p
    assert checkpoints(out) == []


def test_active_open_maps_secondary_isn() -> None:
    """The guest connects out: filter-rewriter learns no offset, the core maps the ISNs."""
    c = Comparator()
    p_isn, s_isn, server_isn = 300, 4_000_000_000, 77
    kw = {"sport": 40001, "dport": 443}
    p_syn = tcp_frame(p_isn, 0, "S", **kw)
    c.feed_primary(p_syn, 0.0)
    assert released(c.feed_secondary(tcp_frame(s_isn, 0, "S", **kw), 0.0)) == [p_syn]
    p = segments(DATA, [1448], seq=p_isn + 1, ack=server_isn + 1, **kw)
    s = segments(DATA, [1000], seq=s_isn + 1, ack=server_isn + 1, **kw)
    out = feed_all(c, p, s)
    assert released(out) == p
    assert checkpoints(out) == []


def test_teardown_cleans_connection_state() -> None:
    c = Comparator(CompareConfig(closed_linger=1.0))
    p = segments(DATA[:2000], [1000], seq=SEQ, ack=ACK, fin=True)
    s = segments(DATA[:2000], [2000], seq=SEQ, ack=ACK, fin=True, fin_separate=False)
    out = feed_all(c, p, s)
    assert released(out) == p
    last_ack = tcp_frame(SEQ + 2001, ACK + 1, "A")
    c.feed_primary(last_ack, 0.1)
    assert released(c.feed_secondary(tcp_frame(SEQ + 2001, ACK + 1, "A"), 0.1)) == [last_ack]
    assert c.snapshot()["tcp_connections"] == 1
    c.tick(5.0)
    assert c.snapshot()["tcp_connections"] == 0
    assert c.counters.connections_closed == 1


def test_rst_needs_secondary_rst() -> None:
    c = Comparator()
    rst = tcp_frame(SEQ, ACK, "AR")
    c.feed_secondary(tcp_frame(SEQ, ACK, "A"), 0.0)
    assert released(c.feed_primary(rst, 0.0)) == []
    assert released(c.feed_secondary(tcp_frame(SEQ, ACK, "AR"), 0.0)) == [rst]


def test_fin_at_different_position_is_divergence() -> None:
    c = Comparator()
    c.feed_primary(tcp_frame(SEQ, ACK, "AP", b"abcd"), 0.0)
    c.feed_primary(tcp_frame(SEQ + 4, ACK, "AF"), 0.0)
    out = c.feed_secondary(tcp_frame(SEQ, ACK, "APF", b"abc"), 0.0)
    assert checkpoints(out) == ["tcp_fin_mismatch"]


def test_new_incarnation_of_same_ports() -> None:
    c = Comparator()
    for isn in (1000, 5_000_000):
        synack = tcp_frame(isn, 42, "SA")
        c.feed_primary(synack, 0.0)
        assert released(c.feed_secondary(tcp_frame(isn + 7, 42, "SA"), 0.0)) == [synack]
        p = segments(DATA[:3000], [1448], seq=isn + 1, ack=43, fin=True)
        s = segments(DATA[:3000], [3000], seq=isn + 1, ack=43, fin=True)
        assert released(feed_all(c, p, s)) == p
    assert c.counters.checkpoints_requested == 0


def test_connections_are_independent() -> None:
    c = Comparator()
    a = segments(DATA[:2000], [1000], seq=SEQ, ack=ACK, dport=1)
    b = segments(DATA[:2000], [1000], seq=SEQ, ack=ACK, dport=2)
    out = feed_all(c, a + b, b)
    assert released(out) == b
    assert released(feed_all(c, [], a)) == a


def test_other_hosts_key_separately() -> None:
    c = Comparator()
    p = tcp_frame(SEQ, ACK, "AP", b"x", src=GUEST, dst=CLIENT)
    s = tcp_frame(SEQ, ACK, "AP", b"x", src=GUEST, dst="198.18.0.99")
    out = feed_all(c, [p], [s])
    assert released(out) == []


def test_secondary_stream_ending_early_is_divergence() -> None:
    c = Comparator()
    c.feed_primary(tcp_frame(SEQ, ACK, "AP", b"abc"), 0.0)
    c.feed_primary(tcp_frame(SEQ + 3, ACK, "AP", b"d"), 0.0)
    out = c.feed_secondary(tcp_frame(SEQ, ACK, "APF", b"abc"), 0.0)
    assert checkpoints(out) == ["tcp_fin_mismatch"]
