"""Handing the log's frames to the promoted guest (issue #22), until it acknowledges them.

After a failover the client has forgotten every byte an early ACK acknowledged; the
secondary host's log (:class:`~colopp.ingress.log.ClientLog`) is the only copy. The
:class:`Replayer` sends the log's unacknowledged frames to the promoted guest, again with
doubling pauses (its receive window may be full: it drops, and takes them later), reading
the guest's frames to learn what it acknowledged, until nothing is left or ``deadline``.

On a host it runs over :func:`open_tap_socket`: an ``AF_PACKET`` socket on the guest's tap.
A frame sent there reaches QEMU as input from the network (through ``filter-rewriter``,
like the client's own frames); the guest's output is read there too. Needs CAP_NET_RAW.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

from colopp.ingress.log import ClientLog

FIRST_PAUSE_S = 0.05
MAX_PAUSE_S = 1.0
DEFAULT_DEADLINE_S = 60.0
_ETH_P_ALL = 0x0003


class Replayer:
    """When to send what; the socket is the caller's (``send``, :meth:`guest_frame`)."""

    def __init__(
        self,
        log: ClientLog,
        send: Callable[[bytes], None],
        now: float,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> None:
        self.log = log
        self.send = send
        self.deadline = now + deadline_s
        self.pause = FIRST_PAUSE_S
        self.next_at = now
        self.rounds = 0
        self.frames_sent = 0

    def guest_frame(self, frame: bytes) -> None:
        """A frame the promoted guest sent (plain Ethernet): its ACKs settle the log."""
        self.log.guest_frame(frame)

    def tick(self, now: float) -> float | None:
        """Send what is due; returns when to call again, or None when done (settled, or
        the deadline passed: the log's frames are then given up, and counted by the
        caller from :meth:`ClientLog.unacked`)."""
        if self.log.settled() or now >= self.deadline:
            return None
        if now >= self.next_at:
            frames = self.log.unacked()
            for frame in frames:
                self.send(frame)
            self.frames_sent += len(frames)
            self.rounds += 1
            self.next_at = now + self.pause
            self.pause = min(self.pause * 2, MAX_PAUSE_S)
        return self.next_at


def open_tap_socket(tap: str) -> socket.socket:
    """A non-blocking ``AF_PACKET`` socket on ``tap`` (in the caller's network namespace).

    Raises OSError (no such interface, or no CAP_NET_RAW).
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    try:
        sock.bind((tap, 0))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def guest_frames(sock: socket.socket) -> list[bytes]:
    """Frames the guest sent that wait on ``sock`` (not those this host sent)."""
    out: list[bytes] = []
    while True:
        try:
            data, address = sock.recvfrom(65536)
        except (BlockingIOError, InterruptedError):
            return out
        if address[2] != socket.PACKET_OUTGOING:
            out.append(data)


def send_frame(sock: socket.socket, frame: bytes) -> None:
    """Send one frame on ``sock``; a full socket buffer drops it (the next round sends it
    again)."""
    with contextlib.suppress(BlockingIOError, InterruptedError):
        sock.send(frame)
