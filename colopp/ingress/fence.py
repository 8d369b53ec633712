"""A client's write waits on host B until the secondary guest answered the reads before it.

**Why.** Pre-release lets the primary's answer to a read leave once the secondary guest has
*received* the request (the absolute rule, :mod:`colopp.compare.prerelease`), not once it
has *answered* it. The argument for its safety is that the secondary answers it from the
same state: a write the comparator sees after the read does not disarm it. That holds only
if the secondary's service handles the read before that write. A lagging secondary (a
semi-active one, or one whose host is busy) may hold both in its sockets when it next runs,
and a service does not promise to take requests from different connections in the order they
arrived: Redis, on level-triggered epoll, takes first the connection it polled last time.
It then answers the read with the write applied, other bytes (and, when the value's length
changed, another length) than the client already has. The comparison finds it
(``prerelease_mismatch``) and a checkpoint repairs it, but a failover inside that window
hands the client a stream that is not the one it was reading: measured, a Redis client
read the tail of a value as the answer to its ``SET`` (CI, session 17).

**What it does.** The relay classifies client requests as the comparator does
(:class:`~colopp.compare.http_reads.ReadClassifier`, the same read rule: methods, path
prefixes, RESP ports). A read delivered to the secondary guest is *pending* on its
connection until the guest sends payload past what the client had received when it asked
(the client's ACK on the request: with pre-release the guest may still be sending the
answer before). A client frame that completes a write (or anything not known to be a read)
waits, with every later frame of its connection, while another connection has a pending
read; while a write waits, client data of every connection queues behind it (a read that
came after the write, served first, would be answered from before it: a mismatch and a
checkpoint for nothing). So the secondary guest gets a write only after it began
answering every read that arrived before it, and what came after the write after it, in
the order the primary got them. Reads wait only behind a waiting write.

What lets a held frame go: the pending reads answered; the connection reset or closed; a
checkpoint (the secondary is then a copy of the primary, which answered those reads in
the order the client saw; a read that the copy still has to answer gets
:data:`CHECKPOINT_GRACE_S` more); and :data:`MAX_PENDING_S` per pending read, so a
service that never answers (a blocking command, a guest that stopped) delays writes by at
most that much, counted in ``fence_expired`` (a pending read the checkpoint's grace ends is
not counted). Nothing is ever dropped. Pure: the caller
gives the time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from colopp.compare.http_reads import ReadClassifier
from colopp.compare.packet import RST, SYN, TCP, FlowKey, Packet
from colopp.compare.seq import HALF, MASK

#: Longest a pending read delays writes (seconds): past it the read no longer counts. Above
#: the 1.5 s a semi-active secondary may lag behind early answers before the comparator
#: forces a checkpoint (``agent/comparator_process.py``), which ends the wait sooner.
MAX_PENDING_S = 2.0
#: After a checkpoint a pending read counts this much longer at most (seconds).
CHECKPOINT_GRACE_S = 0.1


def _after(a: int, b: int) -> bool:
    """True when sequence number ``a`` is past ``b``."""
    return 0 < ((a - b) & MASK) < HALF


class Held(NamedTuple):
    """A client frame the fence holds: its connection (guest -> client key), the bytes to
    send (framed), and what it carries: data, a write, and the client's ACK when it
    completes a read (its connection's read is pending once it goes)."""

    key: FlowKey
    framed: bytes
    data: bool
    write: bool
    read_ack: int | None


class WriteFence:
    """Per connection: the pending read, if any; the held client frames, in arrival order."""

    def __init__(
        self,
        methods: tuple[str, ...],
        prefixes: tuple[str, ...],
        resp_ports: Iterable[int] = (),
        http: bool = True,
    ) -> None:
        self.classifier = ReadClassifier(methods, prefixes, "global", resp_ports, http)
        #: connection -> (guest output position its answer passes, deadline, after a
        #: checkpoint: the deadline is the checkpoint's grace)
        self.pending: dict[FlowKey, tuple[int, float, bool]] = {}
        self._held: deque[Held] = deque()
        self._held_keys: dict[FlowKey, int] = {}  # connection -> frames it has held
        self._writes_waiting = 0  # held writes: data of every connection queues behind them
        self.held_frames = 0  # now
        self.holds = 0  # client frames held, counted once each
        self.writes_held = 0  # of them, those completing a write
        self.released = 0  # held, then sent on
        self.expired = 0  # pending reads that stopped counting at their deadline

    # ---- client frames -------------------------------------------------------------------

    def client(
        self, pkt: Packet, frame: bytes, vnet_hdr_len: int, framed: bytes, now: float
    ) -> bool:
        """A client frame (``pkt`` parsed from ``frame``, ``framed``: as it is sent on), in
        the order the primary got it. True: the fence holds it (it goes out of
        :meth:`release` later); False: send it now (its read, if any, is pending)."""
        key: FlowKey = (TCP, pkt.key[2], pkt.key[1], pkt.key[4], pkt.key[3])
        c = self.classifier
        writes, reads = c.write_requests, c.read_requests
        c.observe(pkt, frame, vnet_hdr_len)
        write = c.write_requests != writes
        read_ack = pkt.ack if c.read_requests != reads else None
        if pkt.flags & (RST | SYN):
            self.pending.pop(key, None)  # the connection is gone, or a new one
        data = pkt.payload_end > pkt.payload_start
        if (
            key in self._held_keys
            or (data and self._writes_waiting)
            or (write and self._others_pending(key, now))
        ):
            self._hold(Held(key, framed, data, write, read_ack))
            return True
        if read_ack is not None:
            self.pending[key] = (read_ack, now + MAX_PENDING_S, False)
        return False

    def _others_pending(self, key: FlowKey, now: float) -> bool:
        pending = self.pending
        if not pending or (len(pending) == 1 and key in pending):
            return False
        for other, (_, deadline, graced) in list(pending.items()):
            if deadline <= now:
                del pending[other]
                self.expired += not graced
            elif other != key:
                return True
        return False

    def _hold(self, held: Held) -> None:
        self._held.append(held)
        self._held_keys[held.key] = self._held_keys.get(held.key, 0) + 1
        self.held_frames += 1
        self.holds += 1
        if held.write:
            self.writes_held += 1
            self._writes_waiting += 1

    # ---- the guest's output --------------------------------------------------------------

    def guest(self, key: FlowKey, flags: int, seq: int, size: int) -> bool:
        """A frame the secondary guest sent on ``key`` (guest -> client); True when it
        answered a pending read (then :meth:`release` may have frames to send)."""
        entry = self.pending.get(key)
        if entry is None:
            return False
        if flags & RST or (size and _after((seq + size) & MASK, entry[0])):
            del self.pending[key]
            return True
        return False

    # ---- letting go ----------------------------------------------------------------------

    def release(self, now: float) -> list[bytes]:
        """The held frames that may go now, framed, in arrival order (per connection in
        order; a write only when no other connection's read is pending)."""
        if not self._held:
            return []
        out: list[bytes] = []
        keep: deque[Held] = deque()
        blocked: set[FlowKey] = set()
        barrier = False  # a write waits: the data that came after it waits too
        for held in self._held:
            key = held.key
            if (
                key in blocked
                or (barrier and held.data)
                or (held.write and self._others_pending(key, now))
            ):
                blocked.add(key)
                barrier |= held.write
                keep.append(held)
                continue
            out.append(held.framed)
            if held.write:
                self._writes_waiting -= 1
            if held.read_ack is not None:
                self.pending[key] = (held.read_ack, now + MAX_PENDING_S, False)
            left = self._held_keys[key] - 1
            if left:
                self._held_keys[key] = left
            else:
                del self._held_keys[key]
        self._held = keep
        self.held_frames = len(keep)
        self.released += len(out)
        return out

    def checkpoint(self, now: float) -> list[bytes]:
        """The secondary loaded a checkpoint: a pending read counts at most
        :data:`CHECKPOINT_GRACE_S` more (the copy answered it, or answers it soon);
        returns what may go now."""
        self.classifier.on_checkpoint()
        grace = now + CHECKPOINT_GRACE_S
        for key, (pos, deadline, _) in list(self.pending.items()):
            if deadline > grace:
                self.pending[key] = (pos, grace, True)
        return self.release(now)

    def next_deadline(self) -> float | None:
        """When a pending read that holds frames stops counting (None: nothing held)."""
        if not self._held or not self.pending:
            return None
        return min(deadline for _, deadline, _ in self.pending.values())

    def handover(self) -> tuple[dict[FlowKey, int], set[FlowKey]]:
        """Failover: the pending reads (connection -> position) and the connections with
        held frames, for the replay to keep the order; the fence forgets both."""
        pending = {key: pos for key, (pos, _, _) in self.pending.items()}
        fenced = set(self._held_keys)
        self.pending.clear()
        self._held.clear()
        self._held_keys.clear()
        self.held_frames = self._writes_waiting = 0
        return pending, fenced

    def counters(self) -> dict[str, int]:
        """For the relay's status."""
        return {
            "fence_holds": self.holds,
            "fence_writes_held": self.writes_held,
            "fence_released": self.released,
            "fence_expired": self.expired,
            "fence_held_frames": self.held_frames,
            "fence_pending_reads": len(self.pending),
        }
