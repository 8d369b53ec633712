"""The comparator's and relay's reads (colopp/compare/reads.py): one reused 64 KiB buffer,
every byte delivered in order as bytes, whatever the write sizes."""

from __future__ import annotations

import asyncio
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.compare.reads import READ_SIZE, SmallReadProtocol


class Collect(SmallReadProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self.done = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        assert type(data) is bytes  # the consumers hash and slice frames as bytes
        assert len(data) <= READ_SIZE
        self.chunks.append(data)

    def eof_received(self) -> bool:
        self.done.set()
        return False


async def _through(writes: list[bytes]) -> bytes:
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, proto = await loop.connect_accepted_socket(Collect, ours)
    theirs.setblocking(False)
    for data in writes:
        await loop.sock_sendall(theirs, data)
    theirs.shutdown(socket.SHUT_WR)
    await asyncio.wait_for(proto.done.wait(), 10)
    transport.close()
    theirs.close()
    return b"".join(proto.chunks)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=3 * READ_SIZE), min_size=1, max_size=6))
def test_every_byte_arrives_in_order(writes: list[bytes]) -> None:
    assert asyncio.run(_through(writes)) == b"".join(writes)


def test_a_write_larger_than_the_buffer_takes_several_reads() -> None:
    big = bytes(range(256)) * (READ_SIZE // 128)  # 2 x READ_SIZE
    assert asyncio.run(_through([big])) == big


def test_the_base_class_demands_data_received() -> None:
    proto = SmallReadProtocol()
    proto.get_buffer(-1)[:3] = b"abc"
    try:
        proto.buffer_updated(3)
    except NotImplementedError:
        return
    raise AssertionError("data_received must be overridden")
