"""CPU per request of the real comparator and relay processes, with and without pre-release.

``python -m bench.prerelease_chain [--requests N] [--order secondary-first|primary-first]
[--json FILE]``

Issue 15 item 6: what pre-release costs the primary host (the comparator process) and the
secondary host (the ingress relay), measured on the processes the lab runs, over unix sockets,
with no QEMU and no guest: this process plays both QEMUs and the client. Per request (8
keep-alive connections, 64 keys, HTTP GETs of ``/kv/kN``) it writes, with a short pause
between steps so that each is its own wake-up as in the lab:

1. the client's request: to the comparator's client copy (``client_in``) and, with
   pre-release, to the relay's mirror (which logs it, forwards it to the secondary QEMU and
   sends the comparator a receipt), else straight on;
2. the guest's answer from the secondary (through the relay with pre-release) and from the
   primary, in ``--order`` (``secondary-first``: the common case measured open loop, the
   answer is matched on arrival; ``primary-first``: it leaves early);
3. the client's ACK of the answer (client copy and mirror).

``colopp`` is configuration (c) (no client copy, no relay), ``prerelease`` is (d) (the
agent's options: ``--prerelease=auto``, the ``/kv/`` prefix, key scope, ``--client-in``,
``--host-receipts``, the relay with receipts). Reported: each process's CPU (``/proc``, both
ends of the feeding phase) per request, and how long the comparator took to release each
primary answer (written to ``primary_in`` until read back from ``outdev``; the process is
otherwise idle, so this is its own path length). The comparator's counters are checked:
every answer released, 0 pre-release mismatches.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.pair_stats import proc_cpu_seconds
from bench.prerelease_cost import ANSWER, CONNECTIONS, frame
from colopp.compare.framing import encode_frame

PAUSE_S = 0.0003
CONFIGS = ("colopp", "prerelease")


def request_frames(count: int) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(client request, guest answer, client ACK) per request, connections in turn."""
    c_seq, g_seq = [1000] * CONNECTIONS, [5000] * CONNECTIONS
    for i in range(count):
        conn, port = i % CONNECTIONS, 40000 + i % CONNECTIONS
        body = f"GET /kv/k{i % 64} HTTP/1.1\r\nHost: g\r\n\r\n".encode()
        req = frame(c_seq[conn], g_seq[conn], 0x18, body, True, port)
        c_seq[conn] += len(body)
        answer = frame(g_seq[conn], c_seq[conn], 0x18, ANSWER, False, port)
        g_seq[conn] += len(ANSWER)
        yield req, answer, frame(c_seq[conn], g_seq[conn], 0x10, b"", True, port)


def _listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    sock.settimeout(30)
    return sock


def _connect(path: Path) -> socket.socket:
    deadline = time.monotonic() + 30
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sink(sock: socket.socket) -> None:
    """Read and discard (the secondary QEMU's red0)."""
    with contextlib.suppress(OSError):
        while sock.recv(1 << 16):
            pass


def _read_exactly(sock: socket.socket, size: int) -> None:
    got = 0
    while got < size:
        got += len(sock.recv(size - got))


def _cpu(pid: int) -> float:
    return proc_cpu_seconds(Path(f"/proc/{pid}/stat").read_text(), os.sysconf("SC_CLK_TCK"))


def run(config: str, count: int, order: str, profile: Path | None = None) -> dict[str, Any]:
    """One configuration: start the processes, feed ``count`` requests, measure (with
    ``profile``: under cProfile, each process's statistics written there)."""
    prerelease = config == "prerelease"

    def python(name: str) -> list[str]:
        if profile is None:
            return [sys.executable]
        return [sys.executable, "-m", "cProfile", "-o", str(profile / f"{config}-{name}.prof")]

    with tempfile.TemporaryDirectory(prefix="clp-chain-") as tmp:
        d = Path(tmp)
        servers = {n: _listen(d / n) for n in ("primary", "outdev", "client", "mirror")}
        status = d / "compare.json"
        argv = [
            *python("comparator"), "-m", "colopp.compare", "--primary-in", f"unix:{d / 'primary'}",
            "--outdev", f"unix:{d / 'outdev'}", "--secondary-in", f"listen:unix:{d / 'sec'}",
            "--status", str(status), "--status-interval", "0.2", "--compare-timeout", "30",
            "--log-level", "WARNING",
        ]  # fmt: skip
        if prerelease:
            argv += [
                "--prerelease=auto", "--prerelease-read-prefix", "/kv/",
                "--prerelease-scope", "key", "--client-in", f"unix:{d / 'client'}",
                "--host-receipts",
            ]  # fmt: skip
        procs = [subprocess.Popen(argv)]
        try:
            if prerelease:
                relay = [
                    *python("relay"), "-m", "colopp.ingress",
                    "--mirror-from", f"unix:{d / 'mirror'}",
                    "--mirror-to", f"listen:unix:{d / 'red0'}",
                    "--output-from", f"listen:unix:{d / 'red1'}",
                    "--output-to", f"unix:{d / 'sec'}",
                ]  # fmt: skip
                procs.append(subprocess.Popen(relay))
            return _feed(procs, servers, d, status, count, order, prerelease)
        finally:
            for proc in procs:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
            for sock in servers.values():
                sock.close()


