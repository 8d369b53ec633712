"""Client frames held back until the secondary guest's window opens (colopp/ingress/pacing.py),
and the two fields the relay reads for it (wire.py: the window, the SYN-ACK's scale)."""

from __future__ import annotations

import struct

from compare_frames import CLIENT, GUEST, ethernet, ipv4, tcp_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare.packet import TCP, FlowKey
from colopp.ingress.pacing import WindowPacing
from colopp.ingress.wire import plain_tcp, tcp_window, window_scale

KEY: FlowKey = (TCP, 1, 2, 80, 40000)
OTHER: FlowKey = (TCP, 1, 2, 80, 40001)


def _syn_ack(options: bytes) -> bytes:
    """The guest's SYN-ACK with these TCP options (padded to 32-bit words)."""
    options += b"\0" * (-len(options) % 4)
    doff = (20 + len(options)) // 4
    header = struct.pack("!HHIIBBHHH", 80, 40000, 7, 1001, doff << 4, 0x12, 64240, 0, 0)
    return ethernet(ipv4(6, header + options, GUEST, CLIENT))


def test_the_window_scale_is_read_from_the_syn_ack_options() -> None:
    frame = _syn_ack(b"\x02\x04\x05\xb4" + b"\x04\x02" + b"\x01" + b"\x03\x03\x07")
    assert plain_tcp(frame, 0, len(frame), 0) is not None
    assert window_scale(frame, 0, len(frame), 0) == 7
    assert window_scale(_syn_ack(b"\x02\x04\x05\xb4"), 0, 64, 0) == 0  # no option: no scaling
    # Malformed options (a zero length) end the walk instead of looping.
    bad = _syn_ack(b"\x02\x00\x03\x03\x07")
    assert window_scale(bad, 0, len(bad), 0) == 0
    vnet = bytes(12)
    framed = vnet + frame
    assert window_scale(framed, 0, len(framed), 12) == 7


def test_the_window_field_is_read_raw() -> None:
    frame = tcp_frame(1, 2, "A", window=1234)
    assert tcp_window(frame, 0, 0) == 1234
    assert tcp_window(bytes(10) + frame, 10, 0) == 1234


def test_a_connection_without_a_seen_syn_ack_is_never_paced() -> None:
    pacing = WindowPacing()
    pacing.guest_ack(KEY, 1000, 0)
    assert not pacing.must_wait(KEY, 5000, 100)


def test_a_segment_past_the_window_waits_until_the_guest_opens_it() -> None:
    pacing = WindowPacing()
    pacing.guest_syn_ack(KEY, 7)
    assert not pacing.must_wait(KEY, 1000, 100)  # no window seen yet
    assert pacing.guest_ack(KEY, 1000, 10) == []  # edge 1000 + 10 * 128 = 2280
    assert not pacing.must_wait(KEY, 2279, 1448)  # starts inside: the guest takes it
    assert pacing.must_wait(KEY, 2280, 100)
    pacing.hold(KEY, 2280, b"first", 0.0)
    # Behind a held frame everything with payload waits (order), a bare ACK does not.
    assert pacing.must_wait(KEY, 1000, 100)
    pacing.hold(KEY, 2380, b"second", 0.0)
    assert not pacing.must_wait(KEY, 2480, 0)
    assert not pacing.must_wait(OTHER, 2480, 100)  # other connections are not held up
    assert pacing.guest_ack(KEY, 1000, 10) == []  # the window did not move
    assert pacing.guest_ack(KEY, 2100, 2) == [b"first"]  # edge 2356: the first fits only
    assert pacing.held_frames == 1
    assert pacing.guest_ack(KEY, 2480, 1) == [b"second"]
    assert pacing.held_frames == 0
    assert pacing.counters == {"paced_frames": 2, "paced_expired": 0, "paced_overflow": 0}


def test_held_frames_go_after_max_wait_whatever_the_window() -> None:
    pacing = WindowPacing(max_wait=0.2)
    pacing.guest_syn_ack(KEY, 0)
    pacing.guest_ack(KEY, 100, 0)  # a zero window
    pacing.hold(KEY, 100, b"a", 1.0)
    pacing.hold(KEY, 200, b"b", 1.15)
    assert pacing.oldest() == 1.0
    assert pacing.due(1.19) == []
    assert pacing.due(1.2) == [b"a", b"b"]  # the whole connection, in order
    assert pacing.counters["paced_expired"] == 2
    assert pacing.oldest() is None


