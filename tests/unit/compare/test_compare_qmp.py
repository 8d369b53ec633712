"""The comparator's QMP link against a scripted QMP server on a unix socket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from colopp.compare.checkpoint import QmpCheckpointLink
from colopp.errors import QmpError

TIMEOUT = 5.0
GREETING = {"QMP": {"version": {"qemu": {"major": 11, "minor": 1, "micro": 3}}, "capabilities": []}}


class ScriptedQmp:
    """Answers like QEMU: greeting, capabilities, migrate parameters; can emit events."""

    def __init__(self, refuse: bool = False) -> None:
        self.commands: list[dict[str, object]] = []
        self.refuse = refuse
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()
        self.got_command = asyncio.Event()

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

    def answer(self, msg: dict[str, object]) -> None:
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


async def scenario(path: Path, refuse: bool) -> None:
    qemu = ScriptedQmp(refuse)
    server = await asyncio.start_unix_server(qemu.serve, str(path))
    done = asyncio.Event()
    link = QmpCheckpointLink(str(path), done.set, timeout=TIMEOUT)
    try:
        await asyncio.wait_for(link.start(connect_timeout=TIMEOUT), TIMEOUT)
        assert link.delay_ms == 2000
        if refuse:
            with pytest.raises(QmpError):
                await link.request("tcp_payload_mismatch")
            return
        await link.request("tcp_payload_mismatch")
        sent = [c for c in qemu.commands if c["execute"] == "migrate-set-parameters"]
        assert sent[0]["arguments"] == {"x-checkpoint-delay": 2000}
        qemu.event("RESUME")  # a RESUME without STOP is not a checkpoint
        qemu.event("STOP")
        qemu.event("RESUME")
        await asyncio.wait_for(done.wait(), TIMEOUT)
    finally:
        await link.close()
        if qemu.writer is not None:
            qemu.writer.close()
            await qemu.writer.wait_closed()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("refuse", [False, True], ids=["accepted", "refused"])
def test_qmp_link(tmp_path: Path, refuse: bool) -> None:
    asyncio.run(scenario(tmp_path / "primary-compare.qmp", refuse))
