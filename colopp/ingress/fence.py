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

**Scope.** With the comparator's ``key`` scope (the operator declared the resources
independent: :mod:`colopp.compare.scope`) only resources in common count: a write waits
for pending reads of the resources it writes, and only requests touching a waiting write's
resources queue behind it (a request of unknown reach, a malformed one or a non-TCP
datagram touches everything). With ``global`` every request touches everything. Measured
(session 18, ``bench.pair``, semi-active (e), closed loop): with every request touching
everything a write drains the secondary's pipeline, and each drain longer than the 40 ms
lag bound forced a checkpoint: Redis 2226 -> 703 req/s, 6 -> 59 checkpoints.

What lets a held frame go: the pending reads answered; the connection reset or closed; a
checkpoint (the secondary is then a copy of the primary, which answered those reads in
the order the client saw; a read that the copy still has to answer gets
:data:`CHECKPOINT_GRACE_S` more); and :data:`MAX_PENDING_S` per pending read, so a
service that never answers (a blocking command, a guest that stopped) delays writes by at
most that much, counted in ``fence_expired`` (a pending read the checkpoint's grace ends is
not counted); and :data:`MAX_HELD_BYTES` held, so a client flooding writes behind a read
that is never answered does not grow this host's memory (``fence_overflow``: everything
held goes, in order). Past either valve the secondary may answer an early-answered read
after a later write: the comparison finds it (a ``prerelease_mismatch`` checkpoint) while
the primary lives; a failover inside that window has the hole the fence closes. Nothing is
ever dropped. Pure: the caller gives the time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from colopp.compare.http_reads import ReadClassifier
from colopp.compare.packet import RST, SYN, TCP, FlowKey, Malformed, Packet, parse_frame
from colopp.compare.seq import HALF, MASK

#: Longest a pending read delays writes (seconds): past it the read no longer counts. Above
#: the 1.5 s a semi-active secondary may lag behind early answers before the comparator
#: forces a checkpoint (``agent/comparator_process.py``), which ends the wait sooner.
MAX_PENDING_S = 2.0
#: After a checkpoint a pending read counts this much longer at most (seconds).
CHECKPOINT_GRACE_S = 0.1
#: Bytes held at most (framed, all connections together): a client flooding writes while a
#: read is pending must not grow this host's memory. Past it, pending reads stop counting
#: and everything held goes, in order (``fence_overflow``).
MAX_HELD_BYTES = 16 * 1024 * 1024

#: The resources a request touches: a set of them, or None: every resource.
Reach = frozenset[bytes] | None
_NOTHING: Reach = frozenset()


def _after(a: int, b: int) -> bool:
    """True when sequence number ``a`` is past ``b``."""
    return 0 < ((a - b) & MASK) < HALF


def _meet(a: Reach, b: Reach) -> bool:
    """True when two reaches have a resource in common."""
    if a is None:
        return b is None or bool(b)
    if b is None:
        return bool(a)
    return not a.isdisjoint(b)


def _join(a: Reach, b: Reach) -> Reach:
    return None if a is None or b is None else a | b


class Pending(NamedTuple):
    """A read the secondary guest got and has not begun to answer."""

    pos: int  # the guest output position its answer passes
    deadline: float
    graced: bool  # the deadline is a checkpoint's grace
    reach: Reach


class Held(NamedTuple):
    """A client frame the fence holds: its connection (guest -> client key), the bytes to
    send (framed), the resources of the writes and of the reads it completes (empty: none),
    and the client's ACK when it completes a read (its read is pending once it goes)."""

    key: FlowKey
    framed: bytes
    writes: Reach
    reads: Reach
    read_ack: int | None


