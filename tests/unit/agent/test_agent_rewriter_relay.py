"""The builtin secondary's learning relay on real sockets: a fake primary (mirror and
colo-compare servers) and a fake secondary QEMU (red0/red1 clients). Frames pass unchanged,
the young offset lands in YoungOffsets, a checkpoint load voids it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from colopp.agent.rewriter_relay import RewriterRelay
from colopp.compare.framing import FrameDecoder, encode_frame
from colopp.domain import ComparatorKind, Ports, ProtectionOptions, Role, SideSpec
from colopp.rewrite.young import YoungOffsets
from tests.unit.rewrite.rewrite_frames import GUEST, GUEST_PORT, tcp

CLIENT, CLIENT_PORT = 0xC6120002, 40000
TIMEOUT = 10.0


class _Primary:
    """One of the primary's chardev servers: remembers its connection and what it read."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None
        self.reader: asyncio.StreamReader | None = None

    async def serve(self) -> tuple[asyncio.Server, int]:
        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.reader, self.writer = reader, writer
            self.connected.set()

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        return server, server.sockets[0].getsockname()[1]


def _spec(tmp_path: Path, mirror_port: int, compare_port: int) -> SideSpec:
    return SideSpec(
        Role.SECONDARY,
        tmp_path,
        "tap0",
        tmp_path / "d.qcow2",
        "127.0.0.1",
        "127.0.0.1",
        Ports(mirror=mirror_port, compare=compare_port),
        ProtectionOptions(comparator=ComparatorKind.BUILTIN),
    )


async def _frames(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    decoder, out = FrameDecoder(), []
    while len(out) < count:
        chunk = await asyncio.wait_for(reader.read(65536), TIMEOUT)
        assert chunk, "stream closed"
        out += [frame for frame, _ in decoder.feed(chunk)]
    return out


async def _scenario(tmp_path: Path) -> None:
    mirror, comparator = _Primary(), _Primary()
    mirror_server, mirror_port = await mirror.serve()
    compare_server, compare_port = await comparator.serve()
    spec = _spec(tmp_path, mirror_port, compare_port)
    assert spec.rewriter_relay
    ticks = iter(float(n) for n in range(1, 1000))
    young = YoungOffsets()
    relay = RewriterRelay(spec, young, clock=lambda: next(ticks))
    await relay.start()
    try:
        red0_reader, red0_writer = await asyncio.open_unix_connection(str(spec.red0_socket))
        _red1_reader, red1_writer = await asyncio.open_unix_connection(str(spec.red1_socket))
        await asyncio.wait_for(mirror.connected.wait(), TIMEOUT)
        await asyncio.wait_for(comparator.connected.wait(), TIMEOUT)
        assert mirror.writer is not None and comparator.reader is not None

        syn = tcp(7, 0, "S", from_guest=False)
        mirror.writer.write(encode_frame(syn))
        assert await _frames(red0_reader, 1) == [syn]
        syn_ack = tcp(5000, 8, "SA")
        red1_writer.write(encode_frame(syn_ack)[:10])  # split frames are joined
        red1_writer.write(encode_frame(syn_ack)[10:])
        assert await _frames(comparator.reader, 1) == [syn_ack]
        ack, data = (
            tcp(8, 1001, "A", from_guest=False),
            tcp(8, 1001, "PA", b"GET", from_guest=False),
        )
        mirror.writer.write(encode_frame(ack) + encode_frame(data))
        assert await _frames(red0_reader, 2) == [ack, data]

        key = (GUEST, GUEST_PORT, CLIENT, CLIENT_PORT)
        assert young.live() == {key: 4000}
        assert relay.describe()["learned"] == 1
        relay.checkpoint_loaded(1000.0)  # a later load: filter-rewriter zeroed it
        assert young.live() == {}

        # The guest's output the client has not acknowledged is kept for a failover.
        answer = [tcp(5001 + 100 * i, 11, "PA", bytes([65 + i]) * 100) for i in range(3)]
        red1_writer.write(b"".join(encode_frame(f) for f in answer))
        assert await _frames(comparator.reader, 3) == answer
        mirror.writer.write(encode_frame(tcp(11, 5101, "A", from_guest=False)))
        assert len(await _frames(red0_reader, 1)) == 1  # the client has the first segment
        assert [f for f, _ in relay.take_output()] == answer[1:]
        # What the guest sent before a load is void, read at the load while still unread
        # (no await between the write and the load: the loop has not read it).
        late = tcp(5301, 11, "PA", b"y" * 100)
        red1_writer.write(encode_frame(late))
        relay.checkpoint_loaded(2000.0)
        assert relay.describe()["keep_forgotten"] == 1
        assert await _frames(comparator.reader, 1) == [late]  # passed on all the same
        assert relay.take_output() == []
        for writer in (red0_writer, red1_writer):
            writer.close()
            await writer.wait_closed()
    finally:
        await relay.stop()
        for primary in (mirror, comparator):
            if primary.writer is not None:
                primary.writer.close()
                await primary.writer.wait_closed()
        for server in (mirror_server, compare_server):
            server.close()
            await server.wait_closed()


def test_frames_pass_unchanged_and_the_offset_is_learned(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))


async def _unlink_scenario(tmp_path: Path) -> None:
    mirror, comparator = _Primary(), _Primary()
    mirror_server, mirror_port = await mirror.serve()
    compare_server, compare_port = await comparator.serve()
    spec = _spec(tmp_path, mirror_port, compare_port)
    relay = RewriterRelay(spec, YoungOffsets())
    await relay.start()
    try:
        _, red0_writer = await asyncio.open_unix_connection(str(spec.red0_socket))
        await asyncio.wait_for(mirror.connected.wait(), TIMEOUT)
        assert not comparator.connected.is_set()  # QEMU's red1 end is not there
        red0_writer.close()
        await red0_writer.wait_closed()
        assert mirror.reader is not None
        assert await asyncio.wait_for(mirror.reader.read(), TIMEOUT) == b""  # closed too
    finally:
        await relay.stop()
        for primary in (mirror, comparator):
            if primary.writer is not None:
                primary.writer.close()
                await primary.writer.wait_closed()
        for server in (mirror_server, compare_server):
            server.close()
            await server.wait_closed()


def test_the_primarys_end_follows_qemus(tmp_path: Path) -> None:
    """The primary sees the secondary linked only while QEMU holds its end."""
    asyncio.run(_unlink_scenario(tmp_path))
