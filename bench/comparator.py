"""Comparator throughput: the pure core, and the socket shell as its own process.

``python -m bench.comparator --json FILE [--profile]``

Matched streams: primary and secondary send identical TCP streams (8 connections,
round-robin), so every primary frame is compared and released. Figures:

- ``core_frames_per_s_{64,1500}``: frames through the core (primary and secondary both count)
  per CPU-second of this process; ``core_pairs_per_s_*``: primary frames compared and released
  per CPU-second; ``*_wall``: the same over wall-clock time (lower when other work shares the
  CPU).
- ``shell_gbit_per_s_1500``: primary Ethernet bits released by ``python -m colopp.compare`` over
  unix sockets per CPU-second of the comparator process (pinned to one CPU, this driver to
  another when the machine has two); ``shell_gbit_per_s_1500_wall`` over wall-clock time.

Where the time goes (``--profile``, 1500-byte pairs, cProfile own time): nearly every frame
takes an in-order TCP fast path (``tcp_fast.primary_in_order`` for the primary,
``secondary_in_order`` for the secondary, whose bytes are compared against the waiting
head and never stored). The secondary's match ~20 %, plain IPv4/TCP parsing (one struct unpack,
no Packet object) ~18 %, the two feed_* entry points ~25 %, release bookkeeping (counters, hold
histogram, Release action) ~14 %, queueing the primary (HeldFrame) ~15 %. The shell adds
framing decode, one length header per released frame and one write per read.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from colopp.compare import Comparator, CompareConfig
from colopp.compare.framing import encode_frames

CONNECTIONS = 8
HEADERS = 54  # Ethernet + IPv4 + TCP without options
_GUEST = bytes([198, 18, 1, 10])
_CLIENT = bytes([198, 18, 0, 2])


def tcp_frame(seq: int, ack: int, payload: bytes, dport: int) -> bytes:
    """A guest->client TCP data frame (checksums left 0: the comparator does not check them)."""
    eth = bytes.fromhex("525400000002525400000001") + b"\x08\x00"
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, _GUEST, _CLIENT
    )
    tcp = struct.pack("!HHIIBBHHH", 80, dport, seq & 0xFFFFFFFF, ack, 0x50, 0x18, 65535, 0, 0)
    return eth + ip + tcp + payload


def matched_stream(frame_size: int, count: int) -> list[bytes]:
    """``count`` frames of ``frame_size`` bytes over CONNECTIONS connections, in send order."""
    payload_len = frame_size - HEADERS
    payload = bytes(i % 251 for i in range(payload_len))
    seqs = [1000 * (c + 1) for c in range(CONNECTIONS)]
    frames = []
    for i in range(count):
        conn = i % CONNECTIONS
        frames.append(tcp_frame(seqs[conn], 77, payload, 40000 + conn))
        seqs[conn] += payload_len
    return frames


def bench_core(frame_size: int, count: int, frames: list[bytes] | None = None) -> dict[str, float]:
    """Feed matched primary/secondary frames alternately; time the core alone."""
    frames = frames or matched_stream(frame_size, count)
    core = Comparator(CompareConfig(max_queue_frames=count + 1))
    start = time.perf_counter()
    cpu_start = time.process_time()
    for i, frame in enumerate(frames):
        core.feed_primary(frame, i * 1e-6)
        core.feed_secondary(frame, i * 1e-6)
    cpu = time.process_time() - cpu_start
    wall = time.perf_counter() - start
    assert core.counters.released_frames == count, core.snapshot()
    return {
        f"core_frames_per_s_{frame_size}": 2 * count / cpu,
        f"core_pairs_per_s_{frame_size}": count / cpu,
        f"core_gbit_per_s_{frame_size}": count * frame_size * 8 / cpu / 1e9,
        f"core_frames_per_s_{frame_size}_wall": 2 * count / wall,
    }


def profile_core(frame_size: int, count: int) -> str:
    """Top functions of the core's hot path (cProfile, by own time; frames built beforehand)."""
    frames = matched_stream(frame_size, count)
    profiler = cProfile.Profile()
    profiler.enable()
    bench_core(frame_size, count, frames)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    return out.getvalue()


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def _start_shell(tmp: Path) -> tuple[subprocess.Popen[bytes], socket.socket, socket.socket]:
    servers = {}
    for name in ("primary", "outdev"):
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(str(tmp / f"{name}.sock"))
        srv.listen(1)
        srv.settimeout(20)
        servers[name] = srv
    cpu = "0" if (os.cpu_count() or 1) > 1 else ""
    taskset = ["taskset", "-c", cpu] if cpu else []
    proc = subprocess.Popen(
        [
            *taskset,
            sys.executable,
            "-m",
            "colopp.compare",
            "--primary-in",
            f"unix:{tmp / 'primary.sock'}",
            "--outdev",
            f"unix:{tmp / 'outdev.sock'}",
            "--secondary-in",
            f"listen:unix:{tmp / 'secondary.sock'}",
            "--log-level",
            "WARNING",
            "--max-queue-frames",
            "1000000",
        ]
    )
    primary, _ = servers["primary"].accept()
    outdev, _ = servers["outdev"].accept()
    for srv in servers.values():
        srv.close()
    return proc, primary, outdev


def _connect_secondary(path: Path) -> socket.socket:
    deadline = time.monotonic() + 20
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def bench_shell(frame_size: int, count: int) -> dict[str, float]:
    """Push matched streams through ``python -m colopp.compare``; time the released bytes."""
    frames = matched_stream(frame_size, count)
    batch = 128
    chunks = [encode_frames(frames[i : i + batch]) for i in range(0, count, batch)]
    expected = sum(len(c) for c in chunks)
    with tempfile.TemporaryDirectory(prefix="colopp-bench-") as tmpdir:
        tmp = Path(tmpdir)
        proc, primary, outdev = _start_shell(tmp)
        secondary = _connect_secondary(tmp / "secondary.sock")
        _pin(1)

        def send() -> None:
            for chunk in chunks:
                primary.sendall(chunk)
                secondary.sendall(chunk)

        sender = threading.Thread(target=send)
        buf = bytearray(1 << 20)
        received = 0
        start = time.perf_counter()
        cpu_start = _cpu_seconds(proc.pid)
        sender.start()
        while received < expected:
            n = outdev.recv_into(buf)
            if not n:
                break
            received += n
        elapsed = time.perf_counter() - start
        cpu = _cpu_seconds(proc.pid) - cpu_start
        sender.join()
        proc.terminate()
        proc.wait(timeout=10)
        for sock in (primary, outdev, secondary):
            sock.close()
    assert received == expected, (received, expected)
    bits = count * frame_size * 8
    return {
        f"shell_frames_per_s_{frame_size}": count / cpu,
        f"shell_gbit_per_s_{frame_size}": bits / cpu / 1e9,
        f"shell_gbit_per_s_{frame_size}_wall": bits / elapsed / 1e9,
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    """Run every figure, print them, write --json."""
    parser = argparse.ArgumentParser(description="colopp comparator throughput")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--profile", action="store_true", help="print the core's hot spots")
    args = parser.parse_args()
    results: dict[str, float] = {}
    results |= bench_core(64, 300_000)
    results |= bench_core(1500, 200_000)
    results |= bench_shell(64, 300_000)
    results |= bench_shell(1500, 200_000)
    for key, value in sorted(results.items()):
        print(f"{key:34} {value:14,.2f}")
    args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    if args.profile:
        print(profile_core(1500, 100_000))


if __name__ == "__main__":
    main()
