"""Open- and closed-loop load for the pair bench: HTTP keep-alive (kvd's ``/kv/``) and RESP.

``python -m bench.loadgen --proto http|resp --host H --port P --connections N
[--rate R | --closed] --duration S --put-ratio F --keys K --value-size B [--prefill]``
prints one JSON object.

**Open loop** (``--rate R``, wrk2-style): request *i* of connection *c* is due at
``start + (i + c / N) * N / R``, whatever happened before. A connection sends one request
at a time (keep-alive, no pipelining); a request that could not be sent on time because the
connection still waited for an earlier answer is sent late, but its latency is measured from
its *scheduled* time, so a stall shows up in every request it delayed (coordinated omission
counted). **Closed loop** (``--closed``): each connection sends its next request as soon as
the previous answer arrived; latency from the actual send.

Requests: GET (or RESP ``GET``) of a random key, or with probability ``--put-ratio`` a PUT
(``SET``) of a value of ``--value-size`` bytes. ``--prefill`` first writes every key once
(not measured). Output: ``requests``, ``reads``, ``writes``, ``errors`` (connection failures,
unexpected statuses or replies), ``rps``, ``offered_rps``, ``p50_ms``, ``p99_ms``,
``p999_ms``, ``max_ms``, ``late_sends`` (open loop: requests sent after their due time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

#: How long to wait for one answer before counting the connection failed.
ANSWER_TIMEOUT_S = 10.0


@dataclass
class Workload:
    """What to send: protocol, mix, keys, values."""

    proto: str
    put_ratio: float
    keys: int
    value_size: int

    def request(self, rng: random.Random) -> tuple[bytes, bool]:
        """One request's bytes and whether it is a write."""
        key = f"k{rng.randrange(self.keys)}"
        write = rng.random() < self.put_ratio
        return self.encode(key, write), write

    def encode(self, key: str, write: bool) -> bytes:
        value = b"v" * self.value_size
        if self.proto == "resp":
            if write:
                return resp_command(b"SET", key.encode(), value)
            return resp_command(b"GET", key.encode())
        if write:
            head = f"PUT /kv/{key} HTTP/1.1\r\nHost: g\r\nContent-Length: {len(value)}\r\n\r\n"
            return head.encode() + value
        return f"GET /kv/{key} HTTP/1.1\r\nHost: g\r\n\r\n".encode()


def resp_command(*args: bytes) -> bytes:
    """A RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out += [b"$%d\r\n" % len(arg), arg, b"\r\n"]
    return b"".join(out)


class BadAnswer(Exception):
    """The server answered something this client does not expect."""


async def read_http(reader: asyncio.StreamReader) -> int:
    """Read one HTTP response; its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise BadAnswer(f"not an HTTP status line: {lines[0][:60]!r}")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return int(parts[1])


async def read_resp(reader: asyncio.StreamReader) -> bool:
    """Read one RESP reply; False for an error reply."""
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b":"):
        return True
    if kind == b"-":
        return False
    if kind == b"$":
        size = int(rest)
        if size >= 0:
            await reader.readexactly(size + 2)
        return True
    if kind == b"*":
        ok = True
        for _ in range(max(0, int(rest))):
            ok &= await read_resp(reader)
        return ok
    raise BadAnswer(f"not a RESP reply: {line[:60]!r}")


