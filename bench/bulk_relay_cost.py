"""The host-B relay's own work per TCP segment of a bulk stream (issue #22):
``python -m bench.bulk_relay_cost [--segments N] [--json FILE]``.

Feeds :class:`~colopp.ingress.relay.Relay` (no sockets: its writes go to memory) an upload
(1448-byte client segments, a guest ACK every second one), the same upload with
pre-release's write fence on (``upload_fenced``: the read rule's prefixes set, checksummed
segments after the connection's SYN) and a download (1448-byte guest segments, a client
ACK every second one), ``per`` frames per read as a loaded host reads
them, and reports the best of five passes in microseconds per 1448-byte segment. What it
leaves out, the event loop's wake-ups and the socket calls, is what the lab adds
(``process_cpu_s.hostb.relay`` in ``bench.bulk``'s windows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import time
from typing import Any

from colopp.compare.addresses import parse_endpoint
from colopp.compare.framing import encode_frames
from colopp.ingress.options import RelayOptions
from colopp.ingress.relay import Relay
from colopp.ingress.side import RelaySide

MSS = 1448
CLIENT, GUEST = "198.18.0.2", "198.18.1.10"
BATCHES = (1, 4, 16)


def _sum16(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data + b"\0" * (len(data) % 2)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    payload: bytes,
    flags: int = 0x10,
    checksum: bool = False,
) -> bytes:
    """An Ethernet/IPv4/TCP frame (flags ACK unless told; the checksums left 0 unless
    ``checksum``: the relay does not check them, the write fence's read rule does)."""
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    if checksum:
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst)
        pseudo += struct.pack("!BBH", 0, 6, 20 + len(payload))
        csum = _sum16(pseudo + header + payload)
        header = header[:16] + struct.pack("!H", csum) + header[18:]
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        40 + len(payload),
        0,
        0x4000,
        64,
        6,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    if checksum:
        ip = ip[:10] + struct.pack("!H", _sum16(ip)) + ip[12:]
    return bytes(6) + bytes(6) + b"\x08\x00" + ip + header + payload


class _Sink:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str) -> object:
        return None  # no socket: RelaySide.drain reads nothing


def streams(kind: str, n: int, per: int) -> tuple[list[bytes], list[bytes]]:
    """(mirror reads, red1 reads) of ``n`` segments, ``per`` frames a read."""
    cseq, gseq = 1000, 5000
    data, acks = [], []
    fenced = kind == "upload_fenced"
    if fenced:  # the connection's SYN: the fence's read rule follows it from its start
        data.append(tcp(CLIENT, GUEST, 40000, 80, cseq - 1, 0, b"", 0x02, checksum=True))
    for i in range(n):
        if fenced:  # an upload that is no service's requests: lost after a few segments
            seg = tcp(CLIENT, GUEST, 40000, 80, cseq + i * MSS, gseq, b"x" * MSS, checksum=True)
            data.append(seg)
            if i % 2:
                acks.append(tcp(GUEST, CLIENT, 80, 40000, gseq, cseq + (i + 1) * MSS, b""))
        elif kind == "upload":
            data.append(tcp(CLIENT, GUEST, 40000, 80, cseq + i * MSS, gseq, b"x" * MSS))
            if i % 2:
                acks.append(tcp(GUEST, CLIENT, 80, 40000, gseq, cseq + (i + 1) * MSS, b""))
        else:
            data.append(tcp(GUEST, CLIENT, 80, 40000, gseq + i * MSS, cseq, b"y" * MSS))
            if i % 2:
                acks.append(tcp(CLIENT, GUEST, 40000, 80, cseq, gseq + (i + 1) * MSS, b""))
    half = max(1, per // 2)
    data_reads = [encode_frames(data[i : i + per]) for i in range(0, len(data), per)]
    ack_reads = [encode_frames(acks[i : i + half]) for i in range(0, len(acks), half)]
    if kind.startswith("upload"):
        return data_reads, ack_reads
    return ack_reads, data_reads


def one_pass(kind: str, n: int, per: int) -> float:
    """Seconds of relay work per segment for one pass."""
    relay = Relay(
        RelayOptions(
            parse_endpoint("unix:/nonexistent/a"),
            parse_endpoint("listen:unix:/nonexistent/b"),
            parse_endpoint("listen:unix:/nonexistent/c"),
            parse_endpoint("unix:/nonexistent/d"),
            read_prefixes=("/kv/",) if kind == "upload_fenced" else (),
        )
    )
    sides = {}
    for name in ("mirror", "red0", "red1", "comparator"):
        side = RelaySide(relay, name, False)
        side.transport = _Sink()  # type: ignore[assignment]
        relay._sides[name] = side
        sides[name] = side
    mirror_reads, guest_reads = streams(kind, n, per)

    async def run() -> float:
        start = time.perf_counter()
        for i in range(max(len(mirror_reads), len(guest_reads))):
            if kind == "download" and i < len(guest_reads):
                sides["red1"].data_received(guest_reads[i])
            if i < len(mirror_reads):
                sides["mirror"].data_received(mirror_reads[i])
            if kind != "download" and i < len(guest_reads):
                sides["red1"].data_received(guest_reads[i])
        took = time.perf_counter() - start
        await relay.stop()
        return took

    return asyncio.run(run()) / n


def measure(n: int, passes: int = 5) -> dict[str, Any]:
    """``kind`` -> ``per`` -> best microseconds per segment."""
    return {
        kind: {
            str(per): round(min(one_pass(kind, n, per) for _ in range(passes)) * 1e6, 2)
            for per in BATCHES
        }
        for kind in ("upload", "upload_fenced", "download")
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk_relay_cost", description=__doc__)
    parser.add_argument("--segments", type=int, default=20000)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    figures = measure(args.segments)
    for kind, by_batch in figures.items():
        cells = ", ".join(f"{per}/read {us} µs" for per, us in by_batch.items())
        print(f"{kind}: {cells} per 1448-byte segment")
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(
                json.dumps({"us_per_segment": figures, "segments": args.segments}, indent=2) + "\n"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
