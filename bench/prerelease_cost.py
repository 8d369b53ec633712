"""CPU per request of the comparator core with and without pre-release (issue 15 item 6).

``python -m bench.prerelease_cost [--requests N] [--kind get|download] [--profile]``

Each request is what an HTTP keep-alive GET costs the comparator: the client's request (the
guest's input copy, read only with pre-release), the guest's bare ACK and its answer from
both sides, and the client's ACK of the answer; 8 connections, 64 keys. Without a policy the
core takes its fast paths; with ``http_read`` + ``ack_only`` (key scope) it takes the general
path, parses requests and pre-releases every answer (the secondary's copy arrives after the
primary's). Prints microseconds of this process's CPU per request for both.

``--kind download`` (issue 22, ``download_static``): each request is a GET of a 64 KiB value
answered in 1448-byte segments; both guests ACK the request, the primary's whole answer
arrives first, the client ACKs every second segment, then the secondary's copy arrives
coalesced as host B's relay sends it (one segment of up to 44 of the primary's). Prints
microseconds per primary answer segment.
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


def get_request(
    c_seq: list[int], g_seq: list[int], i: int, path: str
) -> tuple[int, int, bytes, bytes]:
    """Request ``i``'s connection, port, the client's GET of ``path`` and the guest's ACK
    of it (``c_seq`` advanced past the request)."""
    conn, port = i % CONNECTIONS, 40000 + i % CONNECTIONS
    body = f"GET {path} HTTP/1.1\r\nHost: g\r\n\r\n".encode()
    req = frame(c_seq[conn], g_seq[conn], 0x18, body, True, port)
    c_seq[conn] += len(body)
    return conn, port, req, frame(g_seq[conn], c_seq[conn], 0x10, b"", False, port)


def requests(count: int) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """(client request, guest ACK, guest answer, client ACK) per request, in order."""
    c_seq, g_seq = [1000] * CONNECTIONS, [5000] * CONNECTIONS
    out = []
    for i in range(count):
        conn, port, req, ack = get_request(c_seq, g_seq, i, f"/kv/k{i % 64}")
        answer = frame(g_seq[conn], c_seq[conn], 0x18, ANSWER, False, port)
        g_seq[conn] += len(ANSWER)
        client_ack = frame(c_seq[conn], g_seq[conn], 0x10, b"", True, port)
        out.append((req, ack, answer, client_ack))
    return out


MSS = 1448
BIG = b"HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n" + bytes(range(256)) * 256
#: Primary segments a coalesced secondary segment covers (an IPv4 datagram's payload).
COALESCED = 44


class Download:
    """One download request's frames: the client's GET, the primary's answer segments, the
    client's ACKs (after every second segment), the secondary's coalesced copy."""

    __slots__ = ("acks", "get", "get_ack", "primary", "secondary")

    def __init__(
        self,
        get: bytes,
        get_ack: bytes,
        primary: list[bytes],
        acks: list[bytes],
        secondary: list[bytes],
    ) -> None:
        self.get = get
        self.get_ack = get_ack  # both guests ACK the request on arrival (quickack)
        self.primary = primary
        self.acks = acks
        self.secondary = secondary


def downloads(count: int) -> list[Download]:
    """``count`` GETs of a 64 KiB value, round robin over the connections."""
    c_seq, g_seq = [1000] * CONNECTIONS, [5000] * CONNECTIONS
    out = []
    for i in range(count):
        conn, port, get, get_ack = get_request(c_seq, g_seq, i, f"/kv/big{i % 4}")
        chunks = [BIG[at : at + MSS] for at in range(0, len(BIG), MSS)]
        primary, acks, seq = [], [], g_seq[conn]
        for index, chunk in enumerate(chunks):
            primary.append(frame(seq, c_seq[conn], 0x10, chunk, False, port))
            seq += len(chunk)
            if index % 2 or index == len(chunks) - 1:
                acks.append(frame(c_seq[conn], seq, 0x10, b"", True, port))
        secondary, seq = [], g_seq[conn]
        for at in range(0, len(BIG), MSS * COALESCED):
            chunk = BIG[at : at + MSS * COALESCED]
            secondary.append(frame(seq, c_seq[conn], 0x10, chunk, False, port))
            seq += len(chunk)
        g_seq[conn] = seq
        out.append(Download(get, get_ack, primary, acks, secondary))
    return out


def run_downloads(items: list[Download], prerelease: bool) -> float:
    """Microseconds of CPU per primary answer segment."""
    config = PreReleaseConfig(frozenset({"http_read", "ack_only"}), ("/kv/",), scope="key")
    policy = build_policy(config) if prerelease else None
    core = Comparator(policy=policy)
    now = 0.0
    segments = 0
    start = time.process_time()
    for item in items:
        now += 1e-4
        if policy is not None:
            core.feed_client(item.get, now)
        core.feed_primary(item.get_ack, now)
        core.feed_secondary(item.get_ack, now)
        for seg in item.primary:
            core.feed_primary(seg, now)
        segments += len(item.primary)
        if policy is not None:
            for ack in item.acks:
                core.feed_client(ack, now)
        for seg in item.secondary:
            core.feed_secondary(seg, now)
    cpu = time.process_time() - start
    snap = core.snapshot()
    assert not snap["divergences"] and not snap["checkpoints_requested"], snap
    if prerelease:
        assert core.counters.pre_released_frames >= segments, snap
    else:
        assert core.counters.released_frames >= segments, snap
    return cpu / segments * 1e6


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
    parser.add_argument("--kind", choices=("get", "download"), default="get")
    parser.add_argument("--profile", action="store_true", help="top functions with pre-release")
    args = parser.parse_args()
    if args.kind == "download":
        items = downloads(max(1, args.requests // 20))
        print(f"download, no pre-release: {run_downloads(items, False):.2f} us CPU per segment")
        print(f"download, pre-release: {run_downloads(items, True):.2f} us per segment")
        work = lambda: run_downloads(items, True)  # noqa: E731
    else:
        frames = requests(args.requests)
        print(f"no pre-release: {run(frames, False):.1f} us CPU per request")
        print(f"pre-release (http_read, ack_only, key scope): {run(frames, True):.1f} us")
        work = lambda: run(frames, True)  # noqa: E731
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        work()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