@dataclass
class Tally:
    """What one run measured."""

    latencies: list[float] = field(default_factory=list)
    reads: int = 0
    writes: int = 0
    errors: int = 0
    late_sends: int = 0
    error_samples: list[str] = field(default_factory=list)

    def error(self, why: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(why)


async def connection(
    index: int,
    args: argparse.Namespace,
    workload: Workload,
    tally: Tally,
    start: float,
    stop: float,
) -> None:
    """One keep-alive connection's share of the load until ``stop``."""
    rng = random.Random(args.seed * 1000 + index)
    reader, writer = await asyncio.open_connection(args.host, args.port)
    loop = asyncio.get_running_loop()
    interval = args.connections / args.rate if args.rate else 0.0
    due = start + index * interval / args.connections if args.rate else start
    try:
        while True:
            now = loop.time()
            if args.rate:
                if due >= stop:
                    return
                if due > now:
                    await asyncio.sleep(due - now)
                elif now - due > 0.001:
                    tally.late_sends += 1
                origin = due
                due += interval
            else:
                if now >= stop:
                    return
                origin = now
            data, write = workload.request(rng)
            writer.write(data)
            try:
                ok = await asyncio.wait_for(answer(reader, args.proto), ANSWER_TIMEOUT_S)
            except (BadAnswer, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
                tally.error(f"{type(exc).__name__}: {exc}")
                return
            tally.latencies.append(loop.time() - origin)
            if write:
                tally.writes += 1
            else:
                tally.reads += 1
            if not ok:
                tally.error("error status or reply")
    finally:
        writer.close()


async def answer(reader: asyncio.StreamReader, proto: str) -> bool:
    """Read one answer; True when it is a success (HTTP 2xx, or a non-error RESP reply)."""
    if proto == "resp":
        return await read_resp(reader)
    return 200 <= await read_http(reader) < 300


async def prefill(args: argparse.Namespace, workload: Workload) -> None:
    """Write every key once on one connection."""
    reader, writer = await asyncio.open_connection(args.host, args.port)
    try:
        for key in range(workload.keys):
            writer.write(workload.encode(f"k{key}", True))
            if not await asyncio.wait_for(answer(reader, args.proto), ANSWER_TIMEOUT_S):
                raise BadAnswer(f"prefill of k{key} refused")
    finally:
        writer.close()


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (0 when empty)."""
    if not values:
        return 0.0
    rank = min(len(values) - 1, max(0, int(fraction * len(values) + 0.5) - 1))
    return values[rank]


def summary(tally: Tally, args: argparse.Namespace, elapsed: float) -> dict[str, Any]:
    """The JSON the bench reads."""
    lat = sorted(tally.latencies)
    return {
        "proto": args.proto,
        "mode": "open" if args.rate else "closed",
        "connections": args.connections,
        "offered_rps": args.rate,
        "duration_s": elapsed,
        "requests": len(lat),
        "reads": tally.reads,
        "writes": tally.writes,
        "errors": tally.errors,
        "error_samples": tally.error_samples,
        "late_sends": tally.late_sends,
        "rps": len(lat) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(lat, 0.50) * 1000,
        "p90_ms": percentile(lat, 0.90) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "p999_ms": percentile(lat, 0.999) * 1000,
        "max_ms": (lat[-1] if lat else 0.0) * 1000,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole run: prefill, then the measured window."""
    workload = Workload(args.proto, args.put_ratio, args.keys, args.value_size)
    if args.prefill:
        await prefill(args, workload)
    tally = Tally()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    stop = start + args.duration
    tasks = [connection(i, args, workload, tally, start, stop) for i in range(args.connections)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            tally.error(f"{type(result).__name__}: {result}")
    return summary(tally, args, max(loop.time(), stop) - start)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    p.add_argument("--proto", choices=("http", "resp"), default="http")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int)
    p.add_argument("--connections", type=int, default=8)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rate", type=float, help="open loop: offered requests per second")
    mode.add_argument("--closed", action="store_true", help="closed loop: as fast as answered")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--put-ratio", type=float, default=0.05)
    p.add_argument("--keys", type=int, default=64)
    p.add_argument("--value-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--prefill", action="store_true")
    args = p.parse_args(argv)
    if args.port is None:
        args.port = 6379 if args.proto == "resp" else 80
    if args.rate is not None and args.rate <= 0:
        p.error("--rate must be positive")
    if args.connections < 1 or args.keys < 1 or not 0 <= args.put_ratio <= 1:
        p.error("--connections and --keys must be >= 1, --put-ratio within 0..1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    try:
        result = asyncio.run(run(args))
    except (OSError, BadAnswer) as exc:
        print(json.dumps({"fatal": f"{type(exc).__name__}: {exc}"}))
        return 1
    result["wall_s"] = time.monotonic() - started
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