def _feed(
    procs: list[subprocess.Popen[bytes]],
    servers: dict[str, socket.socket],
    d: Path,
    status: Path,
    count: int,
    order: str,
    prerelease: bool,
) -> dict[str, Any]:
    primary = servers["primary"].accept()[0]
    outdev = servers["outdev"].accept()[0]
    outdev.settimeout(20)  # a frame that never comes fails the run, not hangs it
    client = mirror = None
    if prerelease:
        client = servers["client"].accept()[0]
        mirror = servers["mirror"].accept()[0]
        red0 = _connect(d / "red0")
        threading.Thread(target=_sink, args=(red0,), daemon=True).start()
        secondary = _connect(d / "red1")
    else:
        secondary = _connect(d / "sec")
    time.sleep(1.0)  # every connection made on both ends
    for port in range(40000, 40000 + CONNECTIONS):  # the handshakes, as the lab's
        syn = frame(999, 0, 0x02, b"", True, port)
        for sock in (client, mirror):
            if sock is not None:
                sock.sendall(encode_frame(syn))
        time.sleep(PAUSE_S)
        syn_ack = frame(4999, 1000, 0x12, b"", False, port)
        secondary.sendall(encode_frame(syn_ack))
        time.sleep(PAUSE_S)
        primary.sendall(encode_frame(syn_ack))
        _read_exactly(outdev, 4 + len(syn_ack))
        ack = frame(1000, 5000, 0x10, b"", True, port)
        for sock in (client, mirror):
            if sock is not None:
                sock.sendall(encode_frame(ack))
    time.sleep(0.3)
    frames = list(request_frames(count))
    pids = {"comparator": procs[0].pid, **({"relay": procs[1].pid} if prerelease else {})}
    before = {name: _cpu(pid) for name, pid in pids.items()}
    released = 0
    waits: list[float] = []
    for req, answer, ack in frames:
        for sock in (client, mirror):
            if sock is not None:
                sock.sendall(encode_frame(req))
        time.sleep(PAUSE_S)
        if order == "secondary-first":
            secondary.sendall(encode_frame(answer))
            time.sleep(PAUSE_S)
        sent = time.perf_counter()
        primary.sendall(encode_frame(answer))
        released += 4 + len(answer)
        _read_exactly(outdev, 4 + len(answer))
        waits.append(time.perf_counter() - sent)
        if order == "primary-first":
            time.sleep(PAUSE_S)
            secondary.sendall(encode_frame(answer))
        time.sleep(PAUSE_S)
        for sock in (client, mirror):
            if sock is not None:
                sock.sendall(encode_frame(ack))
        time.sleep(PAUSE_S)
    time.sleep(0.5)
    after = {name: _cpu(pid) for name, pid in pids.items()}
    time.sleep(0.5)  # one more status write
    counters = json.loads(status.read_text())
    waits.sort()
    return {
        "requests": count,
        "cpu_us_per_req": {n: round((after[n] - before[n]) * 1e6 / count, 1) for n in pids},
        "release_us": {
            "p50": round(statistics.median(waits) * 1e6, 1),
            "p99": round(waits[int(len(waits) * 0.99)] * 1e6, 1),
        },
        "released_frames": counters.get("released_frames"),
        "pre_released_frames": counters.get("pre_released_frames"),
        "matched_on_arrival": counters.get("matched_on_arrival"),
        "prerelease_mismatches": counters.get("prerelease_mismatches"),
        "host_receipts": counters.get("host_receipts"),
        "client_frames_in": counters.get("client_frames_in"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.prerelease_chain", description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--order", choices=("secondary-first", "primary-first"), action="append")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--profile", type=Path, help="run the processes under cProfile, here")
    args = parser.parse_args()
    result: dict[str, Any] = {"meta": {"requests": args.requests, "loadavg": os.getloadavg()}}
    for order in args.order or ["secondary-first", "primary-first"]:
        for config in args.configs.split(","):
            if config == "colopp" and order == "primary-first":
                continue  # nothing leaves early without pre-release: it would wait forever
            fig = run(config, args.requests, order, args.profile)
            result.setdefault(order, {})[config] = fig
            print(f"{order:16} {config:10} CPU us/req {fig['cpu_us_per_req']}  release "
                  f"{fig['release_us']}  early {fig['pre_released_frames']} mismatches "
                  f"{fig['prerelease_mismatches']}", flush=True)  # fmt: skip
    result["meta"]["loadavg_end"] = os.getloadavg()
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
