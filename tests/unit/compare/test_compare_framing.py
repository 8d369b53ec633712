"""QEMU net-filter framing: round trips, arbitrary chunking, garbage."""

from __future__ import annotations

import itertools
import random
import struct

from compare_frames import tcp_frame
from hypothesis import given
from hypothesis import strategies as st

from colopp.compare.framing import MAX_FRAME_LEN, FrameDecoder, encode_frame, encode_frames

payloads = st.lists(st.binary(min_size=1, max_size=2000), min_size=1, max_size=20)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(payloads, st.lists(st.integers(min_value=0), max_size=30), st.booleans())
def test_round_trip_any_chunking(frames: list[bytes], cuts: list[int], vnet: bool) -> None:
    vlen = min(10, *(len(f) for f in frames)) if vnet else 0
    stream = encode_frames(frames, vlen, vnet_hdr=vnet)
    dec = FrameDecoder(vnet_hdr=vnet)
    out = [f for chunk in chunked(stream, cuts) for f in dec.feed(chunk)]
    assert [f.data for f in out] == frames
    assert {f.vnet_hdr_len for f in out} <= {vlen}
    assert dec.malformed == 0
    assert dec.buffered == 0


def test_vnet_header_length_word() -> None:
    frame = b"\x01" * 10 + tcp_frame(1, 2, "A")
    wire = encode_frame(frame, 10, vnet_hdr=True)
    assert wire[:8] == struct.pack(">II", len(frame), 10)
    (out,) = FrameDecoder(vnet_hdr=True).feed(wire)
    assert (out.data, out.vnet_hdr_len) == (frame, 10)


def test_oversized_and_zero_lengths_are_counted_and_skipped() -> None:
    good = tcp_frame(1, 2, "AP", b"x")
    dec = FrameDecoder()
    wire = struct.pack(">I", MAX_FRAME_LEN + 1) + struct.pack(">I", 0) + encode_frame(good)
    out = dec.feed(wire)
    assert [f.data for f in out] == [good]
    assert dec.malformed >= 2


@given(st.binary(max_size=3000), st.booleans())
def test_garbage_never_raises(garbage: bytes, vnet: bool) -> None:
    dec = FrameDecoder(vnet_hdr=vnet)
    for f in dec.feed(garbage):
        assert 0 < len(f.data) <= MAX_FRAME_LEN
        assert f.vnet_hdr_len <= len(f.data)


def test_resynchronises_after_garbage_prefix() -> None:
    rng = random.Random(7)
    good = [tcp_frame(i, 2, "AP", bytes([i]) * 50) for i in range(20)]
    for vnet in (False, True):
        dec = FrameDecoder(vnet_hdr=vnet, max_frame_len=2048)
        garbage = bytes([0xFF]) * 4 + bytes(rng.randrange(256) | 0x80 for _ in range(61))
        out = dec.feed(garbage + encode_frames(good, 0, vnet_hdr=vnet))
        assert [f.data for f in out][-5:] == good[-5:]
        assert dec.malformed > 0
