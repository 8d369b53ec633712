"""Connection churn against the guest's HTTP key-value service (run in the client netns).

``python -m bench.churn_client --target 198.18.0.100:80 [--open-every 0.1] [--lifetime 30]
[--interval 0.5] [--timeout 5] [--write-every 2]``

Opens a new HTTP/1.1 keep-alive connection every ``--open-every`` seconds and keeps each for
``--lifetime`` seconds, sending a request every ``--interval`` (``--pacing after-answer``:
that long after each answer). Request n is a PUT of a new key when
``n % --write-every == 0``, else a GET of the connection's last key (its value checked).
A connection is *broken* at its first error, reset, wrong answer or request not answered
within ``--timeout``. On stdin: ``idle`` opens one connection that makes one request, stays
silent for ``--idle-silence`` seconds, then makes another; ``stop`` (or EOF) stops opening
connections, lets the open ones finish their lifetime, reads every acknowledged write back
on fresh connections and prints one JSON summary line.

Each connection is an ``asyncio.Protocol`` driven by loop timers (no task or coroutine per
request), so a few hundred connections cost the client little CPU.
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
    interval: float
    write_every: int
    fixed_pacing: bool = True
    started: float = field(default_factory=time.monotonic)
    opened: int = 0
    broken: int = 0
    requests_ok: int = 0
    requests_sent: int = 0
    writes: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    broken_at: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    put_latencies: list[float] = field(default_factory=list)
    idle_opened: int = 0
    idle_broken: int = 0
    # Per broken connection: id, client port, opened/broken at (s), requests answered.
    broken_detail: list[dict[str, Any]] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)  # connection id -> client port


class Connection(asyncio.Protocol):
    """One keep-alive connection's life; ``done`` resolves to False when it broke."""

    def __init__(self, churn: Churn, cid: str, lifetime: float, idle: float) -> None:
        self.churn = churn
        self.cid = cid
        self.idle = idle
        self.end = time.monotonic() + lifetime
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[bool] = self.loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.n = 0
        self.key = ""
        self.sent_at = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.waiting = False
        self.port = 0  # the client's port: the key to the pair's translation records
        self.opened_at = time.monotonic()

    # ---- protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sockname = transport.get_extra_info("sockname")
        self.port = int(sockname[1]) if sockname else 0
        self.churn.ports[self.cid] = self.port
        self._send()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiting:
            self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self._fail(f"connection lost: {exc or 'closed by the server'}")

    # ---- requests ------------------------------------------------------------------------
    def _send(self) -> None:
        if self.done.done() or self.transport is None:
            return
        if self.n % self.churn.write_every == 0:
            self.key = f"churn-{self.cid}-{self.n}"
            body = f"v{self.cid}.{self.n}".encode()
            head = f"PUT /kv/{self.key} HTTP/1.1\r\nHost: g\r\nContent-Length: {len(body)}\r\n\r\n"
            self.transport.write(head.encode() + body)
        else:
            self.transport.write(f"GET /kv/{self.key} HTTP/1.1\r\nHost: g\r\n\r\n".encode())
        self.sent_at = time.monotonic()
        self.churn.requests_sent += 1
        self.waiting = True
        self.timer = self.loop.call_later(self.churn.timeout, self._timed_out)
        if self.buffer:
            self._parse()

    def _timed_out(self) -> None:
        self._fail(f"request {self.n} not answered in {self.churn.timeout:.0f} s")

    def _parse(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        try:
            status = int(head[0].split()[1])
        except (IndexError, ValueError):
            self._fail(f"bad status line {head[0][:40]!r}")
            return
        self._answered(status, body)

    def _answered(self, status: int, body: bytes) -> None:
        assert self.timer is not None
        self.timer.cancel()
        self.waiting = False
        now = time.monotonic()
        self.churn.latencies.append(now - self.sent_at)
        if self.n % self.churn.write_every == 0:
            self.churn.put_latencies.append(now - self.sent_at)
        expected = f"v{self.cid}.{self.n - self.n % self.churn.write_every}".encode()
        if status != 200 or (self.n % self.churn.write_every and body != expected):
            self._fail(f"request {self.n}: HTTP {status} {body[:40]!r}")
            return
        if self.n % self.churn.write_every == 0:
            self.churn.writes[self.key] = expected.decode()
        self.churn.requests_ok += 1
        self.n += 1
        if self.idle:
            if self.n >= 2:
                self._finish(True)
            else:
                self.timer = self.loop.call_later(self.idle, self._send)  # a silent connection
        elif now >= self.end:
            self._finish(True)
        else:
            # Requests start every --interval (at once when an answer came late); with
            # --pacing after-answer the interval counts from the answer instead.
            start = self.sent_at if self.churn.fixed_pacing else now
            delay = max(0.0, start + self.churn.interval - now)
            self.timer = self.loop.call_later(delay, self._send)

    def _fail(self, why: str) -> None:
        churn = self.churn
        churn.errors.append(f"{self.cid}: {why}"[:200])
        churn.broken_at.append(round(time.monotonic() - churn.started, 1))
        churn.broken_detail.append(
            {
                "cid": self.cid,
                "port": self.port,
                "opened_s": round(self.opened_at - churn.started, 2),
                "broken_s": round(time.monotonic() - churn.started, 2),
                "answered": self.n,
            }
        )
        self._finish(False)

    def _finish(self, ok: bool) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(ok)


async def _connection(churn: Churn, cid: str, lifetime: float, idle: float) -> bool:
    loop = asyncio.get_running_loop()
    conn = Connection(churn, cid, lifetime, idle)
    try:
        await asyncio.wait_for(
            loop.create_connection(lambda: conn, churn.host, churn.port), churn.timeout
        )
    except (OSError, TimeoutError) as exc:
        churn.errors.append(f"{cid}: connect: {type(exc).__name__}: {exc}"[:200])
        churn.broken_at.append(round(time.monotonic() - churn.started, 1))
        return False
    return await conn.done


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    host, port = args.target.rsplit(":", 1)
    churn = Churn(
        host, int(port), args.timeout, args.interval, args.write_every, args.pacing == "fixed"
    )
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def one(cid: str, idle: float) -> None:
        ok = await _connection(churn, cid, args.lifetime, idle)
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
    started = churn.started
    while not stop.is_set():
        churn.opened += 1
        tasks.append(asyncio.create_task(one(str(churn.opened), 0.0)))
        next_open = started + churn.opened * args.open_every
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, next_open - time.monotonic()))
    await asyncio.gather(*tasks)
    reader_task.cancel()
    elapsed = max(time.monotonic() - churn.started, 1e-9)  # before the read-back
    lost = await asyncio.to_thread(verify_writes, host, int(port), churn.writes, 60.0)
    lat = churn.latencies
    return {
        "connections_opened": churn.opened,
        "connections_broken": churn.broken,
        "idle_connections": churn.idle_opened,
        "idle_broken": churn.idle_broken,
        "requests_ok": churn.requests_ok,
        "requests_sent": churn.requests_sent,
        # Offered (sent) and served (answered) rates over the client's whole run.
        "requests_per_s": {
            "offered": round(churn.requests_sent / elapsed, 1),
            "served": round(churn.requests_ok / elapsed, 1),
        },
        "writes_acked": len(churn.writes),
        "writes_lost": len(lost),
        "lost_keys": lost[:20],
        "latency_ms": {
            "p50": _percentile(lat, 0.5),
            "p99": _percentile(lat, 0.99),
            "max": _percentile(lat, 1.0),
            "put_p50": _percentile(churn.put_latencies, 0.5),
            "put_p99": _percentile(churn.put_latencies, 0.99),
        },
        "broken_at_s": churn.broken_at[:50],
        "errors": churn.errors[:20],
        "broken_detail": churn.broken_detail[:50],
        "started_monotonic": churn.started,
        "ports": churn.ports,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.churn_client", description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--open-every", type=float, default=0.1)
    parser.add_argument("--lifetime", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--write-every", type=int, default=2, help="every Nth request a PUT")
    parser.add_argument("--idle-silence", type=float, default=60.0)
    parser.add_argument(
        "--pacing",
        choices=["fixed", "after-answer"],
        default="fixed",
        help="a request every --interval, or --interval after each answer",
    )
    args = parser.parse_args(argv)
    if args.write_every < 1:
        parser.error("--write-every must be at least 1")
    summary = asyncio.run(run(args))
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
