"""The open-loop load generator against tiny local servers (HTTP keep-alive and RESP)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from bench.loadgen import parse_args, percentile, resp_command, run

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def http_server(stall: asyncio.Event | None = None) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"PUT"):
                    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
                    writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
                    served += 1  # GETs only: the prefill does not count
                if stall is not None and served == 3 and not stall.is_set():
                    stall.set()
                    await asyncio.sleep(0.3)  # the server stalls once (what is measured)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return handle


async def resp_handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            header = await reader.readuntil(b"\r\n")
            args = []
            for _ in range(int(header[1:-2])):
                size = int((await reader.readuntil(b"\r\n"))[1:-2])
                args.append((await reader.readexactly(size + 2))[:-2])
            writer.write(b"+OK\r\n" if args[0] == b"SET" else b"$3\r\nabc\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def serve_and_run(handler: Handler, argv: list[str]) -> dict[str, object]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await run(parse_args([*argv, "--host", "127.0.0.1", "--port", str(port)]))
    finally:
        server.close()
        await server.wait_closed()


def test_open_loop_counts_a_stall_in_every_request_it_delayed() -> None:
    stall = asyncio.Event()
    argv = ["--rate", "200", "--connections", "1", "--duration", "1", "--put-ratio", "0.2"]
    result = asyncio.run(serve_and_run(http_server(stall), [*argv, "--prefill"]))
    assert result["errors"] == 0
    assert result["writes"] > 0 and result["reads"] > result["writes"]  # type: ignore[operator]
    # The 300 ms stall delays ~60 scheduled requests: they all carry part of it.
    assert result["p999_ms"] >= 250  # type: ignore[operator]
    assert result["late_sends"] >= 30  # type: ignore[operator]
    assert 150 <= result["requests"] <= 210  # type: ignore[operator]


def test_closed_loop_resp() -> None:
    argv = ["--proto", "resp", "--closed", "--connections", "2", "--duration", "0.3"]
    result = asyncio.run(serve_and_run(resp_handle, argv))
    assert result["errors"] == 0 and result["requests"] > 10  # type: ignore[operator]
    assert result["mode"] == "closed"


def test_helpers() -> None:
    assert resp_command(b"GET", b"k") == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    assert percentile([], 0.5) == 0.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1000)], 0.999) == 998.0
    with pytest.raises(SystemExit):
        parse_args(["--host", "h", "--rate", "0"])
