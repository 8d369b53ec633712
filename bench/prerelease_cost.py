"""CPU per request of the comparator core with and without pre-release (issue 15 item 6).

``python -m bench.prerelease_cost [--requests N] [--profile]``

Each request is what an HTTP keep-alive GET costs the comparator: the client's request (the
guest's input copy, read only with pre-release), the guest's bare ACK and its answer from
both sides, and the client's ACK of the answer; 8 connections, 64 keys. Without a policy the
core takes its fast paths; with ``http_read`` + ``ack_only`` (key scope) it takes the general
path, parses requests and pre-releases every answer (the secondary's copy arrives after the
primary's). Prints microseconds of this process's CPU per request for both.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import struct
import time

from colopp.compare import Comparator, PreReleaseConfig, build_policy

GUEST = bytes([198, 18, 1, 10])
CLIENT = bytes([198, 18, 0, 2])
CONNECTIONS = 8
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 128\r\n\r\n" + b"x" * 128


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(seq: int, ack: int, flags: int, payload: bytes, to_guest: bool, port: int) -> bytes:
    """An Ethernet/IPv4/TCP frame with correct checksums (the read rule checks the client's)."""
    src, dst = (CLIENT, GUEST) if to_guest else (GUEST, CLIENT)
    sport, dport = (port, 80) if to_guest else (80, port)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack, 0x50, flags, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp + payload)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return bytes(12) + b"\x08\x00" + ip + tcp + payload


def requests(count: int) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """(client request, guest ACK, guest answer, client ACK) per request, in order."""
    c_seq, g_seq = [1000] * CONNECTIONS, [5000] * CONNECTIONS
    out = []
    for i in range(count):
        conn, port = i % CONNECTIONS, 40000 + i % CONNECTIONS
        body = f"GET /kv/k{i % 64} HTTP/1.1\r\nHost: g\r\n\r\n".encode()
        req = frame(c_seq[conn], g_seq[conn], 0x18, body, True, port)
        c_seq[conn] += len(body)
        ack = frame(g_seq[conn], c_seq[conn], 0x10, b"", False, port)
        answer = frame(g_seq[conn], c_seq[conn], 0x18, ANSWER, False, port)
        g_seq[conn] += len(ANSWER)
        client_ack = frame(c_seq[conn], g_seq[conn], 0x10, b"", True, port)
        out.append((req, ack, answer, client_ack))
    return out


def run(frames: list[tuple[bytes, bytes, bytes, bytes]], prerelease: bool) -> float:
    """Microseconds of CPU per request."""
    config = PreReleaseConfig(frozenset({"http_read", "ack_only"}), ("/kv/",), scope="key")
    policy = build_policy(config) if prerelease else None
    core = Comparator(policy=policy)
    now = 0.0
    start = time.process_time()
    for req, ack, answer, client_ack in frames:
        now += 1e-4
        if policy is not None:
            core.feed_client(req, now)
        core.feed_primary(ack, now)
        core.feed_secondary(ack, now)
        core.feed_primary(answer, now)
        core.feed_secondary(answer, now)
        if policy is not None:
            core.feed_client(client_ack, now)
    cpu = time.process_time() - start
    if prerelease:
        assert core.counters.pre_released_frames >= len(frames), core.snapshot()
    return cpu / len(frames) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.prerelease_cost", description=__doc__)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--profile", action="store_true", help="top functions with pre-release")
    args = parser.parse_args()
    frames = requests(args.requests)
    print(f"no pre-release: {run(frames, False):.1f} us CPU per request")
    print(f"pre-release (http_read, ack_only, key scope): {run(frames, True):.1f} us")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(frames, True)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
