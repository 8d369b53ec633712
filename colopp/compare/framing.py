"""QEMU net-filter socket framing, as spoken by filter-mirror, filter-redirector and colo-compare.

Every frame on the chardev stream is::

    u32 big-endian  total length L (vnet header bytes + packet bytes)
    u32 big-endian  vnet header length V   -- only when vnet_hdr_support=on
    L bytes         V bytes of virtio-net header, then the Ethernet frame

QEMU's reader (``net_fill_rstate``) gives up on the whole stream when L exceeds its
buffer (``NET_BUFSIZE``, 4096 + 65536 bytes). :class:`FrameDecoder` instead counts the bad
header and resynchronises by sliding one byte forward, so a garbage prefix costs frames, never
the process.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

#: QEMU's NET_BUFSIZE: the largest frame any net filter will accept.
MAX_FRAME_LEN = 4096 + 65536
#: The largest virtio-net header QEMU knows (struct virtio_net_hdr_v1_hash is 20 bytes); be lax.
MAX_VNET_HDR_LEN = 64

#: The length word before a frame, and the length + vnet header length words (vnet_hdr=on).
LENGTH_HEADER = struct.Struct(">I")
VNET_LENGTH_HEADER = struct.Struct(">II")
_U32 = LENGTH_HEADER
_U32X2 = VNET_LENGTH_HEADER
# Builds a NamedTuple without its Python-level __new__ (one call per frame on the hot path).
_new_tuple = tuple.__new__


class DecodedFrame(NamedTuple):
    """One frame: ``data`` holds the vnet header (``vnet_hdr_len`` bytes) then the packet."""

    data: bytes
    vnet_hdr_len: int


class FrameDecoder:
    """Incremental decoder: feed any chunking of the byte stream, get whole frames back.

    Never raises on bad input. A header whose length is 0, above ``max_frame_len``, or whose
    vnet header length exceeds the frame, is counted in :attr:`malformed` and the decoder
    slides forward one byte to look for the next plausible header.
    """

    __slots__ = ("_tail", "malformed", "max_frame_len", "vnet_hdr")

    def __init__(self, vnet_hdr: bool = False, max_frame_len: int = MAX_FRAME_LEN) -> None:
        self.vnet_hdr = vnet_hdr
        self.max_frame_len = max_frame_len
        self.malformed = 0
        self._tail = b""

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._tail)

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[DecodedFrame]:
        """Append ``chunk`` and return every frame it completes, in stream order."""
        # One copy per frame: slices of an immutable bytes object (the unfinished tail, at
        # most one frame, is copied once per chunk).
        data = self._tail + chunk if self._tail else bytes(chunk)
        frames: list[DecodedFrame] = []
        pos = 0
        end = len(data)
        limit = self.max_frame_len
        if self.vnet_hdr:
            unpack2 = _U32X2.unpack_from
            while end - pos >= 8:
                length, vlen = unpack2(data, pos)
                if length == 0 or length > limit or vlen > length or vlen > MAX_VNET_HDR_LEN:
                    self.malformed += 1
                    pos += 1
                    continue
                start = pos + 8
                if end - start < length:
                    break
                pos = start + length
                frames.append(_new_tuple(DecodedFrame, (data[start:pos], vlen)))
        else:
            unpack = _U32.unpack_from
            while end - pos >= 4:
                (length,) = unpack(data, pos)
                if length == 0 or length > limit:
                    self.malformed += 1
                    pos += 1
                    continue
                start = pos + 4
                if end - start < length:
                    break
                pos = start + length
                frames.append(_new_tuple(DecodedFrame, (data[start:pos], 0)))
        self._tail = data[pos:] if pos < end else b""
        return frames


def frame_header(data: bytes, vnet_hdr_len: int = 0, *, vnet_hdr: bool = False) -> bytes:
    """The length word(s) that precede ``data`` on the wire (see :func:`encode_frame`)."""
    if vnet_hdr:
        return _U32X2.pack(len(data), vnet_hdr_len)
    return _U32.pack(len(data))


def encode_frame(data: bytes, vnet_hdr_len: int = 0, *, vnet_hdr: bool = False) -> bytes:
    """Frame ``data`` (vnet header + packet) for a net-filter chardev.

    With ``vnet_hdr`` the vnet header length word is written, as QEMU does when
    ``vnet_hdr_support=on``; without it ``vnet_hdr_len`` must be 0.
    """
    if vnet_hdr:
        return _U32X2.pack(len(data), vnet_hdr_len) + data
    return _U32.pack(len(data)) + data


def encode_frames(frames: list[bytes], vnet_hdr_len: int = 0, *, vnet_hdr: bool = False) -> bytes:
    """Frame several packets into one buffer, ready for a single write."""
    if len(frames) == 1:
        return encode_frame(frames[0], vnet_hdr_len, vnet_hdr=vnet_hdr)
    if vnet_hdr:
        pack2 = _U32X2.pack
        return b"".join(pack2(len(f), vnet_hdr_len) + f for f in frames)
    pack = _U32.pack
    return b"".join(pack(len(f)) + f for f in frames)
