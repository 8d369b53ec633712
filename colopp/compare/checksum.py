"""Internet checksum arithmetic shared by the frame rewriters (:mod:`colopp.rewrite.segment`,
:mod:`colopp.compare.ack_frames`): pure integer functions."""

from __future__ import annotations


def adjust32(csum: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3: the checksum after a 16-bit-aligned 32-bit field went old -> new."""
    total = (
        (~csum & 0xFFFF) + (~(old >> 16) & 0xFFFF) + (~old & 0xFFFF) + (new >> 16) + (new & 0xFFFF)
    )
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def sum16(data: bytes) -> int:
    """The one's-complement sum of ``data``'s 16-bit big-endian words (a last odd byte padded
    with zero), modulo 0xFFFF: 2**16 = 1 (mod 0xFFFF), so one big integer does it."""
    if len(data) & 1:
        data += b"\0"
    return int.from_bytes(data, "big") % 0xFFFF


def checksum_of(total: int) -> int:
    """The Internet checksum of words whose one's-complement sum is ``total`` (any size;
    words never all zero)."""
    folded = total % 0xFFFF or 0xFFFF
    return ~folded & 0xFFFF


def remove(csum: int, removed: int) -> int:
    """The checksum after words summing to ``removed`` (:func:`sum16`) left the data."""
    return checksum_of((~csum & 0xFFFF) + (0xFFFF - removed % 0xFFFF))