class WriteFence:
    """Per connection: the pending read, if any; the held client frames, in arrival order."""

    def __init__(
        self,
        methods: tuple[str, ...],
        prefixes: tuple[str, ...],
        resp_ports: Iterable[int] = (),
        http: bool = True,
        scope: str = "global",
        max_bytes: int = MAX_HELD_BYTES,
    ) -> None:
        self.max_bytes = max_bytes
        self.classifier = ReadClassifier(methods, prefixes, scope, resp_ports, http)
        self.classifier.requests = []
        self.by_key = self.classifier.scope.by_key
        self.pending: dict[FlowKey, Pending] = {}
        self._held: deque[Held] = deque()
        self._held_keys: dict[FlowKey, int] = {}  # connection -> frames it has held
        self._waiting: Reach = _NOTHING  # what the held writes write (the barrier)
        self.held_frames = 0  # now
        self.held_bytes = 0  # now
        self.overflowed = False  # past max_bytes: call release() now
        self.overflows = 0  # times held bytes passed max_bytes
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
        requests = c.requests
        assert requests is not None
        c.observe(pkt, frame, vnet_hdr_len)
        writes = reads = _NOTHING
        for read, keys in requests:
            reach = frozenset(keys) if self.by_key and keys else None
            if read:
                reads = _join(reads, reach)
            else:
                writes = _join(writes, reach)
        requests.clear()
        read_ack = pkt.ack if reads != _NOTHING else None
        if pkt.flags & (RST | SYN):
            self.pending.pop(key, None)  # the connection is gone, or a new one
        held = Held(key, framed, writes, reads, read_ack)
        if (
            key in self._held_keys
            or _meet(self._waiting, _join(writes, reads))
            or (writes != _NOTHING and self._pending_meets(key, writes, now))
        ):
            self._hold(held)
            return True
        self._delivered(held, now)
        return False

    def offer(
        self,
        frame: bytes,
        vnet_hdr_len: int,
        framed: bytes,
        now: float,
        pkt: Packet | Malformed | None = None,
    ) -> bool:
        """:meth:`client` for a frame as read (``pkt``: parsed already, or None: parsed
        here); a frame that does not parse is never held (the guest drops it)."""
        if pkt is None:
            pkt = parse_frame(frame, vnet_hdr_len)
        return isinstance(pkt, Packet) and self.client(pkt, frame, vnet_hdr_len, framed, now)

    def offer_plain(
        self,
        key: FlowKey,
        flags: int,
        size: int,
        buf: bytes,
        spans: tuple[int, int, int, int],
        now: float,
    ) -> bool:
        """:meth:`offer` for a plain IPv4/TCP frame read already (``key`` guest -> client,
        its ``flags`` and payload ``size``; ``spans``: where its framed bytes, the frame and
        its Ethernet header start in ``buf``, and where it ends). The bulk case costs no
        copy and no parse: with nothing held and no read pending, a payload segment of a
        lost stream (an upload that is no service's requests) is a write that goes now."""
        header_start, start, end, vnet = spans
        if size and not flags & (SYN | RST) and not self._held and not self.pending:
            requests = self.classifier.requests
            if self.classifier.lost_write(key):
                if requests:
                    requests.clear()
                return False
        return self.offer(buf[start:end], vnet, buf[header_start:end], now)

    def _delivered(self, held: Held, now: float) -> None:
        if held.read_ack is not None:
            self.pending[held.key] = Pending(held.read_ack, now + MAX_PENDING_S, False, held.reads)

    def _pending_meets(self, key: FlowKey, writes: Reach, now: float) -> bool:
        """True when another connection's pending read touches ``writes``."""
        pending = self.pending
        if not pending or (len(pending) == 1 and key in pending):
            return False
        meets = False
        for other, entry in list(pending.items()):
            if entry.deadline <= now:
                del pending[other]
                self.expired += not entry.graced
            elif other != key and not meets:
                meets = _meet(entry.reach, writes)
        return meets

    def _hold(self, held: Held) -> None:
        self._held.append(held)
        self._held_keys[held.key] = self._held_keys.get(held.key, 0) + 1
        self.held_frames += 1
        self.held_bytes += len(held.framed)
        self.holds += 1
        if held.writes != _NOTHING:
            self.writes_held += 1
            self._waiting = _join(self._waiting, held.writes)
        if self.held_bytes > self.max_bytes and not self.overflowed:
            self.overflowed = True  # no pending read counts: release() lets everything go
            self.overflows += 1
            self.pending.clear()

    # ---- the guest's output --------------------------------------------------------------

    def guest(self, key: FlowKey, flags: int, seq: int, size: int) -> bool:
        """A frame the secondary guest sent on ``key`` (guest -> client); True when it
        answered a pending read (then :meth:`release` may have frames to send)."""
        entry = self.pending.get(key)
        if entry is None:
            return False
        if flags & RST or (size and _after((seq + size) & MASK, entry.pos)):
            del self.pending[key]
            return True
        return False

    # ---- letting go ----------------------------------------------------------------------

    def release(self, now: float) -> list[bytes]:
        """The held frames that may go now, framed, in arrival order (per connection in
        order; a write only when no other connection's pending read touches it; a request
        touching a write still held, behind it)."""
        self.overflowed = False
        if not self._held:
            return []
        out: list[bytes] = []
        keep: deque[Held] = deque()
        blocked: set[FlowKey] = set()
        waiting: Reach = _NOTHING
        for held in self._held:
            key = held.key
            if (
                key in blocked
                or _meet(waiting, _join(held.writes, held.reads))
                or (held.writes != _NOTHING and self._pending_meets(key, held.writes, now))
            ):
                blocked.add(key)
                waiting = _join(waiting, held.writes)
                keep.append(held)
                continue
            out.append(held.framed)
            self._delivered(held, now)
            left = self._held_keys[key] - 1
            if left:
                self._held_keys[key] = left
            else:
                del self._held_keys[key]
        self._held = keep
        self._waiting = waiting
        self.held_frames = len(keep)
        self.held_bytes = sum(len(held.framed) for held in keep)
        self.released += len(out)
        return out

    def checkpoint(self, now: float) -> list[bytes]:
        """The secondary loaded a checkpoint: a pending read counts at most
        :data:`CHECKPOINT_GRACE_S` more (the copy answered it, or answers it soon);
        returns what may go now."""
        grace = now + CHECKPOINT_GRACE_S
        for key, entry in list(self.pending.items()):
            if entry.deadline > grace:
                self.pending[key] = entry._replace(deadline=grace, graced=True)
        return self.release(now)

    def next_deadline(self) -> float | None:
        """When a pending read that holds frames stops counting (None: nothing held)."""
        if not self._held or not self.pending:
            return None
        return min(entry.deadline for entry in self.pending.values())

    def handover(self) -> tuple[dict[FlowKey, int], set[FlowKey]]:
        """Failover: the pending reads (connection -> position) and the connections with
        held frames, for the replay to keep the order; the fence forgets both."""
        pending = {key: entry.pos for key, entry in self.pending.items()}
        fenced = set(self._held_keys)
        self.pending.clear()
        self._held.clear()
        self._held_keys.clear()
        self._waiting = _NOTHING
        self.held_frames = self.held_bytes = 0
        self.overflowed = False
        return pending, fenced

    def counters(self) -> dict[str, int]:
        """For the relay's status."""
        return {
            "fence_holds": self.holds,
            "fence_writes_held": self.writes_held,
            "fence_released": self.released,
            "fence_expired": self.expired,
            "fence_overflow": self.overflows,
            "fence_held_frames": self.held_frames,
            "fence_held_bytes": self.held_bytes,
            "fence_pending_reads": len(self.pending),
        }
