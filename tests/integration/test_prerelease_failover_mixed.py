"""COLO++ failover under read-mostly load, one test per protocol (HTTP to kvd, RESP to Redis).

The pair runs colopp's comparator with pre-release scoped by key (``/kv/{key}`` and Redis
keys) and a semi-active secondary. Client connections (sockets made in the client namespace,
driven from threads) each own a few keys: 5% of their requests write the next version of one
of them, the rest read any key. The primary is SIGKILLed while answers are being
pre-released. Afterwards: no request failed, no connection broke, every acknowledged write is
held by the promoted secondary (0 lost), and every answer a client ever got is consistent
with what the promoted secondary holds: a read never saw a version newer than the one the
secondary holds for its key, nor a version that was never written.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest_pairs import Driven, driven_pair
from netns_client import socket_in_netns

from colopp.colo.state import PairState
from colopp.lab import Node
from colopp.polling import wait_until

CONNECTIONS = 3
KEYS_PER_CONNECTION = 4
WRITE_SHARE = 0.05


@pytest.fixture
def site(qemu_root: Path, tmp_path: Path) -> Iterator[Driven]:
    """A fresh pair per test: a failover leaves the pair unprotected."""
    yield from driven_pair(
        tmp_path,
        qemu_root,
        "clpprk",
        prerelease="auto",
        read_prefixes=("/kv/",),
        resp_ports=(6379,),
        prerelease_scope="key",
        semiactive=True,
    )


class Protocol:
    """One request/answer exchange on a blocking socket."""

    port = 0

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.seen = bytearray()  # every byte received, for the failure report
        self.asked: list[str] = []  # every request sent, for the failure report

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.buf += data
        self.seen += data

    def report(self) -> str:
        """The connection's last requests and bytes (what a failure report shows)."""
        return f"last requests {self.asked[-6:]}, last bytes {bytes(self.seen[-300:])!r}"

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self.buf) < size:
            self._fill()
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    def put(self, key: str, value: str) -> None:
        raise NotImplementedError

    def get(self, key: str) -> str | None:
        raise NotImplementedError


class Http(Protocol):
    port = 80

    def _answer(self) -> tuple[int, bytes]:
        status = int(self._line().split(b" ")[1])
        length = 0
        while line := self._line():
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, self._exactly(length)

    def put(self, key: str, value: str) -> None:
        self.asked.append(f"PUT {key} {value}")
        body = value.encode()
        head = f"PUT /kv/{key} HTTP/1.1\r\nHost: g\r\nContent-Length: {len(body)}\r\n\r\n"
        self.sock.sendall(head.encode() + body)
        status, _ = self._answer()
        if not 200 <= status < 300:
            raise AssertionError(f"PUT {key}: {status}")

    def get(self, key: str) -> str | None:
        self.asked.append(f"GET {key}")
        self.sock.sendall(f"GET /kv/{key} HTTP/1.1\r\nHost: g\r\n\r\n".encode())
        status, body = self._answer()
        if status == 404:
            return None
        if status != 200:
            raise AssertionError(f"GET {key}: {status}")
        return body.decode()


class Resp(Protocol):
    port = 6379

    @staticmethod
    def command(*args: str) -> bytes:
        out = f"*{len(args)}\r\n"
        for arg in args:
            out += f"${len(arg)}\r\n{arg}\r\n"
        return out.encode()

    def put(self, key: str, value: str) -> None:
        self.asked.append(f"SET {key} {value}")
        self.sock.sendall(self.command("SET", key, value))
        line = self._line()
        if line != b"+OK":
            raise AssertionError(f"SET {key}: {line!r}")

    def get(self, key: str) -> str | None:
        self.asked.append(f"GET {key}")
        self.sock.sendall(self.command("GET", key))
        line = self._line()
        if not line.startswith(b"$"):
            raise AssertionError(f"GET {key}: {line!r}")
        size = int(line[1:])
        if size < 0:
            return None
        value = self._exactly(size + 2)[:-2]
        return value.decode()


@dataclass
class Record:
    """What the clients saw."""

    acked: dict[str, int] = field(default_factory=dict)  # key -> last acknowledged version
    sent: dict[str, int] = field(default_factory=dict)  # key -> last version sent
    reads: list[tuple[str, int]] = field(default_factory=list)  # (key, version seen)
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def version(value: str | None) -> int:
    return 0 if value is None else int(value.split(":")[1])


