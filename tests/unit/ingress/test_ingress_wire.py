"""The relay's hot-path reading (``colopp/ingress/wire.py``): the same frames as the
comparator's decoder and parser, read in place."""

from __future__ import annotations

import itertools
import struct

import pytest
from compare_frames import CLIENT, GUEST, arp_frame, ethernet, tcp_frame, udp_frame
from hypothesis import given
from hypothesis import strategies as st

from colopp.compare.framing import FrameDecoder, encode_frames
from colopp.compare.packet import TCP, Packet, parse_frame
from colopp.ingress.wire import Splitter, plain_tcp, wire_runs

FRAMES = [
    tcp_frame(1000, 2000, "A", b"x" * 1448, src=CLIENT, dst=GUEST, sport=40000, dport=80),
    tcp_frame(5000, 2448, "A"),
    tcp_frame(7, 0, "S"),
    tcp_frame(9, 10, "FA", b"bye"),
    udp_frame(b"dns"),
    arp_frame(),
]


@pytest.mark.parametrize("vnet", [False, True])
@given(cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=8))
def test_any_chunking_gives_the_decoders_frames_and_their_bytes(
    vnet: bool, cuts: list[int]
) -> None:
    vlen = 12 if vnet else 0
    frames = [(bytes(vlen) + f) for f in FRAMES]
    stream = encode_frames(frames, vlen, vnet_hdr=vnet)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    splitter, decoder = Splitter(vnet), FrameDecoder(vnet)
    got, expected, wire = [], [], b""
    for a, b in itertools.pairwise(points):
        buf, spans = splitter.feed(stream[a:b])
        got += [(buf[s:e], v) for _, s, e, v in spans]
        wire += b"".join(buf[x:y] for x, y in wire_runs(spans))
        expected += [tuple(f) for f in decoder.feed(stream[a:b])]
    assert got == expected == [(f, vlen) for f in frames]
    assert wire == stream  # forwarded as it came, length words included
    assert splitter.buffered == 0


def test_garbage_between_frames_is_counted_and_never_forwarded() -> None:
    one, two = encode_frames([FRAMES[1]]), encode_frames([FRAMES[2]])
    garbage = struct.pack(">I", 0) + b"\x00"  # a zero length word: not a frame
    splitter = Splitter()
    buf, spans = splitter.feed(one + garbage + two)
    assert [buf[s:e] for _, s, e, _ in spans] == [FRAMES[1], FRAMES[2]]
    assert splitter.malformed == len(garbage)
    runs = wire_runs(spans)
    assert len(runs) == 2  # the garbage splits the run
    assert b"".join(buf[a:b] for a, b in runs) == one + two


@pytest.mark.parametrize("vlen", [0, 10])
@pytest.mark.parametrize("frame", FRAMES)
def test_plain_tcp_agrees_with_parse_frame(frame: bytes, vlen: int) -> None:
    data = b"pad" + bytes(vlen) + frame + b"tail"  # a frame in the middle of a buffer
    start, end = 3, 3 + vlen + len(frame)
    got = plain_tcp(data, start, end, vlen)
    pkt = parse_frame(bytes(vlen) + frame, vlen)
    if not isinstance(pkt, Packet) or pkt.kind != TCP:
        assert got is None
        return
    assert got is not None
    src, dst, sport, dport, seq, ack, flags, size = got
    assert (TCP, src, dst, sport, dport) == pkt.key
    assert (seq, ack, flags) == (pkt.seq, pkt.ack, pkt.flags)
    assert size == pkt.payload_end - pkt.payload_start


def test_what_plain_tcp_leaves_to_parse_frame() -> None:
    tcp = tcp_frame(1, 2, "A", b"data")
    with_options = bytearray(tcp)
    with_options[14] = 0x46  # IHL 6: IP options
    fragment = bytearray(tcp)
    fragment[14 + 6 : 14 + 8] = b"\x20\x00"  # more fragments
    truncated = tcp[:-2]  # the IP total length runs past the frame
    ipv6 = ethernet(bytes(60), ethertype=0x86DD)
    for frame in (bytes(with_options), bytes(fragment), truncated, ipv6, tcp[:40]):
        assert plain_tcp(frame, 0, len(frame), 0) is None
    assert plain_tcp(tcp, 0, len(tcp), 0) is not None
