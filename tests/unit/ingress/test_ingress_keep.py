"""The guest's output kept on host B for a failover (ingress/keep.py): what the client has
not acknowledged, since the checkpoint the secondary last loaded, in order; bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare.packet import ACK, RST, TCP
from colopp.compare.seq import MASK
from colopp.ingress.keep import OutputKeep

KEY = (TCP, "198.18.1.10", "198.18.0.2", 80, 40000)
OTHER = (TCP, "198.18.1.10", "198.18.0.2", 80, 40001)
MSS = 100


def _seg(i: int, base: int = 1000) -> tuple[int, bytes]:
    return (base + i * MSS) & MASK, f"frame{i}".encode()


def _keep_stream(keep: OutputKeep, n: int, key=KEY, base: int = 1000) -> None:  # type: ignore[no-untyped-def]
    for i in range(n):
        seq, frame = _seg(i, base)
        keep.guest(key, seq, MSS, frame, 0)


def test_what_the_client_did_not_acknowledge_goes_in_sequence_order() -> None:
    keep = OutputKeep()
    _keep_stream(keep, 5)
    keep.client(KEY, ACK, 1000 + 2 * MSS)  # the client has segments 0 and 1
    assert [f for f, _ in keep.take()] == [b"frame2", b"frame3", b"frame4"]
    assert keep.take() == [] and keep.bytes == 0


def test_a_checkpoint_voids_everything_kept_before_it() -> None:
    keep = OutputKeep()
    _keep_stream(keep, 3)
    keep.checkpoint()
    seq, _ = _seg(3)
    keep.guest(KEY, seq, MSS, b"after", 0)
    assert keep.take() == [(b"after", 0)]
    assert keep.counters()["keep_forgotten"] == 3


def test_pure_acks_and_acknowledged_segments_are_not_kept() -> None:
    keep = OutputKeep()
    keep.client(KEY, ACK, 1000 + 3 * MSS)
    keep.guest(KEY, 1000 + 3 * MSS, 0, b"pure ack", 0)
    _keep_stream(keep, 3)  # retransmissions of what the client has
    assert keep.take() == [] and keep.kept == 0


def test_a_fin_counts_one_and_goes_again() -> None:
    keep = OutputKeep()
    keep.guest(KEY, 5000, 1, b"fin", 0)
    keep.client(KEY, ACK, 5000)
    assert keep.take() == [(b"fin", 0)]


def test_a_reset_either_way_forgets_the_connection() -> None:
    keep = OutputKeep()
    _keep_stream(keep, 2)
    _keep_stream(keep, 2, OTHER)
    keep.client(KEY, RST | ACK, 0)
    assert [f for f, _ in keep.take()] == [b"frame0", b"frame1"]  # OTHER's only
    assert keep.bytes == 0


def test_an_old_ack_does_not_bring_back_what_a_newer_one_trimmed() -> None:
    keep = OutputKeep()
    _keep_stream(keep, 4)
    keep.client(KEY, ACK, 1000 + 3 * MSS)
    keep.client(KEY, ACK, 1000 + 1 * MSS)  # reordered on the way
    assert [f for f, _ in keep.take()] == [b"frame3"]


def test_memory_is_bounded_and_the_oldest_stay() -> None:
    keep = OutputKeep(max_bytes=3 * len(b"frame0"))
    _keep_stream(keep, 5)
    assert [f for f, _ in keep.take()] == [b"frame0", b"frame1", b"frame2"]
    assert keep.refused == 2


def test_sequence_numbers_wrap() -> None:
    keep = OutputKeep()
    base = MASK - MSS  # segment 1 crosses 2**32
    _keep_stream(keep, 4, base=base)
    keep.client(KEY, ACK, (base + 2 * MSS) & MASK)
    assert [f for f, _ in keep.take()] == [b"frame2", b"frame3"]


def test_a_retransmission_of_earlier_bytes_goes_in_its_place_and_once() -> None:
    keep = OutputKeep()
    for i in (2, 3, 0, 2):
        seq, frame = _seg(i)
        keep.guest(KEY, seq, MSS, frame, 0)
    keep.client(KEY, ACK, 1000 + MSS)
    assert [f for f, _ in keep.take()] == [b"frame2", b"frame3"]


def test_the_vnet_header_length_travels_with_the_frame() -> None:
    keep = OutputKeep()
    keep.guest(KEY, 1, MSS, b"\x01" * 12 + b"frame", 12)
    assert keep.take() == [(b"\x01" * 12 + b"frame", 12)]


# A stream: ("g", i) the guest sends segment i (again, maybe, or after later ones);
# ("a", i) the client acknowledges up to segment i; ("c",) a checkpoint.
EVENT = st.one_of(
    st.tuples(st.just("g"), st.integers(0, 7)),
    st.tuples(st.just("a"), st.integers(0, 8)),
    st.tuples(st.just("c")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(EVENT, max_size=60), st.integers(0, MASK))
def test_take_is_exactly_what_was_sent_since_the_checkpoint_and_not_acknowledged(
    events: list[tuple], base: int
) -> None:
    keep = OutputKeep()
    sent: set[int] = set()  # segment indexes kept since the last checkpoint
    acked = 0  # segments the client acknowledged since the last checkpoint (0: none seen)
    for event in events:
        if event[0] == "g":
            i = event[1]
            if i >= acked:
                sent.add(i)
            keep.guest(KEY, (base + i * MSS) & MASK, MSS, b"%d" % i, 0)
        elif event[0] == "a":
            acked = max(acked, event[1])
            keep.client(KEY, ACK, (base + event[1] * MSS) & MASK)
            sent = {i for i in sent if i >= acked}
        else:
            keep.checkpoint()
            sent, acked = set(), 0
        assert keep.bytes == sum(len(b"%d" % i) for i in sent)
    assert [f for f, _ in keep.take()] == [b"%d" % i for i in sorted(sent)]
