"""The translator process's shell against fake QEMU chardev servers (unix sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from pathlib import Path

from rewrite_frames import GUEST_KEY, checksum_ok, fields, tcp

from colopp.compare.framing import FrameDecoder, encode_frame
from colopp.rewrite.relay import Relay, load_state
from colopp.rewrite.splice import relay_options


class FakeQemu:
    """Four server chardevs: the relay connects to each, like to QEMU's."""

    def __init__(self, run_dir: Path) -> None:
        self.opts = relay_options(run_dir)
        self.conns: dict[
            Path, asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        ] = {}
        self.servers: list[asyncio.Server] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for path in (
            self.opts.guest_out_from,
            self.opts.guest_out_to,
            self.opts.client_in_from,
            self.opts.client_in_to,
        ):
            fut: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
                loop.create_future()
            )
            self.conns[path] = fut

            async def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter, fut=fut) -> None:  # type: ignore[no-untyped-def]
                fut.set_result((r, w))

            self.servers.append(await asyncio.start_unix_server(accept, path=str(path)))

    async def send(self, path: Path, frame: bytes) -> None:
        _, writer = await self.conns[path]
        writer.write(encode_frame(frame))
        await writer.drain()

    async def receive(self, path: Path) -> bytes:
        reader, _ = await self.conns[path]
        decoder = FrameDecoder()
        while True:
            frames = decoder.feed(await asyncio.wait_for(reader.read(65536), 5.0))
            if frames:
                return frames[0].data

    async def close(self) -> None:
        for fut in self.conns.values():
            if fut.done():
                fut.result()[1].close()
        for server in self.servers:
            server.close()
            await server.wait_closed()


async def _control(path: Path, request: dict[str, object]) -> dict[str, object]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(json.dumps(request).encode() + b"\n")
    await writer.drain()
    reply = json.loads(await asyncio.wait_for(reader.readline(), 5.0))
    writer.close()
    await writer.wait_closed()
    return reply  # type: ignore[no-any-return]


async def _scenario(run_dir: Path) -> None:
    qemu = FakeQemu(run_dir)
    await qemu.start()
    relay = Relay(qemu.opts, clock=lambda: 100.0)
    task = asyncio.create_task(relay.run())
    try:
        # Before any entry, frames pass unchanged.
        plain = tcp(1000, 2000, "PA", b"x")
        await qemu.send(qemu.opts.guest_out_from, plain)
        assert await qemu.receive(qemu.opts.guest_out_to) == plain
        # The control socket listens before the relay connects to any chardev.
        reply = await _control(
            qemu.opts.control,
            {"op": "set", "guest": list(GUEST_KEY[:2]), "peer": list(GUEST_KEY[2:]), "delta": 500},
        )
        assert reply["ok"] is True
        assert stat.S_IMODE(qemu.opts.control.stat().st_mode) == 0o600
        assert stat.S_IMODE(qemu.opts.state_file.stat().st_mode) == 0o600
        await qemu.send(qemu.opts.guest_out_from, tcp(1500, 2000, "PA", b"y"))
        out = await qemu.receive(qemu.opts.guest_out_to)
        assert fields(out)[0] == 1000 and checksum_ok(out)
        await qemu.send(qemu.opts.client_in_from, tcp(2000, 1001, "A", from_guest=False))
        into = await qemu.receive(qemu.opts.client_in_to)
        assert fields(into)[1] == 1501 and checksum_ok(into)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await qemu.close()
    assert load_state(qemu.opts.state_file).delta(GUEST_KEY) == 500


def test_relay_translates_both_ways_and_keeps_its_table(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))
    # A restarted translator starts from the saved table.
    assert Relay(relay_options(tmp_path)).table.delta(GUEST_KEY) == 500
