"""With a pre-release policy the primary's in-order segments take the fast path (issue 22:
a download's answer segments queued and offered early without the general path's parse and
insert). Fed the same client requests and ACKs, primary and secondary answers (any
segmentation, either side first, a differing byte), checkpoints and ticks, a comparator on
its fast paths and one forced onto the general path (``fast_path=False``) return the same
actions and the same counters at every step, lag budget or not."""

from __future__ import annotations

from typing import Any
from unittest import mock

from compare_frames import CLIENT, GUEST, segments, tcp_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare import Comparator, PreRelease, PreReleaseConfig, build_policy
from colopp.compare.tcp import TcpConnection

RULES = frozenset({"retransmission", "ack_only", "http_read"})
G_SEQ = 0xFFFF_F000  # the guest's sequence numbers cross the 2**32 wrap
C_SEQ = 9000

Event = tuple[str, Any]


def pair(scope: str, lag_budget_ms: float | None) -> tuple[Comparator, Comparator]:
    config = PreReleaseConfig(RULES, ("/kv/",), scope=scope, lag_budget_ms=lag_budget_ms)
    fast, slow = build_policy(config), build_policy(config)
    assert fast is not None and slow is not None
    return Comparator(policy=fast), Comparator(policy=slow, fast_path=False)


def summary(c: Comparator) -> dict[str, object]:
    snap = c.snapshot()
    snap.pop("hold_time_sum", None)  # float sums in another order
    return snap


def feed(c: Comparator, event: Event, now: float) -> list[Any]:
    kind, arg = event
    if kind == "c":
        return c.feed_client(arg, now)
    if kind == "p":
        return c.feed_primary(arg, now)
    if kind == "s":
        return c.feed_secondary(arg, now)
    if kind == "tick":
        return c.tick(now + arg)
    if kind == "stop":
        c.checkpoint_started(now)
        return []
    return c.checkpoint_done(now)


def exchange(
    port: int,
    index: int,
    write: bool,
    answer: bytes,
    p_sizes: list[int],
    s_sizes: list[int],
    flip: int | None,
    seqs: dict[int, list[int]],
) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """One request and its answer on connection ``port``: (client, primary, secondary)."""
    c_seq, g_seq = seqs.setdefault(port, [C_SEQ, G_SEQ])
    path = f"/kv/k{index % 3}"
    head = f"{'PUT' if write else 'GET'} {path} HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    client = [
        tcp_frame(c_seq, g_seq, "AP", head.encode(), src=CLIENT, dst=GUEST, sport=port, dport=80)
    ]
    c_seq += len(head)
    body = b"HTTP/1.1 200 OK\r\n\r\n" + answer
    other = bytearray(body)
    if flip is not None:
        other[flip % len(other)] ^= 0x20
    # Both guests ACK the request on arrival, then answer in segments.
    primary = [tcp_frame(g_seq, c_seq, "A", dport=port)]
    primary += segments(body, p_sizes, seq=g_seq, ack=c_seq, dport=port)
    secondary = [tcp_frame(g_seq, c_seq, "A", dport=port)]
    secondary += segments(bytes(other), s_sizes, seq=g_seq, ack=c_seq, dport=port)
    g_seq = (g_seq + len(body)) & 0xFFFFFFFF
    client.append(tcp_frame(c_seq, g_seq, "A", src=CLIENT, dst=GUEST, sport=port, dport=80))
    seqs[port] = [c_seq, g_seq]
    return client, primary, secondary


sizes = st.lists(st.integers(min_value=1, max_value=1460), min_size=1, max_size=3)


@settings(max_examples=250, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            st.integers(0, 2),  # connection
            st.booleans(),  # a write
            st.binary(min_size=1, max_size=4000),  # the answer's body
            sizes,
            st.one_of(st.none(), sizes),  # the secondary's segmentation (None: the same)
            st.one_of(st.none(), st.integers(min_value=0)),  # a differing byte
        ),
        min_size=1,
        max_size=5,
    ),
    order=st.lists(st.integers(min_value=0, max_value=3), max_size=150),
    extras=st.lists(
        st.sampled_from([("tick", 0.0), ("tick", 4.0), ("stop", None), ("done", None)]),
        max_size=4,
    ),
    scope=st.sampled_from(["global", "key"]),
    lag_budget_ms=st.sampled_from([None, 3.0]),
)
def test_with_a_policy_fast_and_general_paths_agree(
    requests: list[tuple[int, bool, bytes, list[int], list[int] | None, int | None]],
    order: list[int],
    extras: list[Event],
    scope: str,
    lag_budget_ms: float | None,
) -> None:
    fast, slow = pair(scope, lag_budget_ms)
    seqs: dict[int, list[int]] = {}
    lists: list[list[Event]] = [[], [], []]
    for index, (conn, write, body, p_sizes, s_sizes, flip) in enumerate(requests):
        client, primary, secondary = exchange(
            40000 + conn, index, write, body, p_sizes, s_sizes or p_sizes, flip, seqs
        )
        lists[0] += [("c", f) for f in client]
        lists[1] += [("p", f) for f in primary]
        lists[2] += [("s", f) for f in secondary]
    lists.append(list(extras))
    events: list[Event] = []
    at = [0, 0, 0, 0]
    for which in (
        [*order, 0, 1, 2, 3] + [0] * len(lists[0]) + [1] * len(lists[1]) + [2] * len(lists[2])
    ):
        if at[which] < len(lists[which]):
            events.append(lists[which][at[which]])
            at[which] += 1
    now = 0.0
    for event in events:
        now += 0.001
        assert feed(fast, event, now) == feed(slow, event, now), event
        assert summary(fast) == summary(slow), event


def test_a_download_pre_releases_on_the_fast_path() -> None:
    """A read's answer led by the primary: every segment after the first leaves early
    without the general path's insert; the secondary's coalesced copy then matches it all."""
    fast, _ = pair("key", None)
    seqs: dict[int, list[int]] = {}
    body = bytes(range(256)) * 64
    client, primary, _ = exchange(40000, 0, False, body, [1448], [1448], None, seqs)
    _, _, coalesced = exchange(40000, 0, False, body, [1448], [1448 * 44], None, {})
    fast.feed_client(client[0], 0.0)
    fast.feed_primary(primary[0], 0.0)
    fast.feed_secondary(primary[0], 0.0)  # the secondary's ACK of the request
    out = fast.feed_primary(primary[1], 0.001)
    with mock.patch.object(TcpConnection, "add_primary", side_effect=AssertionError):
        for frame in primary[2:]:
            out += fast.feed_primary(frame, 0.002)
    early = [f for a in out if isinstance(a, PreRelease) for f in a.frames]
    assert early == primary[1:]
    assert fast.counters.pre_released_frames == len(primary) - 1
    for frame in coalesced[1:]:
        assert fast.feed_secondary(frame, 0.003) == []
    assert fast.counters.held_frames == 0
    assert fast.counters.checkpoints_requested == 0
