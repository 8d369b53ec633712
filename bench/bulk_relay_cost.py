"""The host-B relay's own work per TCP segment of a bulk stream (issue #22):
``python -m bench.bulk_relay_cost [--segments N] [--json FILE]``.

Feeds :class:`~colopp.ingress.relay.Relay` (no sockets: its writes go to memory) an upload
(1448-byte client segments, a guest ACK every second one) and a download (1448-byte guest
segments, a client ACK every second one), ``per`` frames per read as a loaded host reads
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


def tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, payload: bytes) -> bytes:
    """An Ethernet/IPv4/TCP frame, flags ACK (checksums left 0: the relay does not check)."""
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, 0x10, 65535, 0, 0)
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
    for i in range(n):
        if kind == "upload":
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
    if kind == "upload":
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
            if kind == "upload" and i < len(guest_reads):
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
        for kind in ("upload", "download")
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
