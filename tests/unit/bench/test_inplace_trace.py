"""bench.inplace_trace: reading captures and finding a client's retransmissions."""

from __future__ import annotations

import struct
from pathlib import Path

from bench.inplace_trace import (
    PCAP_HEADER,
    RECORD_HEADER,
    frames,
    nbd_waits,
    read_pcap,
    retransmissions,
)


def _frame(src: str, dst: str, sport: int, dport: int, seq: int, payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIHHHH", sport, dport, seq, 1, (5 << 12) | 0x18, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 6, 0,
                     bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))  # fmt: skip
    eth = b"\x52\x54\x00\x00\x00\x02" + b"\x52\x54\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip + tcp + payload


def _pcap(path: Path, records: list[tuple[float, bytes]]) -> None:
    out = PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for at, frame in records:
        out += RECORD_HEADER.pack(int(at), int(at % 1 * 1e6), len(frame), len(frame)) + frame
    path.write_bytes(out)


def test_a_segment_sent_twice_is_a_retransmission(tmp_path: Path) -> None:
    a, g = "198.18.0.20", "198.18.0.100"
    _pcap(
        tmp_path / "c.pcap",
        [
            (10.0, _frame(a, g, 40000, 80, 100, b"PUT /kv/a")),
            (10.1, _frame(g, a, 80, 40000, 500, b"HTTP/1.1 200")),
            (10.2, _frame(a, g, 40000, 80, 109, b"GET /kv/a")),
            (10.5, _frame(a, g, 40000, 80, 109, b"GET /kv/a")),
        ],
    )
    segments = read_pcap(tmp_path / "c.pcap")
    assert [s.size for s in segments] == [9, 12, 9, 9]
    again = retransmissions(segments, a)
    assert [(round(s.at, 1), s.seq) for s in again] == [(10.5, 109)]
    assert retransmissions(segments, g) == []
    assert len(frames(tmp_path / "c.pcap")) == 4
    assert read_pcap(tmp_path / "missing.pcap") == []


def test_nbd_requests_that_waited_for_their_reply(tmp_path: Path) -> None:
    p, s = "198.18.1.1", "198.18.1.10"
    _pcap(
        tmp_path / "r.pcap",
        [
            (100.0, _frame(p, s, 40000, 9999, 1, b"w" * 32)),
            (100.05, _frame(s, p, 9999, 40000, 1, b"r" * 16)),  # answered in 50 ms
            (101.0, _frame(p, s, 40000, 9999, 33, b"w" * 32)),
            (101.1, _frame(p, s, 40000, 9999, 65, b"w" * 32)),  # queued behind it
            (102.5, _frame(s, p, 9999, 40000, 17, b"r" * 16)),  # 1.5 s later
        ],
    )
    assert nbd_waits(read_pcap(tmp_path / "r.pcap"), 9999, 100.0) == [[1.0, 1.5]]
