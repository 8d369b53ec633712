"""Where a re-protection's client gap comes from: packet captures and a timeline.

``python -m bench.inplace --trace DIR`` starts tcpdump (when installed) on the client's
service link and on the serving host's guest tap and replication link while the pair is
re-protected, keeps the workload's per-request times, the re-protection's plan points and
QEMU's STOP/RESUME stamps, and copies the comparator's log. :func:`summarise` lines them up
on one clock (seconds after the re-protection's first point): which requests waited, and
which client segments the client had to send again (a TCP retransmission timeout).

``python -m bench.inplace_trace DIR`` prints the summary of a kept trace.
"""

from __future__ import annotations

import json
import shutil
import signal
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colopp.lab.plan import netns_argv

PCAP_HEADER = struct.Struct("<IHHiIII")
RECORD_HEADER = struct.Struct("<IIII")
SLOW_S = 0.2  # a request slower than this is listed


class Captures:
    """tcpdump processes, one per (namespace, interface); a no-op without tcpdump."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.procs: list[subprocess.Popen[bytes]] = []
        self.tcpdump = shutil.which("tcpdump")

    def start(self, netns: str, iface: str, name: str, bpf: str = "tcp") -> None:
        if self.tcpdump is None:
            return
        argv = [self.tcpdump, "-i", iface, "-n", "--immediate-mode", "-U", "-s", "160", "-w"]
        argv += [str(self.out / f"{name}.pcap"), *([bpf] if bpf else [])]
        self.procs.append(
            subprocess.Popen(
                netns_argv(netns, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)  # tcpdump writes what it holds, then exits
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


@dataclass(frozen=True)
class Segment:
    """One captured IPv4 TCP segment."""

    at: float
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    size: int


def read_pcap(path: Path) -> list[Segment]:
    """The IPv4 TCP segments of a pcap file (Ethernet link type)."""
    data = path.read_bytes() if path.exists() else b""
    if len(data) < PCAP_HEADER.size:
        return []
    out: list[Segment] = []
    pos = PCAP_HEADER.size
    while pos + RECORD_HEADER.size <= len(data):
        sec, usec, caplen, _ = RECORD_HEADER.unpack_from(data, pos)
        pos += RECORD_HEADER.size
        frame = data[pos : pos + caplen]
        pos += caplen
        if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue
        ihl = (frame[14] & 0x0F) * 4
        total = struct.unpack_from("!H", frame, 16)[0]
        tcp = 14 + ihl
        if len(frame) < tcp + 20:
            continue
        sport, dport, seq, ack, off_flags = struct.unpack_from("!HHIIH", frame, tcp)
        size = total - ihl - (off_flags >> 12) * 4
        out.append(
            Segment(
                sec + usec / 1e6,
                ".".join(str(b) for b in frame[26:30]),
                sport,
                ".".join(str(b) for b in frame[30:34]),
                dport,
                seq,
                ack,
                off_flags & 0x3F,
                size,
            )
        )
    return out


def frames(path: Path) -> list[tuple[float, str, str, str]]:
    """Every frame of a pcap file: (time, source MAC, destination MAC, EtherType)."""
    data = path.read_bytes() if path.exists() else b""
    out: list[tuple[float, str, str, str]] = []
    pos = PCAP_HEADER.size
    while len(data) >= PCAP_HEADER.size and pos + RECORD_HEADER.size <= len(data):
        sec, usec, caplen, _ = RECORD_HEADER.unpack_from(data, pos)
        pos += RECORD_HEADER.size
        frame = data[pos : pos + caplen]
        pos += caplen
        if len(frame) >= 14:
            src, dst = frame[6:12].hex(":"), frame[0:6].hex(":")
            out.append((sec + usec / 1e6, src, dst, frame[12:14].hex()))
    return out


def retransmissions(segments: list[Segment], src: str) -> list[Segment]:
    """Payload segments from ``src`` whose sequence range was sent before (same flow)."""
    seen: set[tuple[int, int, int]] = set()
    again: list[Segment] = []
    for seg in segments:
        if seg.src != src or not seg.size:
            continue
        key = (seg.sport, seg.seq, seg.size)
        if key in seen:
            again.append(seg)
        seen.add(key)
    return again


def nbd_waits(segments: list[Segment], port: int, t0: float) -> list[list[float]]:
    """NBD requests to the secondary's export that waited more than :data:`SLOW_S` for the
    next reply from it: [sent, waited] in seconds after ``t0`` (the guest's writes, once
    replication runs, and the mirror's before)."""
    waits: list[list[float]] = []
    pending: float | None = None
    for seg in segments:
        if not seg.size:
            continue
        if seg.dport == port and pending is None:
            pending = seg.at
        elif seg.sport == port and pending is not None:
            if seg.at - pending > SLOW_S:
                waits.append([round(pending - t0, 3), round(seg.at - pending, 3)])
            pending = None
    return waits[:40]


def summarise(trace: Path) -> dict[str, Any]:
    """The trace's timeline, slow requests and retransmissions, seconds after ``start``."""
    info = json.loads((trace / "trace.json").read_text())
    timeline: list[list[Any]] = info["timeline"]
    t0 = next(at for name, at in timeline if name == "start")
    requests = json.loads((trace / "requests.json").read_text())["requests"]
    slow = [
        [cid, method, round(sent - t0, 3), round(done - sent, 3), how]
        for cid, method, sent, done, how in requests
        if done - sent > SLOW_S and sent > t0 - 5
    ]
    out: dict[str, Any] = {
        "timeline": [[name, round(at - t0, 3)] for name, at in timeline],
        "slow_requests": slow,
    }
    guest = info.get("guest")
    client = info.get("client")
    for name in ("client", "tap", "repl"):
        segments = read_pcap(trace / f"{name}.pcap")
        if not segments:
            continue
        window = [s for s in segments if s.at > t0 - 2]
        out[f"{name}_retransmitted"] = {
            who: [
                [round(s.at - t0, 3), s.sport, s.dport, s.seq, s.size]
                for s in retransmissions(window, addr)
            ][:40]
            for who, addr in (("client", client), ("guest", guest))
            if addr
        }
    if info.get("nbd_port"):
        nbd = [s for s in read_pcap(trace / "repl.pcap") if s.at > t0 - 2]
        out["nbd_slow_replies"] = nbd_waits(nbd, int(info["nbd_port"]), t0)
    seen = [f for f in frames(trace / "sectap.pcap") if f[0] > t0 - 2]
    out["sectap_frames"] = len(seen)
    out["sectap_first"] = [[round(at - t0, 3), src, dst, kind] for at, src, dst, kind in seen[:15]]
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(summarise(Path(args[0])), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
