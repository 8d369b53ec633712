"""COLO++ pre-release: the rules, the absolute ACK rule, the write rule, mismatches, and
identical behaviour when the policy is off."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from compare_actions import checkpoints, released
from compare_frames import CLIENT, GUEST, segments, tcp_frame, udp_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare import (
    Action,
    Comparator,
    PreRelease,
    PreReleaseConfig,
    build_policy,
)
from colopp.compare.__main__ import options_from_args
from colopp.compare.packet import parse_frame
from colopp.compare.tcp import TcpConnection
from colopp.errors import ConfigError

G_SEQ = 0xFFFF_FF00  # the guest's sequence numbers cross the 2**32 wrap
C_SEQ = 7000  # the client's
ALL = frozenset({"retransmission", "ack_only", "http_read"})


def early(actions: list[Action]) -> list[bytes]:
    return [f for a in actions if isinstance(a, PreRelease) for f in a.frames]


def comparator(rules: frozenset[str] = ALL, prefixes: tuple[str, ...] = ("/kv/",)) -> Comparator:
    policy = build_policy(PreReleaseConfig(rules, prefixes if "http_read" in rules else ()))
    assert policy is not None
    return Comparator(policy=policy)


def request(text: str, seq: int = C_SEQ, dport: int = 40000) -> bytes:
    """A client->guest segment carrying ``text``."""
    return tcp_frame(seq, G_SEQ, "AP", text.encode(), src=CLIENT, dst=GUEST, sport=dport, dport=80)


def get(path: str, method: str = "GET") -> str:
    return f"{method} {path} HTTP/1.1\r\nHost: guest\r\n\r\n"


def secondary_ack(ack: int, dport: int = 40000) -> bytes:
    """The secondary's bare ACK: it received the client's bytes up to ``ack``."""
    return tcp_frame(G_SEQ, ack, "A", dport=dport)


RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def test_read_response_leaves_once_the_secondary_acked_the_request() -> None:
    c = comparator()
    req = get("/kv/a")
    end = C_SEQ + len(req)
    assert c.feed_client(request(req), 0.0) == []
    reply = tcp_frame(G_SEQ, end, "AP", RESPONSE)
    # The secondary has not acknowledged the request yet: the reply waits (absolute rule).
    assert c.feed_primary(reply, 0.01) == []
    out = c.feed_secondary(secondary_ack(end), 0.02)
    assert early(out) == [reply] and released(out) == []
    # The secondary's answer arrives later: compared, equal, not sent twice, no checkpoint.
    out = c.feed_secondary(tcp_frame(G_SEQ, end, "AP", RESPONSE), 0.03)
    assert out == []
    k = c.counters
    assert (k.pre_released_frames, k.matched_frames, k.held_frames) == (1, 1, 0)
    assert k.checkpoints_requested == 0
    assert c.snapshot()["pre_release_ratio"] == 1.0


def test_guest_acking_at_once_lets_the_reply_go_with_the_secondary_ack() -> None:
    # A guest that ACKs a request before answering (TCP_QUICKACK): the primary's bare ACK
    # and its reply wait; the secondary's bare ACK matches that ACK (a compared, in-order
    # release) and must also let the reply behind it leave early.
    c = comparator()
    req = get("/kv/a")
    end = C_SEQ + len(req)
    c.feed_client(request(req), 0.0)
    ack = tcp_frame(G_SEQ, end, "A")
    reply = tcp_frame(G_SEQ, end, "AP", RESPONSE)
    assert c.feed_primary(ack, 0.01) == [] and c.feed_primary(reply, 0.01) == []
    out = c.feed_secondary(secondary_ack(end), 0.02)
    assert released(out) == [ack] and early(out) == [reply]
    assert c.feed_secondary(tcp_frame(G_SEQ, end, "AP", RESPONSE), 0.03) == []
    assert c.counters.held_frames == 0 and c.counters.checkpoints_requested == 0


def test_a_response_split_in_segments_leaves_in_order() -> None:
    c = comparator()
    req = get("/kv/a")
    end = C_SEQ + len(req)
    c.feed_client(request(req), 0.0)
    c.feed_secondary(secondary_ack(end), 0.0)
    body = bytes(range(200)) * 20
    frames = segments(body, [1000], seq=G_SEQ, ack=end)
    out: list[Action] = []
    for f in frames:
        out += c.feed_primary(f, 0.1)
    assert early(out) == frames
    for f in segments(body, [700], seq=G_SEQ, ack=end):
        out += c.feed_secondary(f, 0.2)
    assert released(out) == [] and checkpoints(out) == []
    assert c.counters.held_frames == 0


def test_no_pre_release_after_a_write_until_a_checkpoint() -> None:
    c = comparator()
    put = "PUT /kv/a HTTP/1.1\r\nContent-Length: 3\r\n\r\nnew"
    c.feed_client(request(put, dport=40001), 0.0)
    req = get("/kv/a")
    end = C_SEQ + len(req)
    c.feed_client(request(req), 0.0)
    c.feed_secondary(secondary_ack(end), 0.0)
    assert early(c.feed_primary(tcp_frame(G_SEQ, end, "AP", RESPONSE), 0.1)) == []
    # A checkpoint re-arms: the next read's answer may go early again.
    c.checkpoint_done(0.2)
    req2 = get("/kv/b")
    end2 = end + len(req2)
    c.feed_client(request(req2, seq=end), 0.3)
    c.feed_secondary(secondary_ack(end2), 0.3)
    reply2 = tcp_frame(G_SEQ + len(RESPONSE), end2, "AP", RESPONSE)
    assert early(c.feed_primary(reply2, 0.4)) == [reply2]


def test_unconfigured_paths_and_methods_are_writes() -> None:
    for text in (get("/admin"), get("/kv/a", "POST"), "garbage\r\n\r\n", get("/kv/../x")):
        c = comparator()
        end = C_SEQ + len(text)
        c.feed_client(request(text), 0.0)
        c.feed_secondary(secondary_ack(end), 0.0)
        assert early(c.feed_primary(tcp_frame(G_SEQ, end, "AP", RESPONSE), 0.1)) == [], text
        assert c.snapshot()["pre_release"]["write_seen"]


def test_udp_input_is_a_write() -> None:
    c = comparator()
    req = get("/kv/a")
    end = C_SEQ + len(req)
    c.feed_client(request(req), 0.0)
    c.feed_client(udp_frame(b"set x", src=CLIENT, dst=GUEST), 0.0)
    c.feed_secondary(secondary_ack(end), 0.0)
    assert early(c.feed_primary(tcp_frame(G_SEQ, end, "AP", RESPONSE), 0.1)) == []


def test_request_seen_after_the_response_still_lets_it_go() -> None:
    c = comparator()
    req = get("/kv/a")
    end = C_SEQ + len(req)
    reply = tcp_frame(G_SEQ, end, "AP", RESPONSE)
    c.feed_secondary(secondary_ack(end), 0.0)
    assert c.feed_primary(reply, 0.0) == []
    assert early(c.feed_client(request(req), 0.1)) == [reply]


def test_pipelined_reads_and_split_request_heads() -> None:
    c = comparator()
    text = get("/kv/a") + get("/kv/b", "HEAD")
    cut = 10
    c.feed_client(request(text[:cut]), 0.0)
    c.feed_client(request(text[cut:], seq=C_SEQ + cut), 0.0)
    c.feed_client(request(text[:cut]), 0.0)  # a retransmission: classified once
    end = C_SEQ + len(text)
    c.feed_secondary(secondary_ack(end), 0.0)
    reply = tcp_frame(G_SEQ, end, "AP", RESPONSE)
    assert early(c.feed_primary(reply, 0.1)) == [reply]
    assert c.snapshot()["pre_release"]["read_requests"] == 2


def test_mismatch_on_pre_released_output_forces_a_checkpoint() -> None:
    c = comparator()
    req = get("/kv/a")
    end = C_SEQ + len(req)
    c.feed_client(request(req), 0.0)
    c.feed_secondary(secondary_ack(end), 0.0)
    reply = tcp_frame(G_SEQ, end, "AP", RESPONSE)
    assert early(c.feed_primary(reply, 0.1)) == [reply]
    out = c.feed_secondary(tcp_frame(G_SEQ, end, "AP", RESPONSE.replace(b"hello", b"HELLO")), 0.2)
    assert checkpoints(out) == ["prerelease_mismatch"]
    assert c.counters.prerelease_mismatches == 1
    assert c.snapshot()["divergences"] == {"prerelease_mismatch": 1}
    # Nothing leaves early while the checkpoint is pending; the flush does not resend.
    req2 = get("/kv/b")
    c.feed_client(request(req2, seq=end, dport=40000), 0.3)
    assert released(c.checkpoint_done(0.4)) == []


def test_ack_only_segments_pass_a_waiting_response() -> None:
    c = comparator(frozenset({"ack_only"}))
    data = tcp_frame(G_SEQ, C_SEQ, "AP", b"response")
    assert c.feed_primary(data, 0.0) == []
    bare = tcp_frame(G_SEQ + 8, C_SEQ + 100, "A")
    # Not before the secondary acknowledged the client's 100 bytes.
    assert c.feed_primary(bare, 0.1) == []
    out = c.feed_secondary(secondary_ack(C_SEQ + 100), 0.2)
    assert early(out) == [bare]
    out = c.feed_secondary(tcp_frame(G_SEQ, C_SEQ + 100, "AP", b"response"), 0.3)
    assert released(out) == [data] and checkpoints(out) == []


def test_retransmission_of_compared_bytes_behind_a_bare_ack() -> None:
    c = comparator(frozenset({"retransmission"}))
    first = tcp_frame(G_SEQ, C_SEQ, "AP", b"abc")
    c.feed_primary(first, 0.0)
    assert released(c.feed_secondary(tcp_frame(G_SEQ, C_SEQ, "AP", b"abc"), 0.0)) == [first]
    c.feed_secondary(secondary_ack(C_SEQ + 5), 0.0)
    again = tcp_frame(G_SEQ, C_SEQ + 5, "AP", b"abc")
    assert released(c.feed_primary(again, 0.1)) == [again]  # the stock rule already
    assert c.counters.pre_released_frames == 0


@pytest.mark.parametrize("rules", [ALL, frozenset({"ack_only"})])
def test_policy_off_keeps_the_fast_paths(rules: frozenset[str]) -> None:
    assert build_policy(PreReleaseConfig()) is None
    c = Comparator(policy=build_policy(PreReleaseConfig()))
    data = bytes(range(251)) * 8
    p = segments(data, [500], seq=G_SEQ, ack=C_SEQ)
    c.feed_primary(p[0], 0.0)
    c.feed_secondary(p[0], 0.0)
    with mock.patch.object(TcpConnection, "add_primary", side_effect=AssertionError):
        for f in p[1:]:
            c.feed_primary(f, 0.1)
            c.feed_secondary(f, 0.1)
    assert c.feed_client(request(get("/kv/a")), 0.2) == []
    assert c.counters.released_frames == len(p)
    assert comparator(rules)._fast is False


def test_cli_flags() -> None:
    base = ["--primary-in", "unix:/p", "--secondary-in", "unix:/s", "--outdev", "unix:/o"]
    assert not options_from_args(base).prerelease.enabled
    opts = options_from_args([*base, "--prerelease", "--prerelease-read-prefix", "/kv/"])
    assert opts.prerelease.rules == ALL
    assert opts.prerelease.read_prefixes == ("/kv/",)
    opts = options_from_args([*base, "--prerelease"])
    assert opts.prerelease.rules == {"retransmission", "ack_only"}
    opts = options_from_args([*base, "--prerelease", "ack_only", "--prerelease-read-method", "get"])
    assert opts.prerelease.read_methods == ("GET",)
    for bad in (
        ["--prerelease", "http_read"],
        ["--prerelease", "nope"],
        ["--prerelease-read-prefix", "/x"],
    ):
        with pytest.raises(ConfigError):
            options_from_args([*base, *bad])


# ---- properties -------------------------------------------------------------------------

Event = tuple[str, Any]


def _ack_of(frame: bytes) -> int:
    pkt = parse_frame(frame)
    assert not hasattr(pkt, "reason")
    return pkt.ack  # type: ignore[union-attr]


@settings(max_examples=200, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            st.sampled_from(["GET /kv/", "HEAD /kv/", "GET /other/", "PUT /kv/", "DELETE /kv/"]),
            st.integers(min_value=0, max_value=2),  # connection
        ),
        min_size=1,
        max_size=6,
    ),
    order=st.lists(st.integers(min_value=0, max_value=4), max_size=80),
    diverge=st.booleans(),
    checkpoint_at=st.one_of(st.none(), st.integers(min_value=0, max_value=40)),
)
def test_pre_release_never_breaks_the_rules(
    requests: list[tuple[str, int]],
    order: list[int],
    diverge: bool,
    checkpoint_at: int | None,
) -> None:
    """Any interleaving of requests, primary and secondary output and a checkpoint:
    an early frame never acknowledges more than the secondary did on its connection, never
    follows a write seen since the last checkpoint, and a differing early frame checkpoints."""
    c = comparator()
    client: list[bytes] = []
    primary: list[bytes] = []
    secondary: list[bytes] = []
    c_seq = [C_SEQ] * 3
    g_seq = [G_SEQ] * 3
    for i, (line, conn) in enumerate(requests):
        text = f"{line}{i} HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        dport = 40000 + conn
        client.append(request(text, seq=c_seq[conn], dport=dport))
        c_seq[conn] += len(text)
        body = f"answer {i}".encode()
        other = body.upper() if diverge and i == len(requests) - 1 else body
        # Both guests acknowledge the request before they answer (a quick-ACK guest).
        primary.append(tcp_frame(g_seq[conn], c_seq[conn], "A", dport=dport))
        primary.append(tcp_frame(g_seq[conn], c_seq[conn], "AP", body, dport=dport))
        secondary.append(secondary_ack(c_seq[conn], dport=dport))
        secondary.append(tcp_frame(g_seq[conn], c_seq[conn], "AP", other, dport=dport))
        g_seq[conn] += len(body)
    s_ack: dict[int, int] = {}
    p_ack: dict[int, int] = {}
    write_since_checkpoint = False
    lists = [client, primary, secondary]
    index = [0, 0, 0]
    steps = [x % 3 for x in order] + [0] * len(client) + [1] * len(primary) + [2] * len(secondary)
    now = 0.0
    mismatch = False
    for step, which in enumerate(steps):
        now += 0.001
        if checkpoint_at == step:
            c.checkpoint_done(now)
            write_since_checkpoint = False
            # The secondary is now a copy of the primary: it has what the primary acked.
            for port, ack in p_ack.items():
                s_ack[port] = max(s_ack.get(port, 0), ack)
        if index[which] >= len(lists[which]):
            continue
        frame = lists[which][index[which]]
        index[which] += 1
        if which == 0:
            out = c.feed_client(frame, now)
            text = frame[54:]  # Ethernet + IPv4 + TCP headers
            if not (text.startswith(b"GET /kv/") or text.startswith(b"HEAD /kv/")):
                write_since_checkpoint = True
        elif which == 1:
            out = c.feed_primary(frame, now)
            pkt = parse_frame(frame)
            port = pkt.key[4]  # type: ignore[union-attr]
            p_ack[port] = max(p_ack.get(port, 0), pkt.ack)  # type: ignore[union-attr]
        else:
            out = c.feed_secondary(frame, now)
            pkt = parse_frame(frame)
            port = pkt.key[4]  # type: ignore[union-attr]
            s_ack[port] = max(s_ack.get(port, 0), pkt.ack)  # type: ignore[union-attr]
        for f in early(out):
            pkt = parse_frame(f)
            port = pkt.key[4]  # type: ignore[union-attr]
            assert port in s_ack and _ack_of(f) <= s_ack[port]
            if len(f) > 54:  # an answer (bare ACKs go by the ack_only rule, writes or not)
                assert not write_since_checkpoint
        if "prerelease_mismatch" in checkpoints(out):
            mismatch = True
    # Only the last answer may differ: at most one early frame mismatches, and it checkpoints.
    assert c.counters.prerelease_mismatches == int(mismatch)
    if not diverge:
        assert not mismatch
    if not diverge and checkpoint_at is None:
        # Liveness: with every frame of both sides in, nothing is left waiting.
        assert c.counters.held_frames == 0, c.snapshot()


@settings(max_examples=100, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=3000),
    p_sizes=st.lists(st.integers(min_value=1, max_value=1460), min_size=1, max_size=3),
    s_sizes=st.lists(st.integers(min_value=1, max_value=1460), min_size=1, max_size=3),
    order=st.lists(st.booleans(), max_size=40),
    flip=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_early_frames_mismatch_checkpoints_exactly_once(
    data: bytes, p_sizes: list[int], s_sizes: list[int], order: list[bool], flip: int | None
) -> None:
    """A read's answer, any segmentation: equal -> no checkpoint, every frame out once;
    a one-byte difference in an early frame -> exactly one prerelease_mismatch."""
    c = comparator()
    req = get("/kv/x")
    end = C_SEQ + len(req)
    c.feed_client(request(req), 0.0)
    c.feed_secondary(secondary_ack(end), 0.0)
    bad = bytearray(data)
    if flip is not None:
        bad[flip % len(data)] ^= 1
    p = segments(data, p_sizes, seq=G_SEQ, ack=end)
    s = segments(bytes(bad), s_sizes, seq=G_SEQ, ack=end)
    out: list[Action] = []
    i = j = 0
    for take_p in [*order, *[True] * len(p), *[False] * len(s)]:
        if take_p and i < len(p):
            out += c.feed_primary(p[i], 0.1)
            i += 1
        elif not take_p and j < len(s):
            out += c.feed_secondary(s[j], 0.1)
            j += 1
    sent = early(out) + released(out)
    assert len(set(sent)) == len(sent) and set(sent) <= set(p)
    if flip is None:
        assert sorted(sent) == sorted(p)
        assert checkpoints(out) == [] and c.counters.held_frames == 0
    else:
        # Early when the primary led, compared before leaving when the secondary did.
        (reason,) = checkpoints(out)
        assert reason in ("prerelease_mismatch", "tcp_payload_mismatch")
        assert c.counters.prerelease_mismatches == (reason == "prerelease_mismatch")


def test_rearm_asks_for_a_checkpoint_some_time_after_a_write() -> None:
    policy = build_policy(PreReleaseConfig(ALL, ("/kv/",), rearm_ms=300))
    assert policy is not None
    c = Comparator(policy=policy)
    assert c.tick(5.0) == []  # no write yet: nothing to re-arm
    put = "PUT /kv/a HTTP/1.1\r\nContent-Length: 3\r\n\r\nnew"
    c.feed_client(request(put), 10.0)
    assert checkpoints(c.tick(10.2)) == []
    assert checkpoints(c.tick(10.31)) == ["prerelease_rearm"]
    assert checkpoints(c.tick(10.4)) == []  # asked once; the retry timer covers the rest
    c.checkpoint_done(10.5)
    assert checkpoints(c.tick(11.0)) == []  # re-armed: reads may leave early again
    k = c.counters
    assert (k.rearm_checkpoints, k.checkpoints_requested) == (1, 1)
    assert dict(k.divergences) == {}  # not a divergence


def test_rearm_without_the_read_rule_is_refused() -> None:
    with pytest.raises(ConfigError):
        PreReleaseConfig(frozenset({"ack_only"}), rearm_ms=100)
    with pytest.raises(ConfigError):
        PreReleaseConfig(ALL, ("/kv/",), rearm_ms=0)
    with pytest.raises(ConfigError):
        options_from_args(
            [
                *("--primary-in", "unix:/a", "--outdev", "unix:/b"),
                *("--secondary-in", "listen:unix:/c", "--prerelease-rearm-ms", "100"),
            ]
        )
