"""Connection churn against the guest's HTTP key-value service (run in the client netns).

``python -m bench.churn_client --target 198.18.0.100:80 [--open-every 0.1] [--lifetime 30]
[--interval 0.5] [--timeout 5]``

Opens a new HTTP/1.1 keep-alive connection every ``--open-every`` seconds and keeps each for
``--lifetime`` seconds, sending a request every ``--interval`` (PUT a new key, then GET it
back, alternately). A connection is *broken* at its first error, reset, wrong answer or
request not answered within ``--timeout``. On stdin: ``idle`` opens one connection that
makes one request, stays silent for ``--idle-silence`` seconds, then makes another; ``stop``
(or EOF) stops opening connections, lets the open ones finish their lifetime, reads every
acknowledged write back on fresh connections and prints one JSON summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from colopp.demo.workload import verify_writes


@dataclass
class Churn:
    host: str
    port: int
    timeout: float
    opened: int = 0
    broken: int = 0
    requests_ok: int = 0
    writes: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    idle_opened: int = 0
    idle_broken: int = 0

    async def request(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        body: bytes = b"",
    ) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: guest\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("closed by the server")
        status = int(status_line.split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await reader.readexactly(length)

    async def exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cid: str, n: int
    ) -> None:
        key = f"churn-{cid}-{n // 2}"
        value = f"v{cid}.{n}"
        if n % 2 == 0:
            status, _ = await asyncio.wait_for(
                self.request(reader, writer, "PUT", f"/kv/{key}", value.encode()), self.timeout
            )
            if status != 200:
                raise RuntimeError(f"PUT {key}: {status}")
            self.writes[key] = value
        else:
            status, body = await asyncio.wait_for(
                self.request(reader, writer, "GET", f"/kv/{key}"), self.timeout
            )
            if status != 200 or body.decode() != f"v{cid}.{n - 1}":
                raise RuntimeError(f"GET {key}: {status} {body[:40]!r}")
        self.requests_ok += 1

    async def connection(self, cid: str, lifetime: float, interval: float, idle: float) -> bool:
        """One connection's life; False when it broke."""
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout
            )
            if idle:
                await self.exchange(reader, writer, cid, 0)
                await asyncio.sleep(idle)  # the point: a silent connection
                await self.exchange(reader, writer, cid, 1)
                return True
            end = time.monotonic() + lifetime
            n = 0
            while time.monotonic() < end:
                await self.exchange(reader, writer, cid, n)
                n += 1
                await asyncio.sleep(interval)  # the workload's request pacing
            return True
        except (
            OSError,
            RuntimeError,
            TimeoutError,
            ValueError,
            IndexError,
            asyncio.IncompleteReadError,
        ) as exc:
            self.errors.append(f"{cid}: {type(exc).__name__}: {exc}"[:200])
            return False
        finally:
            if writer is not None:
                writer.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    host, port = args.target.rsplit(":", 1)
    churn = Churn(host, int(port), args.timeout)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def one(cid: str, idle: float) -> None:
        ok = await churn.connection(cid, args.lifetime, args.interval, idle)
        if not ok:
            churn.broken += 1
            if idle:
                churn.idle_broken += 1

    async def read_stdin() -> None:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if line.strip() == "idle":
                churn.idle_opened += 1
                churn.opened += 1
                tasks.append(
                    asyncio.create_task(one(f"idle{churn.idle_opened}", args.idle_silence))
                )
                continue
            stop.set()
            return

    reader_task = asyncio.create_task(read_stdin())
    started = time.monotonic()
    while not stop.is_set():
        churn.opened += 1
        tasks.append(asyncio.create_task(one(str(churn.opened), 0.0)))
        next_open = started + churn.opened * args.open_every
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, next_open - time.monotonic()))
    await asyncio.gather(*tasks)
    reader_task.cancel()
    lost = await asyncio.to_thread(verify_writes, host, int(port), churn.writes, 60.0)
    return {
        "connections_opened": churn.opened,
        "connections_broken": churn.broken,
        "idle_connections": churn.idle_opened,
        "idle_broken": churn.idle_broken,
        "requests_ok": churn.requests_ok,
        "writes_acked": len(churn.writes),
        "writes_lost": len(lost),
        "lost_keys": lost[:20],
        "errors": churn.errors[:20],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.churn_client", description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--open-every", type=float, default=0.1)
    parser.add_argument("--lifetime", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--idle-silence", type=float, default=60.0)
    args = parser.parse_args(argv)
    summary = asyncio.run(run(args))
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
