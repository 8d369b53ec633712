"""``python -m colopp.mirror``: the primary's copy of the client's frames, to the secondary
host in batches (issue #22: uploads).

QEMU's ``filter-mirror`` writes every frame the guest receives to ``mirror0`` in two or
three writes (its length, with a virtio-net header its header's length, then the frame).
Over TCP each write is a system call through the primary host's TCP stack on QEMU's main
loop, which also runs the guest's network device (COLO needs ``vhost=off``): measured on
the lab's uploads, 4-5 s of a 10 s window, more than the guest's vCPU got. With colopp's
comparator, ``mirror0`` is a unix socket instead, read by this process, which sends what
each read brings on to the secondary host in one TCP write (``TCP_NODELAY``: a batch never
waits for an ACK). The comparator starts it (``--mirror-from``) and it dies with the
comparator (the comparator's restart forces a checkpoint, which covers what it missed).

    python -m colopp.mirror --from unix:/run/colopp/vm1/mirror0.sock \\
        --to listen:tcp:198.18.1.10:9003 --status /run/colopp/vm1/mirror.json

Whole frames only, in order: the newest connection of the secondary host (its ingress relay,
or its QEMU's ``red0``) gets every frame from a frame boundary on; with none connected,
frames are counted and dropped (what QEMU does with an unconnected chardev). With
``--allow ADDRESS`` (the comparator passes host B's replication address) a connection from
anywhere else is closed at once and counted (``refused_peers``): nobody else on the
replication network can take the stream over. A full TCP
send buffer blocks this process and so, once the unix socket's buffer is full, QEMU's
mirror, as with QEMU's own TCP chardev. Exit: 0 at the end of ``--from`` (QEMU gone, or
its chardev yanked at a failover) or on SIGTERM; 2 on bad arguments, a source that never
answers (``--connect-timeout``), or a port it cannot listen on. The status file (0600,
replaced every ``--status-interval``) holds ``peer_connected``, ``peers``, ``frames``,
``bytes``, ``dropped_frames``, ``malformed``, ``refused_peers``, ``pid`` and
``updated_at``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from colopp.compare.addresses import Endpoint, parse_endpoint
from colopp.compare.status import write_status
from colopp.errors import ColoppError, ConfigError
from colopp.mirror.frames import whole_frames
from colopp.retry import RetryExhausted, connect_with_retry

log = logging.getLogger("colopp.mirror")

#: Bytes read at once: many frames per system call under load, one under light load.
READ_SIZE = 1 << 20
#: Seconds between attempts to bind a port an exiting predecessor still holds, or to
#: connect to a QEMU that is starting.
RETRY_S = 0.05


class Mirror:
    """One source, the newest peer, and counters; the forwarding loop runs in the caller's
    thread, the accepting loop in a daemon thread (they share only ``_peer``)."""

    def __init__(
        self,
        source: socket.socket,
        listener: socket.socket,
        vnet_hdr: bool,
        allowed: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] = frozenset(),
    ) -> None:
        self.source = source
        self.listener = listener
        self.vnet_hdr = vnet_hdr
        self.allowed = allowed
        self.counters = dict.fromkeys(
            ("peers", "refused_peers", "frames", "bytes", "dropped_frames", "malformed"), 0
        )
        self._peer: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def peer_connected(self) -> bool:
        return self._peer is not None

    def accept_forever(self) -> None:
        while True:
            try:
                conn, address = self.listener.accept()
            except OSError:
                return  # closed: the process is ending
            if self.allowed and _address(address[0]) not in self.allowed:
                self.counters["refused_peers"] += 1
                log.warning("refused a connection from %s (not the secondary host)", address)
                conn.close()
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                old, self._peer = self._peer, conn
                self.counters["peers"] += 1
            log.info("secondary host connected from %s", address)
            if old is not None:  # a reconnect: the newest connection wins
                with contextlib.suppress(OSError):
                    old.shutdown(socket.SHUT_RDWR)  # wakes a send blocked on it
                old.close()

    def forward(self) -> None:
        """Until the source ends."""
        buf = bytearray(READ_SIZE)
        view = memoryview(buf)
        have = 0
        counters = self.counters
        while True:
            got = self.source.recv_into(view[have:], READ_SIZE - have)
            if not got:
                return
            have += got
            runs, consumed, frames, malformed = whole_frames(view, have, self.vnet_hdr)
            if malformed:
                counters["malformed"] += malformed
            counters["frames"] += frames
            peer = self._peer
            if peer is None:
                counters["dropped_frames"] += frames
            else:
                for start, stop in runs:
                    if not self._send(peer, view[start:stop]):
                        counters["dropped_frames"] += frames
                        break
                else:
                    counters["bytes"] += sum(b - a for a, b in runs)
            if consumed:
                view[: have - consumed] = view[consumed:have]
                have -= consumed

    def _send(self, peer: socket.socket, data: memoryview) -> bool:
        try:
            peer.sendall(data)
        except OSError as exc:
            log.info("secondary host gone: %s", exc)
            with self._lock:
                if self._peer is peer:
                    self._peer = None
            peer.close()
            return False
        return True

    def status(self) -> dict[str, Any]:
        return {
            **self.counters,
            "peer_connected": self.peer_connected,
            "pid": os.getpid(),
            "updated_at": time.time(),
        }


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    found = ipaddress.ip_address(text.split("%", maxsplit=1)[0])
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


async def _connect(endpoint: Endpoint) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(endpoint.path))
    except OSError:
        sock.close()
        raise
    return sock


async def _listen(endpoint: Endpoint) -> socket.socket:
    host = str(endpoint.host)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, endpoint.port))
        sock.listen(4)
    except OSError:
        sock.close()
        raise
    return sock


async def open_ends(
    source: Endpoint, peer: Endpoint, within: float
) -> tuple[socket.socket, socket.socket]:
    """Listen where the secondary host connects (retrying while a predecessor, a mirror
    whose comparator was restarted, still holds the port), then connect to QEMU's
    ``mirror0`` (a unix server, there once QEMU started), each for up to ``within`` s.

    Raises:
        ConfigError: an address of the wrong kind, or an end that stays unavailable.
    """
    if source.listen or source.path is None:
        raise ConfigError(f"--from {source}: want unix:PATH (QEMU's mirror0 listens)")
    if not peer.listen or peer.host is None or peer.port is None:
        raise ConfigError(f"--to {peer}: want listen:tcp:HOST:PORT")
    try:
        listener = await connect_with_retry(lambda: _listen(peer), within, pause=RETRY_S)
    except RetryExhausted as exc:
        raise ConfigError(f"cannot listen on {peer}: {exc.last}") from exc
    try:
        return await connect_with_retry(lambda: _connect(source), within, pause=RETRY_S), listener
    except RetryExhausted as exc:
        listener.close()
        raise ConfigError(f"cannot connect to {source}: {exc.last}") from exc


def _allowed(texts: list[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The ``--allow`` addresses (names resolved once, now). A name that does not resolve
    restricts nothing, with a warning: refusing host B would stop replication."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for text in texts:
        try:
            found.append(_address(text.strip("[]")))
            continue
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(text, None, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            log.warning("--allow %s does not resolve (%s): any peer is accepted", text, exc)
            return []
        found += [_address(str(info[4][0])) for info in infos]
    return found


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m colopp.mirror", description=__doc__)
    p.add_argument("--from", dest="source", required=True, help="QEMU's mirror0: unix:PATH")
    p.add_argument("--to", dest="peer", required=True, help="listen:tcp:HOST:PORT")
    p.add_argument("--vnet-hdr", action="store_true", help="frames carry a vnet header length")
    p.add_argument(
        "--allow",
        action="append",
        default=[],
        help="the secondary host's address (repeatable); others are refused",
    )
    p.add_argument("--status", type=Path, help="JSON status file (0600)")
    p.add_argument("--status-interval", type=float, default=0.5)
    p.add_argument("--connect-timeout", type=float, default=30.0)
    p.add_argument("--parent-pid", type=int, help="exit at once if this is not our parent")
    p.add_argument("--log-level", default="INFO")
    return p


def _write_status(mirror: Mirror, path: Path, interval: float) -> None:
    while True:
        with contextlib.suppress(ColoppError):
            write_status(path, mirror.status())
        time.sleep(interval)  # a status file, not synchronisation


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if args.parent_pid is not None and os.getppid() != args.parent_pid:
        return 0  # the comparator that started us is gone already
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        source_at, peer_at = parse_endpoint(args.source), parse_endpoint(args.peer)
        source, listener = asyncio.run(open_ends(source_at, peer_at, args.connect_timeout))
    except ColoppError as exc:
        print(f"colopp.mirror: {exc}", file=sys.stderr)
        return 2
    mirror = Mirror(source, listener, args.vnet_hdr, frozenset(_allowed(args.allow)))
    threading.Thread(target=mirror.accept_forever, name="accept", daemon=True).start()
    if args.status is not None:
        threading.Thread(
            target=_write_status,
            args=(mirror, args.status, args.status_interval),
            name="status",
            daemon=True,
        ).start()
    log.info("mirroring %s to %s", source_at, peer_at)
    try:
        mirror.forward()
    except OSError as exc:
        log.info("source lost: %s", exc)
    finally:
        listener.close()
        if args.status is not None:
            with contextlib.suppress(ColoppError):
                write_status(args.status, {**mirror.status(), "peer_connected": False})
    return 0


if __name__ == "__main__":
    sys.exit(main())