def client(
    proto: Protocol, index: int, keys: list[str], record: Record, stop: threading.Event
) -> None:
    rng = random.Random(index)
    mine = [k for k in keys if k.startswith(f"c{index}-")]
    try:
        while not stop.is_set():
            if rng.random() < WRITE_SHARE:
                key = rng.choice(mine)
                with record.lock:
                    v = record.sent.get(key, 0) + 1
                    record.sent[key] = v
                proto.put(key, f"{key}:{v}:" + "x" * 32)
                with record.lock:
                    record.acked[key] = v
            else:
                key = rng.choice(keys)
                seen = version(proto.get(key))
                with record.lock:
                    record.reads.append((key, seen))
            with record.lock:
                record.requests += 1
    except Exception as exc:  # any failure is a failed request (asserted on)
        with record.lock:
            record.failures.append(
                f"connection {index}: {type(exc).__name__}: {exc}; {proto.report()}"
            )


def counters(site: Driven) -> dict[str, Any]:
    status = site.run(site.sp.pair.agents[site.sp.pair.primary.name].call("status"))
    found: dict[str, Any] = status["comparator"]["counters"]
    return found


@pytest.mark.parametrize("protocol", [Http, Resp], ids=["http", "resp"])
def test_failover_keeps_pre_released_answers_consistent(
    site: Driven, protocol: type[Protocol]
) -> None:
    sp = site.sp
    netns = sp.plan.netns(Node.CLIENT)
    address = (str(sp.plan.guest_address.ip), protocol.port)
    keys = [f"c{c}-k{i}" for c in range(CONNECTIONS) for i in range(KEYS_PER_CONNECTION)]
    protos = [protocol(socket_in_netns(netns, address, 15.0)) for _ in range(CONNECTIONS)]
    record = Record()
    last: dict[str, Any] = {}
    for key in keys:  # every key exists before the read-mostly load starts
        protos[0].put(key, f"{key}:1:seed")
        record.sent[key] = record.acked[key] = 1
    site.run(sp.next_checkpoint())
    stop = threading.Event()
    threads = [
        threading.Thread(target=client, args=(p, i, keys, record, stop), daemon=True)
        for i, p in enumerate(protos)
    ]
    old_primary, secondary = sp.pair.primary, sp.pair.secondary
    assert secondary is not None
    for t in threads:
        t.start()
    try:
        sp.supervise(site.loop)
        site.run(sp.heartbeats())
        before = counters(site)["pre_released_frames"]
        wait_until(
            "answers pre-released", lambda: counters(site)["pre_released_frames"] > before + 20, 60
        )
        pid = site.run(sp.pair.agents[old_primary.name].call("status"))["pid"]
        last = counters(site)  # the comparator's counters just before the kill (reported)
        os.kill(pid, signal.SIGKILL)
        print("prerelease_mismatches before the kill:", last.get("prerelease_mismatches"))
        site.run(sp.wait_for("failover", lambda: sp.handled(1) and sp.pair.secondary is None, 60))
        served = record.requests
        wait_until(
            "answers from the promoted secondary", lambda: record.requests > served + 100, 60
        )
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        for p in protos:
            p.sock.close()
    assert record.failures == [], f"comparator counters before the kill: {last}"
    assert record.reads, "no read answered"
    incident = sp.incidents[0]
    assert incident.error is None and incident.host == old_primary.name
    # What the promoted secondary holds now, read on a fresh connection.
    with socket_in_netns(netns, address, 15.0) as sock:
        check = protocol(sock)
        held = {key: version(check.get(key)) for key in keys}
    lost = {k: (record.acked[k], held[k]) for k in keys if held[k] < record.acked[k]}
    assert lost == {}, "acknowledged writes lost"
    never = {k: held[k] for k in keys if held[k] > record.sent[k]}
    assert never == {}, "versions that were never written"
    newer = [(k, v) for k, v in record.reads if v > held[k] or v < 1]
    assert newer == [], "answers the promoted secondary's state never held"
    assert sp.pair.state is not PairState.ERROR
