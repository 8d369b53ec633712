"""A client workload for the guest's HTTP key-value service, run inside the client namespace.

``python -m colopp.demo.workload --target 198.18.0.100:80 --connections 4``

Each connection is one long-lived HTTP/1.1 keep-alive TCP connection that loops: PUT a new
key, GET it back, POST the in-RAM counter. A write counts as acknowledged when its PUT got
200. On stdin, ``mark`` records a wall-clock mark (the demo writes it right after killing
the primary) and ``stop`` (or EOF) ends the run; then every acknowledged write is read
back, over as many fresh connections. ``--read-only SEED`` is read-mostly instead: each connection
PUTs SEED keys once, then only GETs them (what COLO++ pre-release speeds up). One JSON
object per line goes to stdout: ``{"type": "stats", ...}`` every half second and a final
``{"type": "summary", ...}``.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESET_ERRORS = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


@dataclass
class Tally:
    """Counters shared by the connection threads (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: int = 0
    failed: int = 0
    resets: int = 0
    reads: int = 0
    writes_acked: dict[str, str] = field(default_factory=dict)
    last_acked: dict[int, str] = field(default_factory=dict)
    read_mismatch: int = 0
    counter_regressions: int = 0
    completions: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # (when it failed, wall clock; the error) for the first 200 failures
    failures: list[tuple[float, str]] = field(default_factory=list)
    # (connection, method, sent at, answered or failed at, "ok" or the error) when traced
    trace: list[tuple[int, str, float, float, str]] | None = None

    def success(self) -> None:
        with self.lock:
            self.ok += 1
            self.completions.append(time.time())

    def acked(self, cid: int, key: str, value: str) -> None:
        """A write of ``value`` to ``key`` was acknowledged (counted as a success)."""
        with self.lock:
            self.writes_acked[key] = value
            self.last_acked[cid] = key
        self.success()

    def read(self, status: int, body: bytes, value: str) -> None:
        """A read answered; it must be ``value`` (counted as a success either way)."""
        with self.lock:
            self.reads += 1
            if status != 200 or body != value.encode():
                self.read_mismatch += 1
        self.success()

    def failure(self, exc: BaseException, reset: bool) -> None:
        with self.lock:
            self.failed += 1
            self.resets += int(reset)
            if len(self.errors) < 20:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            if len(self.failures) < 200:
                self.failures.append((time.time(), f"{type(exc).__name__}: {exc}"))


def _request(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes]:
    headers = {"Content-Length": str(len(body))} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def _traced(
    tally: Tally,
    cid: int,
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
) -> tuple[int, bytes]:
    """:func:`_request`, timed into ``tally.trace`` when the run is traced."""
    if tally.trace is None:
        return _request(conn, method, path, body)
    sent = time.time()
    try:
        answer = _request(conn, method, path, body)
    except BaseException as exc:
        tally.trace.append((cid, method, sent, time.time(), type(exc).__name__))
        raise
    tally.trace.append((cid, method, sent, time.time(), "ok"))
    return answer


def _expect_ok(status: int, what: str) -> None:
    if status != 200:
        raise RuntimeError(f"{what} -> {status}")


def run_connection(
    cid: int, host: str, port: int, stop: threading.Event, tally: Tally, timeout: float
) -> None:
    """One client connection's loop; reconnects (counting a reset) if the connection breaks."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    i = 0
    last_counter = -1
    while not stop.is_set():
        i += 1
        key, value = f"c{cid}-{i}", f"value-{cid}-{i}-" + "x" * (i % 64)
        try:
            put = _traced(tally, cid, conn, "PUT", f"/kv/{key}", value.encode())
            _expect_ok(put[0], f"PUT {key}")
            tally.acked(cid, key, value)
            tally.read(*_traced(tally, cid, conn, "GET", f"/kv/{key}"), value)
            status, body = _traced(tally, cid, conn, "POST", "/counter", b"")
            _expect_ok(status, "POST /counter")
            counter = int(body.strip() or b"-1")
            with tally.lock:
                tally.counter_regressions += int(counter <= last_counter)
            last_counter = counter
            tally.success()
        except RESET_ERRORS as exc:
            tally.failure(exc, reset=True)
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        except (OSError, RuntimeError, ValueError, http.client.HTTPException) as exc:
            tally.failure(exc, reset=False)
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.close()


def run_reader(
    cid: int,
    host: str,
    port: int,
    stop: threading.Event,
    tally: Tally,
    timeout: float,
    seed: int,
) -> None:
    """Read-mostly: PUT ``seed`` keys once, then only GET them back (at random).

    Every answer must be the bytes that were written (``read_mismatch`` otherwise): the
    keys never change, so any other answer, before or after a failover, contradicts the
    state the service had acknowledged.
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    mine: list[tuple[str, str]] = []
    rng = random.Random(cid)  # noqa: S311 - picks which key to read, not a secret
    while not stop.is_set():
        try:
            if len(mine) < seed:
                key, value = f"r{cid}-{len(mine)}", f"read-mostly-{cid}-{len(mine)}"
                _expect_ok(_request(conn, "PUT", f"/kv/{key}", value.encode())[0], f"PUT {key}")
                mine.append((key, value))
                tally.acked(cid, key, value)
                continue
            key, value = rng.choice(mine)
            tally.read(*_request(conn, "GET", f"/kv/{key}"), value)
        except RESET_ERRORS as exc:
            tally.failure(exc, reset=True)
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        except (OSError, RuntimeError, http.client.HTTPException) as exc:
            tally.failure(exc, reset=False)
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.close()


def _verify_some(
    host: str, port: int, writes: list[tuple[str, str]], timeout: float, lost: list[str]
) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    for key, value in writes:
        for attempt in range(3):
            try:
                status, body = _request(conn, "GET", f"/kv/{key}")
                if status != 200:
                    lost.append(f"{key}: HTTP {status}")
                elif body != value.encode():
                    lost.append(f"{key}: other bytes ({len(body)} B)")
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
                if attempt == 2:
                    lost.append(f"{key}: unreadable ({exc!r})")
    conn.close()


def verify_writes(
    host: str, port: int, writes: dict[str, str], timeout: float, connections: int = 1
) -> list[str]:
    """Read every acknowledged write back; returns ``key: why`` for each missing or wrong one.

    ``connections`` fresh connections share the keys (each reads every ``connections``-th):
    one connection reads back at one replicated round trip per key, which for the thousands
    of writes a long run acknowledges takes minutes.
    """
    items = list(writes.items())
    shares: list[list[str]] = [[] for _ in range(max(1, connections))]
    threads = [
        threading.Thread(
            target=_verify_some,
            args=(host, port, items[i :: len(shares)], timeout, shares[i]),
            daemon=True,
        )
        for i in range(len(shares))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [why for share in shares for why in share]


def outage_around(completions: list[float], mark: float | None) -> float | None:
    """Milliseconds between the last success before ``mark`` and the first after it."""
    if mark is None:
        return None
    before = [t for t in completions if t <= mark]
    after = [t for t in completions if t > mark]
    if not after:
        return None
    start = max(before) if before else mark
    return (min(after) - start) * 1000.0


def max_gap_between(completions: list[float], start: float, end: float) -> float | None:
    """The longest time (ms) without a success that overlaps ``[start, end]``: from the
    last success before ``start`` through those inside to the first after ``end``."""
    times = sorted(completions)
    before = [t for t in times if t < start]
    after = [t for t in times if t > end]
    if not after:
        return None
    points = [max(before) if before else start]
    points += [t for t in times if start <= t <= end] + [min(after)]
    return max(b - a for a, b in itertools.pairwise(points)) * 1000.0


def gap_at(completions: list[float], start: float, end: float) -> float | None:
    """Where (ms after ``start``) the longest gap of :func:`max_gap_between` begins."""
    gap = max_gap_between(completions, start, end)
    if gap is None:
        return None
    times = sorted(completions)
    for a, b in itertools.pairwise(times):
        if abs((b - a) * 1000.0 - gap) < 1e-6 and b >= start and a <= end:
            return (a - start) * 1000.0
    return 0.0


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Run the workload until ``stop``/EOF on stdin or ``--duration`` seconds."""
    parser = argparse.ArgumentParser(prog="colopp-workload")
    parser.add_argument(
        "--target", default="198.18.0.100:80", help="HOST:PORT ([ADDR]:PORT for IPv6)"
    )
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--duration", type=float, default=3600.0)
    parser.add_argument("--timeout", type=float, default=15.0)
    parser.add_argument(
        "--read-only",
        type=int,
        metavar="SEED",
        help="read-mostly: each connection PUTs SEED keys, then only GETs them",
    )
    parser.add_argument(
        "--writes-out", type=Path, help="write every acknowledged key and value here (JSON)"
    )
    parser.add_argument(
        "--trace-out", type=Path, help="write each request's send and answer times here (JSON)"
    )
    args = parser.parse_args(argv)
    host, _, port_text = args.target.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # an IPv6 address in brackets
    port = int(port_text)
    stop, tally = threading.Event(), Tally()
    if args.trace_out is not None:
        tally.trace = []
    marks: list[float] = []

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "mark":
                marks.append(time.time())
            elif line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=read_stdin, daemon=True).start()
    workers = [
        threading.Thread(target=run_connection, args=(c, host, port, stop, tally, args.timeout))
        if args.read_only is None
        else threading.Thread(
            target=run_reader, args=(c, host, port, stop, tally, args.timeout, args.read_only)
        )
        for c in range(args.connections)
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + args.duration
    while not stop.wait(0.5):
        with tally.lock:
            _emit(
                {
                    "type": "stats",
                    "ok": tally.ok,
                    "failed": tally.failed,
                    "resets": tally.resets,
                    "writes_acked": len(tally.writes_acked),
                    "reads": tally.reads,
                    # Seconds since a request last succeeded: where a stall began.
                    "idle_s": round(time.time() - tally.completions[-1], 1)
                    if tally.completions
                    else None,
                }
            )
        if time.monotonic() > deadline:
            stop.set()
    for worker in workers:
        worker.join(args.timeout + 5)
    lost = verify_writes(
        host, port, dict(tally.writes_acked), args.timeout, max(1, args.connections)
    )
    if args.writes_out is not None:
        args.writes_out.write_text(json.dumps(tally.writes_acked))
    if args.trace_out is not None:
        args.trace_out.write_text(json.dumps({"marks": marks, "requests": tally.trace}))
    _emit(
        {
            "type": "summary",
            "requests_ok": tally.ok,
            "requests_failed": tally.failed,
            "connections_reset": tally.resets,
            "writes_acked": len(tally.writes_acked),
            "writes_lost": len(lost),
            "lost_keys": lost[:20],
            "last_acked_per_connection": sorted(tally.last_acked.values()),
            "reads": tally.reads,
            "read_mismatch": tally.read_mismatch,
            "counter_regressions": tally.counter_regressions,
            "failover_outage_ms": outage_around(tally.completions, marks[0] if marks else None),
            "outages_ms": [outage_around(tally.completions, mark) for mark in marks],
            # Between marks 2k and 2k+1 (a window such as a re-protection): the longest gap.
            "window_gap_at_ms": [
                gap_at(tally.completions, a, b)
                for a, b in zip(marks[::2], marks[1::2], strict=False)
            ],
            "window_gaps_ms": [
                max_gap_between(tally.completions, a, b)
                for a, b in zip(marks[::2], marks[1::2], strict=False)
            ],
            "errors": tally.errors,
            "failures": tally.failures,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
