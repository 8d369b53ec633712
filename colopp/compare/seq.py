"""TCP sequence-number arithmetic (modulo 2**32, RFC 1982 serial-number order).

One module for it; the comparator's hot paths inline the same expressions for speed and say
so (``0 < ((a - b) & MASK) < HALF`` is :func:`seq_after`).
"""

from __future__ import annotations

#: Sequence numbers are 32-bit.
MASK = 0xFFFFFFFF
#: Half the sequence space: ``a`` is after ``b`` when ``a - b`` (mod 2**32) is below it.
HALF = 0x80000000


def seq_after(a: int, b: int) -> bool:
    """True when sequence number ``a`` comes after ``b`` (modulo 2**32)."""
    return 0 < ((a - b) & MASK) < HALF


def seq_delta(a: int, b: int) -> int:
    """``a - b`` as a signed distance in sequence space, in [-2**31, 2**31)."""
    d = (a - b) & MASK
    return d - (1 << 32) if d >= HALF else d
