"""Property tests of the core: any segmentation and interleaving of equal streams matches;
any one-byte difference gives exactly one checkpoint and releases nothing past it."""

from __future__ import annotations

from compare_actions import checkpoints, released
from compare_frames import segments
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare import Action, Comparator

SEQ = 0xFFFF_F000  # crosses the 2**32 wrap
ACK = 1234

streams = st.binary(min_size=1, max_size=6000)
sizes = st.lists(st.integers(min_value=1, max_value=1500), min_size=1, max_size=5)


def interleave(p: list[bytes], s: list[bytes], order: list[bool]) -> list[tuple[bool, bytes]]:
    out: list[tuple[bool, bytes]] = []
    i = j = 0
    for take_p in order:
        if take_p and i < len(p):
            out.append((True, p[i]))
            i += 1
        elif j < len(s):
            out.append((False, s[j]))
            j += 1
    out += [(True, f) for f in p[i:]] + [(False, f) for f in s[j:]]
    return out


def run(c: Comparator, events: list[tuple[bool, bytes]]) -> list[Action]:
    out: list[Action] = []
    for t, (is_p, frame) in enumerate(events):
        now = t * 0.001
        out += c.feed_primary(frame, now) if is_p else c.feed_secondary(frame, now)
    return out


@settings(max_examples=200, deadline=None)
@given(
    streams,
    sizes,
    sizes,
    st.lists(st.booleans(), max_size=60),
    st.booleans(),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_equal_streams_release_everything(
    data: bytes,
    p_sizes: list[int],
    s_sizes: list[int],
    order: list[bool],
    p_fin_sep: bool,
    s_fin_sep: bool,
    rnd: object,
) -> None:
    p = segments(data, p_sizes, seq=SEQ, ack=ACK, fin=True, fin_separate=p_fin_sep)
    s = segments(data, s_sizes, seq=SEQ, ack=ACK, fin=True, fin_separate=s_fin_sep)
    s_shuffled = list(s)
    rnd.shuffle(s_shuffled)  # type: ignore[attr-defined]
    c = Comparator()
    out = run(c, interleave(p, s_shuffled, order))
    assert checkpoints(out) == []
    assert released(out) == p
    assert c.counters.held_frames == 0


@settings(max_examples=200, deadline=None)
@given(
    streams,
    sizes,
    sizes,
    st.lists(st.booleans(), max_size=60),
    st.integers(min_value=0),
    st.integers(min_value=1, max_value=255),
)
def test_one_byte_difference_one_checkpoint(
    data: bytes, p_sizes: list[int], s_sizes: list[int], order: list[bool], at: int, xor: int
) -> None:
    at %= len(data)
    bad = bytearray(data)
    bad[at] ^= xor
    p = segments(data, p_sizes, seq=SEQ, ack=ACK)
    s = segments(bytes(bad), s_sizes, seq=SEQ, ack=ACK)
    c = Comparator()
    out = run(c, interleave(p, s, order))
    assert checkpoints(out) == ["tcp_payload_mismatch"]
    # Released frames are a prefix of the primary's and end before the differing byte.
    rel = released(out)
    assert rel == p[: len(rel)]
    assert sum(len(f) - 54 for f in rel) <= at
    assert released(c.checkpoint_done(1.0)) == p[len(rel) :]
