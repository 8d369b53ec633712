"""The frames of a tap with a virtio-net header (VmSpec.vnet_hdr) keep QEMU's wire format
through colopp's comparator: QEMU's net filters with ``vnet_hdr_support=on``
(net/filter-mirror.c ``filter_send``, read back by net/net.c ``net_fill_rstate``) write a
u32 big-endian length of header + packet, a u32 big-endian header length, then the
header and the packet."""

from __future__ import annotations

import struct

from compare_frames import tcp_frame

from colopp.compare import Comparator, CompareConfig, Release
from colopp.compare.framing import FrameDecoder, encode_frames


def _frame(payload: bytes, vnet: bytes) -> bytes:
    return tcp_frame(1000, 2000, "AP", payload, vnet=vnet)


def test_a_compared_frame_leaves_in_qemus_wire_format_with_its_header() -> None:
    """QEMU's filter-redirector (vnet_hdr_support=on) writes u32 len, u32 vnet_hdr_len,
    then the header and the packet; the comparator releases the primary's frame, header
    included, in the same format for the redirector that puts it on the wire."""
    header = bytes(12)  # virtio_net_hdr_mrg_rxbuf with every offload off: all zero
    frame = _frame(b"HTTP/1.1 200 OK\r\n", header)
    wire = struct.pack(">II", len(frame), 12) + frame
    decoder = FrameDecoder(vnet_hdr=True)
    assert decoder.feed(wire[:7]) == []
    (primary,) = decoder.feed(wire[7:])
    assert (primary.data, primary.vnet_hdr_len) == (frame, 12)
    comparator = Comparator(CompareConfig())
    out = comparator.feed_primary(primary.data, 0.0, primary.vnet_hdr_len)
    out += comparator.feed_secondary(frame, 0.0, 12)
    (release,) = [a for a in out if isinstance(a, Release)]
    assert release.frames == [frame] and release.vnet_hdr_len == 12
    assert encode_frames(release.frames, release.vnet_hdr_len, vnet_hdr=True) == wire


def test_a_frame_split_anywhere_in_its_two_length_words_is_reassembled() -> None:
    frame = _frame(b"x" * 100, bytes(10))
    wire = struct.pack(">II", len(frame), 10) + frame
    for cut in range(1, 9):
        decoder = FrameDecoder(vnet_hdr=True)
        out = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
        assert [(f.data, f.vnet_hdr_len) for f in out] == [(frame, 10)], cut
        assert decoder.malformed == 0


def test_a_header_length_beyond_the_frame_is_malformed_not_a_crash() -> None:
    frame = _frame(b"y", b"")
    decoder = FrameDecoder(vnet_hdr=True)
    assert decoder.feed(struct.pack(">II", len(frame), len(frame) + 1) + frame) == []
    assert decoder.malformed >= 1
