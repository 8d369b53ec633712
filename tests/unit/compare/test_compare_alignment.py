"""Where the comparison of a connection starts (issue #13 bugs 1 and 3) and what a segment
without payload and without ACK/SYN/FIN/RST waits for."""

from __future__ import annotations

from compare_actions import checkpoints, released
from compare_frames import segments, tcp_frame

from colopp.compare import Action, Comparator, CompareConfig, PreRelease, Release
from colopp.compare.config import PreReleaseConfig
from colopp.compare.prerelease import build_policy

SEQ = 0xFFFF_FFC0  # the first 100 bytes cross the 2**32 wrap
ACK = 4242
B = bytes(range(100))
X = b"x" * 100
Y = b"y" * 100


def feed(c: Comparator, events: list[tuple[str, bytes]], now: float = 0.0) -> list[Action]:
    out: list[Action] = []
    for side, frame in events:
        out += c.feed_primary(frame, now) if side == "p" else c.feed_secondary(frame, now)
    return out


def test_mid_stream_bytes_below_the_first_primary_payload_are_compared() -> None:
    """Bug 1, as reported: no SYN seen, the primary's later segment first."""
    c = Comparator()
    p_b, p_x = tcp_frame(SEQ + 100, ACK, "AP", B), tcp_frame(SEQ, ACK, "AP", X)
    out = feed(
        c,
        [
            ("p", p_b),
            ("p", p_x),
            ("s", tcp_frame(SEQ, ACK, "AP", Y)),
            ("s", tcp_frame(SEQ + 100, ACK, "AP", B)),
        ],
    )
    assert released(out) == []
    assert checkpoints(out) == ["tcp_payload_mismatch"]
    assert released(c.checkpoint_done(1.0)) == [p_b, p_x]  # in arrival order


def test_mid_stream_bytes_below_already_released_ones_are_compared() -> None:
    """Bug 1's sibling: the higher segment matched and left before the lower one came."""
    c = Comparator()
    p_b, p_x = tcp_frame(SEQ + 100, ACK, "AP", B), tcp_frame(SEQ, ACK, "AP", X)
    out = feed(c, [("p", p_b), ("s", tcp_frame(SEQ + 100, ACK, "AP", B))])
    assert released(out) == [p_b]
    out = feed(c, [("p", p_x)])
    assert released(out) == []  # not a retransmission: never compared
    out = feed(c, [("s", tcp_frame(SEQ, ACK, "AP", Y))])
    assert released(out) == []
    assert checkpoints(out) == ["tcp_payload_mismatch"]


def test_mid_stream_equal_bytes_below_the_first_payload_match() -> None:
    for order in (["pb", "px", "sx", "sb"], ["pb", "sb", "sx", "px"], ["sx", "pb", "sb", "px"]):
        c = Comparator()
        frames = {
            "pb": ("p", tcp_frame(SEQ + 100, ACK, "AP", B)),
            "px": ("p", tcp_frame(SEQ, ACK, "AP", X)),
            "sb": ("s", tcp_frame(SEQ + 100, ACK, "AP", B)),
            "sx": ("s", tcp_frame(SEQ, ACK, "AP", X)),
        }
        out = feed(c, [frames[k] for k in order])
        assert checkpoints(out) == [], order
        assert sorted(released(out)) == sorted([frames["pb"][1], frames["px"][1]]), order
        assert c.counters.held_frames == 0


def test_active_open_secondary_syn_and_data_before_the_primary_syn() -> None:
    """Bug 3: the secondary's bytes are placed once the ISN difference is known."""
    c = Comparator(CompareConfig(compare_timeout=3.0))
    kw = {"sport": 40001, "dport": 443}
    p_isn, s_isn, server = 300, 4_000_000_000, 77
    data = bytes(range(256)) * 12
    s = [tcp_frame(s_isn, 0, "S", **kw), *segments(data, [700], seq=s_isn + 1, ack=server, **kw)]
    p = [tcp_frame(p_isn, 0, "S", **kw), *segments(data, [1448], seq=p_isn + 1, ack=server, **kw)]
    out = feed(c, [("s", f) for f in s] + [("p", f) for f in p])
    assert released(out) == p
    assert checkpoints(out + c.tick(10.0)) == []


def test_new_incarnation_secondary_first() -> None:
    """Bug 3's sibling: a reused 5-tuple whose secondary SYN and data come first."""
    c = Comparator()
    kw = {"sport": 40002, "dport": 443}
    data = bytes(range(200)) * 10
    events: list[tuple[str, bytes]] = []
    for p_isn, s_isn in ((1000, 9000), (50_000, 70_000)):
        events += [("s", tcp_frame(s_isn, 0, "S", **kw))]
        events += [("s", f) for f in segments(data, [500], seq=s_isn + 1, ack=5, **kw)]
        events += [("p", tcp_frame(p_isn, 0, "S", **kw))]
        events += [("p", f) for f in segments(data, [1448], seq=p_isn + 1, ack=5, **kw)]
    out = feed(c, events)
    assert released(out) == [f for side, f in events if side == "p"]
    assert checkpoints(out + c.tick(10.0)) == []


def test_flagless_empty_segment_waits_for_its_secondary_counterpart() -> None:
    """No payload, none of ACK/SYN/FIN/RST: held until the secondary sent the same (as
    colo-compare, which releases such a segment only against a secondary packet)."""
    c = Comparator(CompareConfig(compare_timeout=3.0))
    c.feed_secondary(tcp_frame(SEQ, ACK, "AP", B), 0.0)
    assert released(c.feed_primary(tcp_frame(SEQ, ACK, "AP", B), 0.0))
    odd = tcp_frame(SEQ + 100, 0, "P")
    assert released(c.feed_primary(odd, 0.1)) == []
    assert released(c.feed_secondary(tcp_frame(SEQ + 100, 0, "P"), 0.2)) == [odd]
    # One the secondary never sends is a difference the compare timeout catches.
    c.feed_primary(tcp_frame(SEQ, 0, "", dport=40001), 1.0)
    assert checkpoints(c.tick(4.5)) == ["compare_timeout"]


def test_pre_release_never_takes_uncompared_mid_stream_bytes_for_retransmissions() -> None:
    """Bug 1's sibling in the pre-release path (the ``retransmission`` rule)."""
    policy = build_policy(PreReleaseConfig(frozenset({"retransmission"})))
    c = Comparator(policy=policy)
    p_b, p_x = tcp_frame(SEQ + 100, ACK, "AP", B), tcp_frame(SEQ, ACK, "AP", X)
    assert released(feed(c, [("p", p_b), ("s", tcp_frame(SEQ + 100, ACK, "AP", B))])) == [p_b]
    out = feed(c, [("p", p_x)])
    assert [a for a in out if isinstance(a, Release | PreRelease)] == []
    out = feed(c, [("s", tcp_frame(SEQ, ACK, "AP", Y))])
    assert checkpoints(out) == ["tcp_payload_mismatch"]
