"""Who serves a COLO guest, seen on the cables: per-host watchers and a probe both sides answer.

With real COLO both sides of a protection answer at the same guest address and MAC, so a
client cannot tell them apart. What differs is *where* the guest's frames leave: a serving
side's frames go out of its own host's uplink (the host end of its service cable), and a
COLO secondary's never do (they go to the primary's comparator).

- ``watch``: a **cable watcher** in one host's namespace. An AF_PACKET socket on the host's
  service uplink records the arrival time (CLOCK_MONOTONIC, one clock for every namespace
  of the machine) of every *outgoing* frame whose source MAC is the guest's.
- ``probe``: in the client's namespace, a broadcast ARP request for the guest's address
  every ``--every`` seconds. Every host's bridge floods it to its guest's tap, so every side
  that serves answers, each out of its own host, whichever side the switch last learned
  the guest's MAC on (a client's TCP goes to one side only).

:func:`verdict` (pure) decides: ``dual_primary_observed`` is true iff frames from the guest
left the isolated host at or after the first frame that left the other host after the cut.

``python -m bench.fleet_dual watch|probe ...`` are the lab's processes; a watcher prints
``started``, then ``frames`` (every recorded time) when it gets SIGTERM.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ETH_P_ALL = 0x0003
ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4
#: Width of the intervals in which :func:`verdict` counts frames leaving both hosts.
BIN_S = 0.1


def say(event: str, **extra: object) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), **extra}) + "\n")
    sys.stdout.flush()


def mac_bytes(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def watch(ifname: str, mac: str) -> None:
    """Record outgoing frames from ``mac`` on ``ifname`` until SIGTERM, then print them."""
    source = mac_bytes(mac)
    times: list[float] = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    sock.settimeout(0.1)
    say("started", ifname=ifname)
    while not stop.is_set():
        try:
            frame, address = sock.recvfrom(128)
        except TimeoutError:
            continue
        except InterruptedError:
            continue
        if address[2] == PACKET_OUTGOING and frame[6:12] == source:
            times.append(time.monotonic())
    sock.close()
    say("frames", times=times)


def arp_request(src_mac: bytes, src_ip: str, target_ip: str) -> bytes:
    """A broadcast ARP who-has ``target_ip`` from ``src_mac``/``src_ip``."""
    ether = b"\xff" * 6 + src_mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
    arp += src_mac + ipaddress.IPv4Address(src_ip).packed
    arp += b"\x00" * 6 + ipaddress.IPv4Address(target_ip).packed
    return ether + arp


def probe(ifname: str, src_ip: str, target_ip: str, every: float) -> None:
    """Ask who has ``target_ip`` (broadcast) every ``every`` seconds until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    src_mac = mac_bytes(Path(f"/sys/class/net/{ifname}/address").read_text().strip())
    frame = arp_request(src_mac, src_ip, target_ip)
    sent = 0
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((ifname, 0))
        say("started", ifname=ifname)
        while not stop.wait(every):
            sock.send(frame)
            sent += 1
    say("sent", count=sent)


def verdict(
    frames: dict[str, Sequence[float]], cut_at: float, isolated: str, other: str
) -> dict[str, Any]:
    """What the cables showed; ``frames``: per host, when guest frames left it.

    ``dual_primary_observed`` is true iff a frame left ``isolated`` at or after the first
    frame that left ``other`` after the cut; ``intervals_both`` counts the :data:`BIN_S`
    intervals after the cut in which frames left both hosts."""
    mine = sorted(float(t) for t in frames.get(isolated, ()))
    theirs = sorted(float(t) for t in frames.get(other, ()) if t >= cut_at)
    first_other = theirs[0] if theirs else None
    late = [t for t in mine if first_other is not None and t >= first_other]
    bins_mine = {int((t - cut_at) // BIN_S) for t in mine if t >= cut_at}
    bins_theirs = {int((t - cut_at) // BIN_S) for t in theirs}
    after_cut = [t for t in mine if t >= cut_at]
    return {
        "dual_primary_observed": bool(late),
        "late_frames": len(late),
        "intervals_both": len(bins_mine & bins_theirs),
        "frames_isolated_before_cut": len(mine) - len(after_cut),
        "frames_isolated_after_cut": len(after_cut),
        "frames_other_after_cut": len(theirs),
        "cut_to_last_isolated_frame_s": round(after_cut[-1] - cut_at, 3) if after_cut else None,
        "cut_to_first_other_frame_s": None
        if first_other is None
        else round(first_other - cut_at, 3),
        "frames_per_host": {host: len(times) for host, times in frames.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_dual")
    verbs = parser.add_subparsers(dest="verb", required=True)
    w = verbs.add_parser("watch")
    w.add_argument("--ifname", required=True)
    w.add_argument("--mac", required=True)
    p = verbs.add_parser("probe")
    p.add_argument("--ifname", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--every", type=float, default=0.05)
    args = parser.parse_args(argv)
    if args.verb == "watch":
        watch(args.ifname, args.mac)
    else:
        probe(args.ifname, args.source, args.target, args.every)


if __name__ == "__main__":
    main()
