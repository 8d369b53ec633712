"""Whole frames of filter-mirror's stream (colopp/mirror/frames.py): never half a frame,
never a byte of a malformed header, every frame once, whatever the reads' cut."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare.framing import MAX_FRAME_LEN, encode_frame
from colopp.mirror.frames import whole_frames


def _stream(frames: list[bytes], vnet_hdr: bool) -> bytes:
    return b"".join(encode_frame(f, 10 if vnet_hdr else 0, vnet_hdr=vnet_hdr) for f in frames)


def _forward(stream: bytes, cuts: list[int], vnet_hdr: bool) -> tuple[bytes, int, int]:
    """What the mirror sends on when the stream arrives cut at ``cuts``."""
    out, kept, total_frames, total_bad = [], b"", 0, 0
    points = sorted({c % (len(stream) + 1) for c in cuts} | {len(stream)})
    last = 0
    for point in points:
        buf = kept + stream[last:point]
        last = point
        runs, consumed, frames, malformed = whole_frames(buf, len(buf), vnet_hdr)
        out += [buf[a:b] for a, b in runs]
        total_frames += frames
        total_bad += malformed
        kept = buf[consumed:]
    return b"".join(out), total_frames, total_bad


frame_bodies = st.lists(st.binary(min_size=14, max_size=300), max_size=12)


@settings(max_examples=200, deadline=None)
@given(frame_bodies, st.lists(st.integers(min_value=0, max_value=5000), max_size=8), st.booleans())
def test_every_frame_goes_on_whole_and_once_however_the_reads_cut_it(
    bodies: list[bytes], cuts: list[int], vnet_hdr: bool
) -> None:
    stream = _stream([b"\0" * 10 + b if vnet_hdr else b for b in bodies], vnet_hdr)
    sent, frames, malformed = _forward(stream, cuts, vnet_hdr)
    assert sent == stream
    assert frames == len(bodies) and malformed == 0


def test_an_incomplete_frame_is_kept_for_the_next_read() -> None:
    stream = _stream([b"a" * 20, b"b" * 30], False)
    runs, consumed, frames, _ = whole_frames(stream, len(stream) - 1, False)
    assert runs == [(0, 24)] and consumed == 24 and frames == 1


def test_a_malformed_header_is_skipped_and_never_forwarded() -> None:
    good = _stream([b"x" * 40], False)
    bad = (MAX_FRAME_LEN + 1).to_bytes(4, "big")
    stream = good + bad + good
    sent, frames, malformed = _forward(stream, [], False)
    assert sent == good + good
    assert frames == 2 and malformed == 4  # one per byte of the bad length word


def test_a_vnet_header_longer_than_its_frame_is_malformed() -> None:
    bad = (20).to_bytes(4, "big") + (30).to_bytes(4, "big") + b"z" * 20
    runs, consumed, frames, malformed = whole_frames(bad, len(bad), True)
    assert frames == 0 and malformed >= 1 and all(a != 0 for a, _ in runs)
    del consumed
