"""Socket reads without a large allocation per read (the comparator's and the relay's).

A read of N bytes into a new ``bytes`` allocates N bytes first and shrinks them to what
came. At N >= 128 KiB glibc's malloc maps and unmaps memory for every such read: measured
on the lab machine (session 14), a read of one 150-byte frame cost 5.7 us with N = 256 KiB
(asyncio's default for its transports) and 0.8 us with N = 64 KiB. The comparator and the
relay read a few frames per wake-up, thousands of times a second, on the hosts' busiest
CPUs, so their reads ask for at most :data:`READ_SIZE` bytes: a bulk stream only takes
one more read per 64 KiB.
"""

from __future__ import annotations

import asyncio

#: Most bytes a single read asks for (below glibc's 128 KiB mmap threshold).
READ_SIZE = 64 * 1024


class SmallReadProtocol(asyncio.BufferedProtocol):
    """A protocol whose transport reads into one reused :data:`READ_SIZE` buffer; each read
    reaches :meth:`data_received` as ``bytes``, as with :class:`asyncio.Protocol`."""

    def __init__(self) -> None:
        self._read_buffer = bytearray(READ_SIZE)
        self._read_view = memoryview(self._read_buffer)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._read_view[:nbytes]))

    def data_received(self, data: bytes) -> None:
        raise NotImplementedError
