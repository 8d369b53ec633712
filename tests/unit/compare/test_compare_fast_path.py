"""The in-order TCP fast paths change speed, never behaviour: the same inputs give the same
actions and counters with ``fast_path=False`` (the general path everywhere), and the plain
IPv4/TCP parser agrees with :func:`parse_frame`."""

from __future__ import annotations

import contextlib
from typing import Any
from unittest import mock

from compare_actions import checkpoints, released
from compare_frames import segments, tcp_frame, udp_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare import Action, Comparator, CompareConfig
from colopp.compare.packet import TCP, Packet, parse_frame, parse_plain_tcp
from colopp.compare.tcp import TcpConnection

SEQ = 0xFFFF_F800  # crosses the 2**32 wrap
ACK = 5000

Event = tuple[str, Any]


def run_both(events: list[Event], config: CompareConfig | None = None) -> list[Action]:
    """Feed ``events`` to a fast and a general comparator; assert identical results."""
    fast = Comparator(config)
    slow = Comparator(config, fast_path=False)
    now = 0.0
    out: list[Action] = []
    for kind, arg in events:
        now += 0.001
        results = []
        for c in (fast, slow):
            if kind == "p":
                results.append(c.feed_primary(arg, now))
            elif kind == "s":
                results.append(c.feed_secondary(arg, now))
            elif kind == "tick":
                results.append(c.tick(now + arg))
            else:
                results.append(c.checkpoint_done(now))
        assert results[0] == results[1], (kind, results)
        assert fast.snapshot() == slow.snapshot()
        out += results[0]
    return out


