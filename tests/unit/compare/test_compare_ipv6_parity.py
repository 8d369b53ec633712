"""Property: the comparator treats an IPv6 conversation exactly as the same conversation over
IPv4 -- same releases, pre-releases, checkpoints and reasons, in the same order -- whatever the
segmentation, interleaving, divergence, pre-release rule and extension headers. (The one
designed difference, a new IPv6 connection's SYN-ACK waiting for a checkpoint, is tested in
test_compare_ipv6.py; these conversations have no SYN.)"""

from __future__ import annotations

from compare_frames import CLIENT, GUEST, icmp_frame, segments, tcp_frame, udp_frame
from compare_frames6 import DEST_OPTIONS, HOP_BY_HOP, to_ipv6
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare import (
    Action,
    Checkpoint,
    Comparator,
    Drop,
    PreRelease,
    PreReleaseConfig,
    Release,
    build_policy,
)
from colopp.compare.packet import Packet, parse_frame

SEQ = 0xFFFF_F000
Event = tuple[str, bytes]  # ("p" | "s" | "c" | "tick" | "done", frame)
Trace = list[tuple[str, object]]

extension_chains = st.sampled_from([(), (HOP_BY_HOP,), (DEST_OPTIONS,), (HOP_BY_HOP, DEST_OPTIONS)])


def replay(make: object, events: list[Event]) -> Trace:
    """Feed ``events`` to a fresh comparator; the actions, frames named by their index."""
    c = make()  # type: ignore[operator]
    ids: dict[bytes, int] = {}
    for i, (_, frame) in enumerate(events):
        ids.setdefault(frame, i)
    trace: Trace = []
    for t, (source, frame) in enumerate(events):
        now = t * 0.01
        feed = {
            "p": c.feed_primary,
            "s": c.feed_secondary,
            "c": c.feed_client,
        }.get(source)
        if feed is not None:
            out: list[Action] = feed(frame, now)
        elif source == "tick":
            out = c.tick(now)
        else:
            out = c.checkpoint_done(now)
        for action in out:
            if isinstance(action, Release | PreRelease):
                trace.append((type(action).__name__, [_name(ids, f) for f in action.frames]))
            elif isinstance(action, Checkpoint):
                # The one allowed difference: ICMPv6 divergences are named so.
                trace.append(("checkpoint", action.reason.replace("icmpv6_", "icmp_")))
            elif isinstance(action, Drop):
                trace.append(("drop", action.reason))
    return trace


def _name(ids: dict[bytes, int], frame: bytes) -> object:
    """A frame fed in: its index; one the core made (an ACK lowered, a bare ACK: see
    ack_lower.py): its TCP fields and payload, the same over both families."""
    if frame in ids:
        return ids[frame]
    pkt = parse_frame(frame)
    assert isinstance(pkt, Packet)
    return (pkt.seq, pkt.ack, pkt.flags, frame[pkt.payload_start : pkt.payload_end])


def both(make: object, events: list[Event], extensions: tuple[int, ...]) -> None:
    six = [(source, to_ipv6(frame, extensions=extensions)) for source, frame in events]
    assert replay(make, six) == replay(make, events)


def order_events(
    lists: dict[str, list[bytes]], order: list[int], extra: dict[int, str]
) -> list[Event]:
    names = sorted(lists)
    pos = dict.fromkeys(names, 0)
    events: list[Event] = []
    for step, pick in enumerate(order):
        if step in extra:
            events.append((extra[step], b""))
        name = names[pick % len(names)]
        if pos[name] < len(lists[name]):
            events.append((name, lists[name][pos[name]]))
            pos[name] += 1
    for name in names:
        events += [(name, f) for f in lists[name][pos[name] :]]
    return events


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=4000),
    p_sizes=st.lists(st.integers(1, 1400), min_size=1, max_size=4),
    s_sizes=st.lists(st.integers(1, 1400), min_size=1, max_size=4),
    order=st.lists(st.integers(0, 1), max_size=60),
    flip=st.one_of(st.none(), st.integers(min_value=0)),
    datagrams=st.lists(st.binary(max_size=40), max_size=4),
    extensions=extension_chains,
    checkpoint_at=st.one_of(st.none(), st.integers(0, 40)),
)
def test_ipv6_compares_exactly_like_ipv4(
    data: bytes,
    p_sizes: list[int],
    s_sizes: list[int],
    order: list[int],
    flip: int | None,
    datagrams: list[bytes],
    extensions: tuple[int, ...],
    checkpoint_at: int | None,
) -> None:
    other = bytearray(data)
    if flip is not None:
        other[flip % len(other)] ^= 0x20
    p = segments(data, p_sizes, seq=SEQ, ack=5, fin=True)
    s = segments(bytes(other), s_sizes, seq=SEQ, ack=5, fin=True, fin_separate=False)
    for i, d in enumerate(datagrams):
        p.append(udp_frame(d, sport=53 + i % 2))
        s.append(udp_frame(d if i else d + b"!", sport=53 + i % 2))
        p.append(icmp_frame(d, seq=i))
        s.append(icmp_frame(d, seq=i))
    extra = {} if checkpoint_at is None else {checkpoint_at: "done"}
    events = [*order_events({"p": p, "s": s}, order, extra), ("tick", b"")]
    both(Comparator, events, extensions)


def _prerelease_comparator() -> Comparator:
    rules = frozenset({"retransmission", "ack_only", "http_read"})
    policy = build_policy(PreReleaseConfig(rules, ("/kv/",)))
    return Comparator(policy=policy)


@settings(max_examples=150, deadline=None)
@given(
    requests=st.lists(
        st.tuples(st.sampled_from(["GET /kv/", "PUT /kv/", "GET /x/"]), st.integers(0, 1)),
        min_size=1,
        max_size=5,
    ),
    order=st.lists(st.integers(0, 2), max_size=60),
    diverge=st.booleans(),
    extensions=extension_chains,
    checkpoint_at=st.one_of(st.none(), st.integers(0, 30)),
)
def test_pre_release_rules_work_over_ipv6_as_over_ipv4(
    requests: list[tuple[str, int]],
    order: list[int],
    diverge: bool,
    extensions: tuple[int, ...],
    checkpoint_at: int | None,
) -> None:
    client: list[bytes] = []
    primary: list[bytes] = []
    secondary: list[bytes] = []
    c_seq, g_seq = [7000, 7000], [SEQ, SEQ]
    for i, (line, conn) in enumerate(requests):
        text = f"{line}{i} HTTP/1.1\r\nContent-Length: 0\r\n\r\n".encode()
        port = 40000 + conn
        client.append(
            tcp_frame(c_seq[conn], g_seq[conn], "AP", text, src=CLIENT, dst=GUEST, sport=port,
                      dport=80)
        )  # fmt: skip
        c_seq[conn] += len(text)
        body = f"answer {i}".encode()
        theirs = body.upper() if diverge and i == len(requests) - 1 else body
        primary.append(tcp_frame(g_seq[conn], c_seq[conn], "A", dport=port))
        primary.append(tcp_frame(g_seq[conn], c_seq[conn], "AP", body, dport=port))
        secondary.append(tcp_frame(g_seq[conn], c_seq[conn], "A", dport=port))
        secondary.append(tcp_frame(g_seq[conn], c_seq[conn], "AP", theirs, dport=port))
        g_seq[conn] += len(body)
    extra = {} if checkpoint_at is None else {checkpoint_at: "done"}
    events = order_events({"c": client, "p": primary, "s": secondary}, order, extra)
    both(_prerelease_comparator, events, extensions)