def test_a_client_that_ignores_the_window_cannot_grow_the_held_bytes() -> None:
    """Past ``max_bytes`` the connection's frames go at once, in order, this one last."""
    pacing = WindowPacing(max_bytes=250)
    pacing.guest_syn_ack(KEY, 0)
    pacing.guest_ack(KEY, 100, 0)
    assert pacing.hold(KEY, 100, b"a" * 100, 0.0) == []
    assert pacing.hold(KEY, 200, b"b" * 100, 0.0) == []
    assert pacing.held_bytes == 200
    assert pacing.hold(KEY, 300, b"c" * 100, 0.0) == [b"a" * 100, b"b" * 100, b"c" * 100]
    assert (pacing.held_frames, pacing.held_bytes) == (0, 0)
    assert pacing.counters["paced_overflow"] == 3


def test_a_checkpoint_lets_everything_go_and_forgets_the_windows() -> None:
    pacing = WindowPacing()
    pacing.guest_syn_ack(KEY, 2)
    pacing.guest_ack(KEY, 100, 0)
    pacing.hold(KEY, 100, b"a", 0.0)
    assert pacing.checkpoint() == [b"a"]
    assert not pacing.must_wait(KEY, 500, 100)  # the new guest's window is not known yet


def test_a_reset_or_a_new_syn_ack_ends_the_wait() -> None:
    pacing = WindowPacing()
    pacing.guest_syn_ack(KEY, 0)
    pacing.guest_ack(KEY, 100, 0)
    pacing.hold(KEY, 100, b"a", 0.0)
    assert pacing.client_reset(KEY) == [b"a"]
    assert not pacing.must_wait(KEY, 100, 10)  # forgotten
    pacing.guest_syn_ack(KEY, 0)
    pacing.guest_ack(KEY, 100, 0)
    pacing.hold(KEY, 100, b"b", 0.0)
    assert pacing.guest_syn_ack(KEY, 0) == [b"b"]  # sent again, or a new incarnation
    assert (pacing.held_frames, pacing.held_bytes) == (0, 0)
    pacing.clear()
    assert pacing.held_frames == 0


def test_the_window_edge_wraps_around_the_sequence_space() -> None:
    pacing = WindowPacing()
    pacing.guest_syn_ack(KEY, 0)
    pacing.guest_ack(KEY, 0xFFFF_FF00, 0x200)  # edge 0x100, past the wrap
    assert not pacing.must_wait(KEY, 0xFFFF_FFF0, 100)
    assert not pacing.must_wait(KEY, 0x50, 100)
    assert pacing.must_wait(KEY, 0x100, 100)


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("ack"), st.integers(0, 20_000), st.integers(0, 50)),
        st.tuples(st.just("frame"), st.integers(0, 20_000), st.integers(0, 3000)),
        st.tuples(st.just("due"), st.integers(0, 5), st.just(0)),
        st.tuples(st.just("checkpoint"), st.just(0), st.just(0)),
        st.tuples(st.just("syn_ack"), st.integers(0, 14), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=_ops, scale=st.integers(0, 14))
def test_every_frame_leaves_once_in_its_arrival_order(
    ops: list[tuple[str, int, int]], scale: int
) -> None:
    """Whatever the guest's ACKs, timers and checkpoints: nothing held is lost, duplicated
    or reordered, and the counter of held frames stays true. (A bare ACK, ``b == 0``, never
    waits: it may pass held data, which TCP allows; it is left out of the order check.)"""
    pacing = WindowPacing(max_wait=2.0, max_bytes=40)  # 10 frames of 4 bytes
    pacing.guest_syn_ack(KEY, scale)
    sent: list[bytes] = []
    arrived = 0
    now = 0.0
    for op, a, b in ops:
        now += 0.5
        if op == "ack":
            sent += pacing.guest_ack(KEY, a, b)
        elif op == "frame" and b == 0:
            assert not pacing.must_wait(KEY, a, b)
        elif op == "frame":
            framed = arrived.to_bytes(4, "big")
            arrived += 1
            if pacing.must_wait(KEY, a, b):
                sent += pacing.hold(KEY, a, framed, now)
            else:
                sent.append(framed)
        elif op == "due":
            sent += pacing.due(now + a)
        elif op == "syn_ack":
            sent += pacing.guest_syn_ack(KEY, a)
        else:
            sent += pacing.checkpoint()
        assert pacing.held_frames == arrived - len(sent)
        assert pacing.held_bytes == 4 * pacing.held_frames <= pacing.max_bytes
    sent += pacing.checkpoint()
    assert sent == [i.to_bytes(4, "big") for i in range(arrived)]
