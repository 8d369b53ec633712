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

from colopp.compare.packet import ACK, FIN, RST, TCP, FlowKey, Malformed, parse_frame
from colopp.compare.seq import MASK, seq_after
from colopp.ingress.log import ClientLog
from colopp.ingress.wire import pure_ack

FIRST_PAUSE_S = 0.05
MAX_PAUSE_S = 1.0
DEFAULT_DEADLINE_S = 60.0
_ETH_P_ALL = 0x0003


class Replayer:
    """When to send what; the socket is the caller's (``send``, :meth:`guest_frame`).

    A promoted semi-active guest may lag the dead primary by a second or more: the client
    was answered (and acknowledged the answers) far past what this guest has sent. Linux
    discards a segment whose ACK runs past its ``snd_nxt``, so the log's frames cannot go
    all at once: per connection, in order, a frame goes only once the guest has sent what
    it acknowledges (as the relay's ACK gate does before the failover), the next one as
    soon as the guest's output covers it (:meth:`push`, called after each batch of guest
    frames), not at the next round. Before the guest sent anything on a connection, its
    frames go optimistically (the guest keeps what it can). Rounds at doubling pauses send
    again what a full receive window dropped.

    The client ACKs the relay lowered and still owed (:attr:`ClientLog.owed_acks`) go the
    same way: the guest took those requests already, but its answers, which the client
    acknowledged long ago through the dead primary, fill its send window, and every client
    segment acknowledging as far is discarded. After each batch of its output (and each
    round) the guest is given, as a bare ACK, the client's ACK as far as its output
    reaches (:meth:`_ack_owed`), until it reaches the client's own.
    """

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
        self.pushed = 0  # frames sent as soon as the guest's output covered their ACK
        self.acks_sent = 0  # bare ACKs given for the owed client ACKs
        # Per connection (guest -> client key): the end of what the promoted guest sent.
        self._sent_end: dict[FlowKey, int] = {}
        # Per connection: the end of the last frame sent while its ACK was known covered.
        self._covered_to: dict[FlowKey, int] = {}
        # Connections whose guest output moved since the last push: only these are walked.
        self._moved: set[FlowKey] = set()
        # A logged frame's (connection key, ack or None, end), parsed once: the log may hold
        # tens of thousands of frames and a push follows every batch of guest frames.
        self._parsed: dict[bytes, tuple[FlowKey, int | None, int] | None] = {}
        self.parsed_frames = 0
        # The relay's write fence, carried over (:meth:`keep_order`).
        self._pending: dict[FlowKey, int] = {}
        self._fenced: set[FlowKey] = set()
        self._fence_until = now
        self._fence_opened = False

    def keep_order(self, pending: dict[FlowKey, int], fenced: set[FlowKey], until: float) -> None:
        """The relay's write fence at the promotion (:meth:`WriteFence.handover`): the frames
        of a ``fenced`` connection wait (until ``until`` at most) while the guest has not yet
        sent past a ``pending`` read's position on another connection."""
        self._pending = dict(pending)
        self._fenced = set(fenced)
        self._fence_until = until

    def _waits_for_reads(self, key: FlowKey, now: float) -> bool:
        if key not in self._fenced:
            return False
        if now < self._fence_until and any(other != key for other in self._pending):
            return True
        self._fenced.discard(key)
        return False

    def guest_frame(self, frame: bytes) -> None:
        """A frame the promoted guest sent (plain Ethernet): its ACKs settle the log, its
        sequence numbers say which client frames it can take now."""
        pkt = parse_frame(frame)
        self.log.guest_frame(frame, 0, pkt)
        if isinstance(pkt, Malformed) or pkt.kind != TCP:
            return
        if pkt.flags & RST:
            self.log.owed_acks.pop(pkt.key, None)  # the connection is gone: nothing owed
            return
        end = (pkt.seq + pkt.payload_end - pkt.payload_start + (1 if pkt.flags & FIN else 0)) & MASK
        read_at = self._pending.get(pkt.key)
        if read_at is not None and pkt.payload_end > pkt.payload_start and seq_after(end, read_at):
            del self._pending[pkt.key]  # it answered that read: writes behind may go
            self._fence_opened = True
        old = self._sent_end.get(pkt.key)
        if old is None or seq_after(end, old):
            self._sent_end[pkt.key] = end
            self._moved.add(pkt.key)

    def push(self, now: float) -> int:
        """Send the frames the guest's output newly covers; returns how many."""
        moved, self._moved = self._moved, set()
        sent = 0
        for key in moved:
            sent += self._send(self.log.unacked_of(key), now, everything=False)
        if self._fence_opened:  # the writes a read held back
            self._fence_opened = False
            sent += self._send(self.log.unacked(), now, everything=True)
        self.pushed += sent
        if self.log.owed_acks:
            sent += sum(self._ack_owed(key) for key in moved)
        if sent:
            self.pause = FIRST_PAUSE_S  # progress: look again soon for what a window dropped
            self.next_at = min(self.next_at, now + self.pause)
        return sent

    def tick(self, now: float) -> float | None:
        """Send what is due; returns when to call again, or None when done (settled, or
        the deadline passed: the log's frames are then given up, and counted by the
        caller from :meth:`ClientLog.unacked`)."""
        if (self.log.settled() and not self.log.owed_acks) or now >= self.deadline:
            return None
        if now >= self.next_at:
            frames = self.log.unacked()
            self._parsed = {f: self._parsed[f] for f in frames if f in self._parsed}
            self._send(frames, now, everything=True)
            for key in list(self.log.owed_acks):
                self._ack_owed(key)
            self.rounds += 1
            self.next_at = now + self.pause
            self.pause = min(self.pause * 2, MAX_PAUSE_S)
        return self.next_at

    def _ack_owed(self, key: FlowKey) -> int:
        """Give the guest the owed client ACK of ``key`` as far as its output reaches (what
        it sent since the failover, or before, as the relay saw it); returns 1 when a bare
        ACK went. Once the output reaches the client's ACK itself, that ACK goes and
        nothing is owed any more: the client's own segments are taken from then on."""
        owed = self.log.owed_acks.get(key)
        if owed is None:
            return 0
        sent_end = self._sent_end.get(key)
        if sent_end is None or (owed.sent_end is not None and seq_after(owed.sent_end, sent_end)):
            sent_end = owed.sent_end
        if sent_end is None:
            return 0  # nothing known sent: nothing to acknowledge yet
        ack = owed.ack
        if seq_after(ack, sent_end):
            ack = sent_end
        else:
            del self.log.owed_acks[key]
        self.send(pure_ack(owed.frame, 0, ack))
        self.acks_sent += 1
        return 1

    def _fields(self, frame: bytes) -> tuple[FlowKey, int | None, int] | None:
        """(connection key guest -> client, ACK if any, end) of a logged client frame."""
        if frame in self._parsed:
            return self._parsed[frame]
        self.parsed_frames += 1
        pkt = parse_frame(frame)
        fields = None
        if not isinstance(pkt, Malformed) and pkt.kind == TCP:
            _, client, guest, cport, gport = pkt.key
            size = pkt.payload_end - pkt.payload_start + (1 if pkt.flags & FIN else 0)
            ack = pkt.ack if pkt.flags & ACK else None
            fields = ((TCP, guest, client, gport, cport), ack, (pkt.seq + size) & MASK)
        self._parsed[frame] = fields
        return fields

    def _send(self, frames: list[bytes], now: float, *, everything: bool) -> int:
        """Per connection in order: every frame of ``frames`` the guest can take
        (``everything``), or only those past the last one sent known covered; stops at a
        connection's first frame whose ACK runs past what the guest sent, and at a fenced
        connection while a read before its write is unanswered (:meth:`keep_order`)."""
        count = 0
        blocked: set[FlowKey] = set()
        for frame in frames:
            fields = self._fields(frame)
            if fields is None:
                continue
            key, ack, end = fields
            if key in blocked:
                continue
            if self._fenced and self._waits_for_reads(key, now):
                blocked.add(key)  # a write that must not overtake a read still unanswered
                continue
            sent_end = self._sent_end.get(key)
            if sent_end is not None and ack is not None and seq_after(ack, sent_end):
                blocked.add(key)  # not yet, nor any later frame of this connection
                continue
            covered_to = self._covered_to.get(key)
            already = covered_to is not None and not seq_after(end, covered_to)
            if not everything and (sent_end is None or already):
                continue
            self.send(frame)
            count += 1
            if sent_end is not None:
                self._covered_to[key] = end
        self.frames_sent += count
        return count


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
