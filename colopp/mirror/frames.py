"""Whole frames in a buffer of ``filter-mirror``'s stream (pure).

The mirror process forwards the stream in batches, never a frame split between two
connections: a secondary host that connects (or reconnects) gets frames from a frame
boundary on. Framing as in :mod:`colopp.compare.framing`: a u32 length, with
``vnet_hdr_support=on`` a u32 vnet header length, then the frame.
"""

from __future__ import annotations

from colopp.compare.framing import (
    LENGTH_HEADER,
    MAX_FRAME_LEN,
    MAX_VNET_HDR_LEN,
    VNET_LENGTH_HEADER,
)

_U32 = LENGTH_HEADER.unpack_from
_U32X2 = VNET_LENGTH_HEADER.unpack_from


def whole_frames(
    buf: bytes | bytearray | memoryview, end: int, vnet_hdr: bool
) -> tuple[list[tuple[int, int]], int, int, int]:
    """The runs of whole frames in ``buf[:end]``, where the next frame starts, how many
    frames the runs hold and how many malformed headers were skipped.

    Returns ``(runs, consumed, frames, malformed)``: ``runs`` are ``(start, stop)`` byte ranges made
    of whole frames, in order (one run unless a malformed header split them); ``consumed``
    is where the first incomplete frame starts (the bytes to keep for the next read). A
    header whose length is 0 or above :data:`MAX_FRAME_LEN`, or whose vnet header length
    is past the frame, is malformed: it is skipped one byte at a time (those bytes are in
    no run, so they are never forwarded), as :class:`~colopp.ingress.wire.Splitter` does.
    """
    runs: list[tuple[int, int]] = []
    pos = run_start = 0
    frames = malformed = 0
    head = 8 if vnet_hdr else 4
    while end - pos >= head:
        if vnet_hdr:
            length, vlen = _U32X2(buf, pos)
            bad = length == 0 or length > MAX_FRAME_LEN or vlen > length or vlen > MAX_VNET_HDR_LEN
        else:
            (length,) = _U32(buf, pos)
            bad = length == 0 or length > MAX_FRAME_LEN
        if bad:
            if pos > run_start:
                runs.append((run_start, pos))
            malformed += 1
            pos += 1
            run_start = pos
            continue
        stop = pos + head + length
        if stop > end:
            break
        pos = stop
        frames += 1
    if pos > run_start:
        runs.append((run_start, pos))
    return runs, pos, frames, malformed