def cut(data: bytes, sizes: list[int]) -> list[tuple[int, bytes]]:
    """(offset, chunk) of ``data`` cut into ``sizes`` (cycled)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        chunk = data[pos : pos + sizes[len(out) % len(sizes)]]
        out.append((pos, chunk))
        pos += len(chunk)
    return out


def connection_events(
    data: bytes,
    p_sizes: list[int],
    s_sizes: list[int],
    *,
    dport: int,
    syn: bool,
    fin: bool,
    flip: int | None,
    s_ack_lag: list[bool],
    p_pure_acks: list[bool],
    s_dups: list[bool],
) -> tuple[list[bytes], list[bytes]]:
    """Primary and secondary frames of one guest->client connection."""
    bad = bytearray(data)
    if flip is not None:
        bad[flip % len(data)] ^= 0x5A
    primary: list[bytes] = []
    for i, (off, chunk) in enumerate(cut(data, p_sizes)):
        primary.append(tcp_frame(SEQ + off, ACK, "AP", chunk, dport=dport))
        if i < len(p_pure_acks) and p_pure_acks[i]:
            primary.append(tcp_frame(SEQ + off + len(chunk), ACK, "A", dport=dport))
    secondary: list[bytes] = []
    for i, (off, chunk) in enumerate(cut(bytes(bad), s_sizes)):
        lag = i < len(s_ack_lag) and s_ack_lag[i]
        # A lagging segment: the secondary has not yet acknowledged the client's last bytes;
        # a pure ACK catches up right after.
        frame = tcp_frame(SEQ + off, ACK - 1 if lag else ACK, "AP", chunk, dport=dport)
        secondary.append(frame)
        if lag:
            secondary.append(tcp_frame(SEQ + off + len(chunk), ACK, "A", dport=dport))
        if i < len(s_dups) and s_dups[i]:
            secondary.append(frame)  # a retransmission
    if fin:
        primary.append(tcp_frame(SEQ + len(data), ACK, "AF", dport=dport))
        secondary.append(tcp_frame(SEQ + len(data), ACK, "AF", dport=dport))
    if syn:
        primary.insert(0, tcp_frame(SEQ - 1, ACK, "SA", dport=dport))
        secondary.insert(0, tcp_frame(SEQ - 1, ACK, "SA", dport=dport))
    return primary, secondary


def interleave(
    p: list[bytes], s: list[bytes], order: list[int], extras: list[Event]
) -> list[Event]:
    """Merge two frame lists by ``order`` (0: primary, 1: secondary, 2: an extra event)."""
    out: list[Event] = []
    i = j = k = 0
    for choice in order:
        if choice == 0 and i < len(p):
            out.append(("p", p[i]))
            i += 1
        elif choice == 1 and j < len(s):
            out.append(("s", s[j]))
            j += 1
        elif choice == 2 and k < len(extras):
            out.append(extras[k])
            k += 1
    out += [("p", f) for f in p[i:]] + [("s", f) for f in s[j:]]
    return out


bools = st.lists(st.booleans(), max_size=12)
sizes = st.lists(st.integers(min_value=1, max_value=1460), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=5000),
    p_sizes=sizes,
    s_sizes=st.one_of(st.none(), sizes),
    syn=st.booleans(),
    fin=st.booleans(),
    flip=st.one_of(st.none(), st.integers(min_value=0)),
    s_ack_lag=bools,
    p_pure_acks=bools,
    s_dups=bools,
    order=st.lists(st.integers(min_value=0, max_value=2), max_size=120),
    extras=st.lists(
        st.one_of(
            st.tuples(st.just("tick"), st.sampled_from([0.0, 4.0])),
            st.tuples(st.just("checkpoint_done"), st.none()),
            st.tuples(st.just("p"), st.just(udp_frame(b"dgram"))),
        ),
        max_size=4,
    ),
    two_connections=st.booleans(),
)
def test_fast_and_general_paths_agree(
    data: bytes,
    p_sizes: list[int],
    s_sizes: list[int] | None,
    syn: bool,
    fin: bool,
    flip: int | None,
    s_ack_lag: list[bool],
    p_pure_acks: list[bool],
    s_dups: list[bool],
    order: list[int],
    extras: list[Event],
    two_connections: bool,
) -> None:
    kw = {
        "syn": syn,
        "fin": fin,
        "flip": flip,
        "s_ack_lag": s_ack_lag,
        "p_pure_acks": p_pure_acks,
        "s_dups": s_dups,
    }
    # s_sizes None: the same segmentation on both sides, the fast paths' common case.
    p, s = connection_events(data, p_sizes, s_sizes or p_sizes, dport=40000, **kw)  # type: ignore[arg-type]
    if two_connections:
        p2, s2 = connection_events(data[::-1], p_sizes, p_sizes, dport=40001, **kw)  # type: ignore[arg-type]
        p = [f for pair in zip(p, p2, strict=False) for f in pair] + p[len(p2) :] + p2[len(p) :]
        s = [f for pair in zip(s2, s, strict=False) for f in pair] + s2[len(s) :] + s[len(s2) :]
    run_both(interleave(p, s, order, extras))


def test_tiny_queue_limits_agree() -> None:
    data = bytes(range(256)) * 20
    p = segments(data, [300], seq=SEQ, ack=ACK)
    s = segments(data, [300], seq=SEQ, ack=ACK)
    events: list[Event] = [("p", f) for f in p] + [("s", f) for f in s]
    out = run_both(events, CompareConfig(max_queue_frames=4, max_queue_bytes=3000))
    assert checkpoints(out) == ["queue_overflow"]


def test_in_order_stream_takes_the_fast_paths() -> None:
    """Same segmentation, either side first: after the first segment no primary frame goes
    through add_primary, and when the primary leads no secondary frame goes through
    add_secondary (a leading secondary's bytes must still be stored); every primary frame is
    released in order."""
    data = bytes(range(251)) * 40
    p = segments(data, [1448], seq=SEQ, ack=ACK)
    s = segments(data, [1448], seq=SEQ, ack=ACK)
    for primary_first in (True, False):
        c = Comparator()
        out: list[Action] = []
        out += c.feed_primary(p[0], 0.0) + c.feed_secondary(s[0], 0.0)
        general_secondary = mock.patch.object(
            TcpConnection, "add_secondary", side_effect=AssertionError
        )
        with (
            mock.patch.object(TcpConnection, "add_primary", side_effect=AssertionError),
            general_secondary if primary_first else contextlib.nullcontext(),
        ):
            for t, (pf, sf) in enumerate(zip(p[1:], s[1:], strict=True)):
                if primary_first:
                    out += c.feed_primary(pf, t) + c.feed_secondary(sf, t)
                else:
                    out += c.feed_secondary(sf, t) + c.feed_primary(pf, t)
        assert released(out) == p
        assert c.counters.held_frames == 0
        assert c.counters.held_secondary_bytes == 0


def test_divergence_leaves_the_fast_path() -> None:
    data = bytes(range(251)) * 12
    p = segments(data, [1000], seq=SEQ, ack=ACK)
    bad = bytearray(data)
    bad[2500] ^= 1
    s = segments(bytes(bad), [1000], seq=SEQ, ack=ACK)
    events: list[Event] = [
        e for pair in zip(p, s, strict=True) for e in (("p", pair[0]), ("s", pair[1]))
    ]
    out = run_both(events)
    assert checkpoints(out) == ["tcp_payload_mismatch"]
    assert released(out) == p[:2]


frames = st.builds(
    tcp_frame,
    seq=st.integers(min_value=0, max_value=0xFFFFFFFF),
    ack=st.integers(min_value=0, max_value=0xFFFFFFFF),
    flags=st.sampled_from(["A", "AP", "S", "SA", "AF", "R", ""]),
    payload=st.binary(max_size=80),
    vnet=st.binary(max_size=12),
    pad_to=st.integers(min_value=0, max_value=120),
)


@settings(max_examples=500, deadline=None)
@given(
    frame=frames,
    vnet_hdr_len=st.integers(min_value=-2, max_value=14),
    edits=st.lists(
        st.tuples(st.integers(min_value=0, max_value=70), st.integers(0, 255)), max_size=3
    ),
    cut=st.one_of(st.none(), st.integers(min_value=0, max_value=200)),
)
def test_plain_tcp_parser_agrees_with_parse_frame(
    frame: bytes, vnet_hdr_len: int, edits: list[tuple[int, int]], cut: int | None
) -> None:
    buf = bytearray(frame)
    for index, value in edits:
        if index < len(buf):
            buf[index] = value
    mutated = bytes(buf if cut is None else buf[:cut])
    fields = parse_plain_tcp(mutated, vnet_hdr_len)
    if fields is not None:
        assert parse_frame(mutated, vnet_hdr_len) == Packet(TCP, *fields)


def test_plain_tcp_parser_takes_the_common_case() -> None:
    frame = tcp_frame(7, 9, "AP", b"payload")
    assert parse_plain_tcp(frame) is not None
    assert parse_plain_tcp(b"\0" * 12 + frame, 12) is not None
    assert parse_plain_tcp(udp_frame(b"x")) is None
