"""The QMP layer against a scripted QMP server on a unix socket (no QEMU)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from colopp.errors import QmpError, QmpTimeout
from colopp.qmp.monitor import Monitor, next_event

GREETING = {
    "QMP": {
        "version": {"qemu": {"major": 11, "minor": 1, "micro": 3}, "package": ""},
        "capabilities": [],
    }
}
Reply = Callable[[dict[str, Any]], dict[str, Any] | None]


async def json_stream(reader: asyncio.StreamReader) -> Any:
    """QMP clients need not end messages with a newline: decode a JSON stream."""
    decoder, buffer = json.JSONDecoder(), ""
    while chunk := await reader.read(4096):
        buffer += chunk.decode()
        while buffer.strip():
            try:
                msg, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                break
            buffer = buffer.lstrip()[end:]
            yield msg


async def scripted_qmp(path: Path, reply: Reply, events: list[dict[str, Any]]) -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(json.dumps(GREETING).encode() + b"\n")
        async for msg in json_stream(reader):
            if msg.get("execute") == "qmp_capabilities":
                answer = {"return": {}} | ({"id": msg["id"]} if "id" in msg else {})
                writer.write(json.dumps(answer).encode() + b"\n")
                continue
            for event in events:  # events first, as QEMU does when one is pending
                writer.write(json.dumps(event).encode() + b"\n")
            events.clear()
            answer = reply(msg)
            if answer is not None:
                if "id" in msg:
                    answer["id"] = msg["id"]
                writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(serve, path=str(path))


def with_monitor(
    tmp_path: Path, reply: Reply, body: Any, events: list[dict[str, Any]] | None = None
) -> Any:
    async def main() -> Any:
        sock = tmp_path / "qmp.sock"
        server = await scripted_qmp(sock, reply, events or [])
        monitor = Monitor("test", sock, timeout=1.0)
        try:
            await monitor.connect(within=2)
            return await body(monitor)
        finally:
            await monitor.close()
            server.close()

    return asyncio.run(main())


def test_execute_returns_the_return_value(tmp_path: Path) -> None:
    reply: Reply = lambda m: {"return": {"mode": "primary"}}
    result = with_monitor(tmp_path, reply, lambda m: m.execute("query-colo-status"))
    assert result == {"mode": "primary"}


def test_error_names_the_command_and_qemus_words(tmp_path: Path) -> None:
    reply: Reply = lambda m: {
        "error": {"class": "GenericError", "desc": "NBD server already running"}
    }
    with pytest.raises(QmpError) as info:
        with_monitor(tmp_path, reply, lambda m: m.execute("nbd-server-start", {"addr": {}}))
    assert info.value.command == "nbd-server-start"
    assert "NBD server already running" in str(info.value)


def test_silence_is_a_timeout_naming_the_command(tmp_path: Path) -> None:
    with pytest.raises(QmpTimeout, match="x-colo-lost-heartbeat"):
        with_monitor(
            tmp_path, lambda m: None, lambda m: m.execute("x-colo-lost-heartbeat", timeout=0.2)
        )


def test_hmp_error_text_becomes_an_error(tmp_path: Path) -> None:
    reply: Reply = lambda m: {"return": "Error: Device 'replication0' not found\r\n"}
    with pytest.raises(QmpError, match="drive_del"):
        with_monitor(tmp_path, reply, lambda m: m.hmp("drive_del replication0"))


def test_events_reach_listeners(tmp_path: Path) -> None:
    stop = {"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 0}}

    async def body(m: Monitor) -> Any:
        listener = m.listen(["STOP"])
        await m.execute("query-status")  # the server sends its events before this reply
        return await next_event(listener, 2.0, "STOP")

    events = [stop]
    got = with_monitor(tmp_path, lambda m: {"return": {}}, body, events)
    assert got["event"] == "STOP"


def test_connect_gives_up_with_the_socket_named(tmp_path: Path) -> None:
    monitor = Monitor("t", tmp_path / "absent.sock")
    with pytest.raises(QmpTimeout, match="absent.sock did not accept"):
        asyncio.run(monitor.connect(within=0.3))


def test_qemus_error_class_is_kept(tmp_path: Path) -> None:
    reply: Reply = lambda m: {"error": {"class": "DeviceNotFound", "desc": "Instance not found"}}
    with pytest.raises(QmpError) as info:
        with_monitor(tmp_path, reply, lambda m: m.execute("yank", {"instances": []}))
    assert (info.value.command, info.value.error_class) == ("yank", "DeviceNotFound")
    assert info.value.message == "Instance not found"


def test_hmp_errors_have_the_hmp_class(tmp_path: Path) -> None:
    from colopp.errors import HMP_ERROR_CLASS

    reply: Reply = lambda m: {"return": "Error: Device 'replication0' not found\r\n"}
    with pytest.raises(QmpError) as info:
        with_monitor(tmp_path, reply, lambda m: m.hmp("drive_del replication0"))
    assert info.value.command == "human-monitor-command drive_del"
    assert info.value.error_class == HMP_ERROR_CLASS
