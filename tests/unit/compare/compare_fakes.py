"""Fakes of QEMU's side of the comparator's sockets: chardev servers and a QMP monitor."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from colopp.compare.framing import FrameDecoder

TIMEOUT = 10.0
GREETING = {"QMP": {"version": {"qemu": {"major": 11, "minor": 1, "micro": 3}}, "capabilities": []}}


class FakeQemuSide:
    """A unix server that accepts one connection (what QEMU's chardev server does)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.conn = asyncio.get_running_loop().create_future()

        def accepted(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            if not self.conn.done():
                self.conn.set_result((r, w))

        self.server = await asyncio.start_unix_server(accepted, str(self.path))

    async def close(self) -> None:
        if self.conn.done():
            _, writer = self.conn.result()
            writer.close()
            await writer.wait_closed()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class ScriptedQmp:
    """Answers like QEMU: greeting, capabilities, migrate parameters; can emit events and
    hang up."""

    def __init__(self, refuse: bool = False) -> None:
        self.commands: list[dict[str, Any]] = []
        self.refuse = refuse
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()
        self.got_command = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def listen(self, path: Path) -> None:
        self.server = await asyncio.start_unix_server(self.serve, str(path))

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.connected.set()
        self.send(GREETING)
        decoder = json.JSONDecoder()
        text = ""
        while chunk := await reader.read(4096):
            # QMP clients need not end messages with a newline: decode a JSON stream.
            text = (text + chunk.decode()).lstrip()
            while text:
                try:
                    msg, used = decoder.raw_decode(text)
                except json.JSONDecodeError:
                    break
                text = text[used:].lstrip()
                self.answer(msg)

    def answer(self, msg: dict[str, Any]) -> None:
        self.commands.append(msg)
        self.got_command.set()
        name = msg["execute"]
        reply: dict[str, object] = {"return": {}}
        if name == "query-migrate-parameters":
            reply = {"return": {"x-checkpoint-delay": 2000}}
        elif name == "migrate-set-parameters" and self.refuse:
            reply = {"error": {"class": "GenericError", "desc": "not now"}}
        if "id" in msg:
            reply["id"] = msg["id"]
        self.send(reply)

    def send(self, msg: dict[str, object]) -> None:
        assert self.writer is not None
        self.writer.write(json.dumps(msg).encode() + b"\r\n")

    def event(self, name: str) -> None:
        self.send({"event": name, "data": {}, "timestamp": {"seconds": 0, "microseconds": 0}})

    async def hang_up(self) -> None:
        """Close the monitor connection and stop accepting new ones (QEMU's monitor gone)."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


class Rig:
    """The primary QEMU's sockets for one comparator."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.primary = FakeQemuSide(tmp / "compare0.sock")
        self.outdev = FakeQemuSide(tmp / "compare_out.sock")
        self.qmp = ScriptedQmp()
        self.qmp_path = tmp / "compare.qmp"
        self.listen_path = tmp / "red1.sock"
        self.status_path = tmp / "status.json"

    async def start(self) -> None:
        await self.primary.start()
        await self.outdev.start()
        await self.qmp.listen(self.qmp_path)

    def argv(self) -> list[str]:
        return [
            *("-m", "colopp.compare", "--primary-in", f"unix:{self.primary.path}"),
            *("--outdev", f"unix:{self.outdev.path}"),
            *("--secondary-in", f"listen:unix:{self.listen_path}"),
            *("--qmp", str(self.qmp_path), "--status", str(self.status_path)),
            *("--status-interval", "0.05", "--connect-timeout", "5"),
        ]

    async def close(self) -> None:
        await self.qmp.hang_up()
        await self.primary.close()
        await self.outdev.close()


async def read_frames(reader: asyncio.StreamReader, dec: FrameDecoder, count: int) -> list[bytes]:
    frames: list[bytes] = []
    while len(frames) < count:
        chunk = await asyncio.wait_for(reader.read(65536), TIMEOUT)
        assert chunk, "outdev closed"
        frames += [f.data for f in dec.feed(chunk)]
    return frames


async def connect_when_ready(path: Path) -> asyncio.StreamWriter:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        try:
            _, writer = await asyncio.open_unix_connection(str(path))
            return writer
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.02)


async def status_until(path: Path, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        try:
            status = json.loads(path.read_text())
            if predicate(status):
                return status  # type: ignore[no-any-return]
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        if loop.time() > deadline:
            raise AssertionError(f"status never matched: {path.read_text()}")
        await asyncio.sleep(0.05)
