"""Per-connection TCP comparison: primary segments against the secondary's byte stream.

The primary and the secondary segment the same stream differently (a FIN piggy-backed on data
on one side, separate on the other), so payload is compared as a byte stream over aligned
sequence ranges, not packet by packet. Sequence numbers are unwrapped into monotonic stream
positions per connection.

Sequence spaces. On the secondary host, filter-rewriter maps the secondary's sequence numbers
into the primary's for connections the guest accepted: it learns the offset from the secondary's
SYN-ACK and the client's ACK, rewrites only segments whose flags have ACK without SYN, and never
touches a SYN-ACK. So a secondary SYN(-ACK) is never mapped; for connections the guest opened
itself (SYN without ACK) filter-rewriter learns no offset, and this module maps the secondary's
sequence numbers by the ISN difference. After a checkpoint both guests share one TCP state and
filter-rewriter resets its offsets: the difference is 0 again.

Release rule (colo-compare's): a primary segment goes out once its payload matched the
secondary's bytes at the same positions (or was compared before: a retransmission) AND the
secondary acknowledged at least as much of the client's data as the segment does -- else the
client could drop bytes the secondary never received.

Pre-release (COLO++, :mod:`~colopp.compare.prerelease`): while a connection waits, a policy
may let its frames leave early, in stream order; the absolute rule above (never acknowledge
client data the secondary has not) holds for them too and is checked here, not by the policy.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from typing import TYPE_CHECKING

from colopp.compare.counters import Counters
from colopp.compare.early import offer_early
from colopp.compare.held import HeldFrame, ReleasePolicy
from colopp.compare.packet import ACK, FIN, RST, SYN, FlowKey, Packet
from colopp.compare.seq import HALF, MASK, seq_after
from colopp.compare.stream import SecondaryStream
from colopp.compare.tcp_check import (
    OK,
    PRERELEASE_MISMATCH,
    SECONDARY_GAP,
    WAIT,
    check_segment,
)
from colopp.compare.tcp_waits import waits_on_gap

if TYPE_CHECKING:
    from colopp.compare.ack_lower import AckLow


def _pos_start(held: HeldFrame) -> int:
    return held.pos_start


class TcpConnection:
    """Comparison state of one guest->client TCP connection (a 5-tuple)."""

    __slots__ = (
        "ack_low",
        "anchor_pos",
        "anchor_seq",
        "closed_at",
        "deferring",
        "delta",
        "delta_pending",
        "diverged",
        "gap_wait",
        "host_held",
        "key",
        "last_seen",
        "next_epoch",
        "p_fin_pos",
        "p_gen",
        "p_high",
        "p_isn",
        "p_max_ack",
        "p_rst",
        "pre_memo",
        "pre_prefix",
        "queue",
        "s_bare",
        "s_dup_acks",
        "s_fin_pos",
        "s_gen",
        "s_isn",
        "s_max_ack",
        "s_rst",
        "s_syn_seen",
        "stopped",
        "stream",
        "syn_waits_checkpoint",
        "unplaced",
    )

    def __init__(
        self,
        key: FlowKey,
        now: float,
        counters: Counters,
        max_pending: int = 256,
        gap_wait: float = 0.02,
    ) -> None:
        self.key = key
        self.gap_wait = gap_wait
        self.last_seen = now
        self.queue: deque[HeldFrame] = deque()
        self.stream = SecondaryStream(counters, max_pending)
        self.anchor_seq: int | None = None
        self.anchor_pos = 0
        self.diverged = False
        self.closed_at: float | None = None
        self.delta = 0
        self.delta_pending = False
        self.p_gen = 0
        self.s_gen = 0
        # The first ``pre_prefix`` frames of ``queue`` were all pre-released.
        self.pre_prefix = 0
        self.pre_memo: tuple[int | None, int, int, int] | None = None
        # Secondary segments not placed yet: ``unplaced`` while the secondary's incarnation
        # runs ahead of the primary's (its sequence offset is unknown until the primary's
        # SYN), ``next_epoch`` while a checkpoint runs (between STOP and RESUME).
        self.stopped = False
        self.deferring = False  # stopped, or the secondary's incarnation is ahead
        self.unplaced: list[tuple[Packet, bytes, float]] = []
        self.next_epoch: list[tuple[Packet, bytes, float]] = []
        # Positions of the secondary's segments without payload and without ACK/SYN/FIN/RST.
        self.s_bare: set[int] = set()
        # The primary's SYN(-ACK) leaves only with a checkpoint (IPv6: see core.py).
        self.syn_waits_checkpoint = False
        self._reset_primary()
        self._reset_secondary()

    def _reset_primary(self) -> None:
        # Lowered early ACKs still owed to the client (:mod:`~colopp.compare.ack_lower`).
        self.ack_low: AckLow | None = None
        self.p_isn: int | None = None
        self.p_high: int | None = None
        self.p_fin_pos: int | None = None
        self.p_rst = False
        self.p_max_ack: int | None = None
        # The secondary host's receipt (start, end) for this incarnation (receipts.py).
        self.host_held: tuple[int, int] | None = None

    def _reset_secondary(self) -> None:
        self.s_isn: int | None = None
        self.s_syn_seen = False
        self.s_max_ack: int | None = None
        self.s_dup_acks = 0  # bare secondary ACKs that did not move s_max_ack, since it moved
        self.s_fin_pos: int | None = None
        self.s_rst = False

    def _pos(self, seq: int) -> int:
        if self.anchor_seq is None:
            self.anchor_seq = seq
            self.anchor_pos = 0
            return 0
        d = (seq - self.anchor_seq) & MASK
        if d >= HALF:
            d -= 1 << 32
        return self.anchor_pos + d

    # ---- primary -------------------------------------------------------------------------

    def add_primary(self, held: HeldFrame, pkt: Packet) -> bool:
        """Queue a primary segment (sorted by stream position, stable for equal positions).

        Returns True when it became the head of the queue: only then can :meth:`pump`
        release anything new.
        """
        flags = pkt.flags
        seq = pkt.seq
        if flags & SYN:
            self._primary_syn(seq)
            seq = (seq + 1) & MASK
        start = self._pos(seq)
        end = start + pkt.payload_end - pkt.payload_start
        held.pos_start = start
        held.pos_end = end
        if flags & FIN:
            self.p_fin_pos = end
        if flags & RST:
            self.p_rst = True
        if flags & ACK and (self.p_max_ack is None or seq_after(pkt.ack, self.p_max_ack)):
            self.p_max_ack = pkt.ack
        if self.p_high is None or end > self.p_high:
            self.p_high = end
        queue = self.queue
        if not queue:
            queue.append(held)
            return True
        if queue[-1].pos_start <= start:
            queue.append(held)
            return False
        index = bisect_right(queue, start, key=_pos_start)
        queue.insert(index, held)
        self.pre_prefix = min(self.pre_prefix, index)
        return index == 0

    def _primary_syn(self, seq: int) -> None:
        if self.p_isn != seq:
            # A new incarnation of this 5-tuple (or the first SYN we see).
            if self.p_isn is not None or self.p_high is not None:
                self._reset_primary()
                self.anchor_seq = None
                self.stream.reset(None)
                self.closed_at = None
                self.diverged = False
            self.p_gen += 1
            if self.s_gen < self.p_gen:
                self._reset_secondary()
            self.p_isn = seq
            self.deferring = self.stopped or self.s_gen > self.p_gen
        if self.delta_pending and self.s_isn is not None:
            self.delta = (self.s_isn - seq) & MASK
        start = self._pos((seq + 1) & MASK)
        if self.stream.base is None:
            self.stream.set_base(start)
        if self.unplaced and not self.deferring:
            # The secondary's SYN and data came first: place them now the offset is known.
            self._replay(self.unplaced)

    # ---- secondary -----------------------------------------------------------------------

    def add_secondary(self, pkt: Packet, frame: bytes, now: float) -> bool:
        """Take a secondary segment's ACK, flags and payload; False if its bytes were dropped.

        While a checkpoint runs (:meth:`on_stop`) segments are kept for the next epoch; while
        the secondary's incarnation of the connection is ahead of the primary's they wait
        for the primary's SYN (their sequence offset is unknown until then).
        """
        flags = pkt.flags
        if self.deferring:
            if self.stopped:
                return self._defer(self.next_epoch, pkt, frame, now)
            if not flags & SYN:
                return self._defer(self.unplaced, pkt, frame, now)
        if flags & SYN:
            self._secondary_syn(pkt.seq, flags)
        if flags & ACK and (self.s_max_ack is None or seq_after(pkt.ack, self.s_max_ack)):
            self.s_max_ack = pkt.ack
            self.s_dup_acks = 0
        elif flags & ACK and pkt.ack == self.s_max_ack and pkt.payload_end == pkt.payload_start:
            self.s_dup_acks += 1  # it got something, yet acknowledges no more: a hole
        if flags & SYN:
            return True
        start = self._pos((pkt.seq - self.delta) & MASK)
        size = pkt.payload_end - pkt.payload_start
        stored = True
        if size and not self.diverged:
            # After a divergence every stored byte is discarded at the checkpoint: a bulk
            # sender would only fill the out-of-order map (and count drops) meanwhile.
            stored = self.stream.add(start, frame[pkt.payload_start : pkt.payload_end], now)
        if flags & FIN:
            self.s_fin_pos = start + size
        if flags & RST:
            self.s_rst = True
        if not size and not flags & (ACK | FIN | RST) and len(self.s_bare) < 64:
            self.s_bare.add(start)
        return stored

    def _defer(
        self, into: list[tuple[Packet, bytes, float]], pkt: Packet, frame: bytes, now: float
    ) -> bool:
        # Output of the next epoch comes in order and at line rate (a bulk sender fills its
        # whole window as it resumes): only the core's queue bounds limit it. Segments of
        # an incarnation ahead of the primary's are kept in a small bounded list.
        if into is self.unplaced and len(into) >= self.stream.max_pending:
            return False
        into.append((pkt, frame, now))
        c = self.stream.counters
        c.held_secondary_frames += 1
        c.held_secondary_bytes += pkt.payload_end - pkt.payload_start
        return True

    def _forget_deferred(self, deferred: list[tuple[Packet, bytes, float]]) -> None:
        c = self.stream.counters
        c.held_secondary_frames -= len(deferred)
        c.held_secondary_bytes -= sum(p.payload_end - p.payload_start for p, _, _ in deferred)
        deferred.clear()

    def _replay(self, deferred: list[tuple[Packet, bytes, float]]) -> None:
        segments = list(deferred)
        self._forget_deferred(deferred)
        for pkt, frame, arrival in segments:
            if not self.add_secondary(pkt, frame, arrival):
                self.stream.counters.secondary_dropped += 1

    def _secondary_syn(self, seq: int, flags: int) -> None:
        if self.s_isn != seq:
            self._reset_secondary()
            self.s_gen += 1
            self.s_isn = seq
            self.deferring = self.stopped or self.s_gen > self.p_gen
            self.stream.reset(self.stream.base if self.s_gen <= self.p_gen else None)
        self.s_syn_seen = True
        if flags & ACK:
            # The guest accepted the connection: filter-rewriter maps later segments for us.
            self.delta = 0
            self.delta_pending = False
        else:
            self.delta_pending = True
            if self.p_isn is not None:
                self.delta = (seq - self.p_isn) & MASK

    # ---- comparison ----------------------------------------------------------------------

    def pump(
        self,
        counters: Counters,
        policy: ReleasePolicy | None,
        now: float,
        released: list[HeldFrame],
        pre_released: list[HeldFrame],
    ) -> str | None:
        """Release what the rules allow (appended to ``released``), in stream order.

        ``policy`` (None: never) may pre-release waiting segments (see
        :func:`colopp.compare.early.offer_early`).

        Returns a divergence reason, or None. After a divergence the connection holds
        everything until :meth:`on_checkpoint`.
        """
        if self.diverged:
            return None
        queue = self.queue
        stream = self.stream
        while queue:
            head = queue[0]
            if (
                not head.compared
                and head.pos_end > head.pos_start >= stream.end
                and stream.base is not None
                and self.s_fin_pos is None
            ):
                verdict = WAIT  # quick exit: none of its bytes came from the secondary yet
            else:
                verdict = check_segment(self, head, counters)
            if verdict is OK:
                queue.popleft()
                if self.pre_prefix:
                    self.pre_prefix -= 1
                released.append(head)
                continue
            if (
                verdict is WAIT
                and stream.pending_bytes
                and now - head.arrival >= self.gap_wait
                and waits_on_gap(self, head)
            ):
                # Not a divergence: the bytes past the gap stay (see on_checkpoint).
                return SECONDARY_GAP
            if verdict is WAIT:
                if policy is not None:
                    offer_early(self, policy, now, pre_released)
                break
            self.diverged = True
            return PRERELEASE_MISMATCH if head.pre_released else verdict
        if not queue and self.closed_at is None and self.is_closed():
            self.closed_at = now
        return None

    def is_closed(self) -> bool:
        both_fin = self.p_fin_pos is not None and self.s_fin_pos is not None
        return both_fin or (self.p_rst and self.s_rst)

    def rebase(self, pos: int) -> None:
        # Keep unwrapping valid on streams longer than 2 GiB.
        if self.anchor_seq is not None:
            self.anchor_seq = (self.anchor_seq + pos - self.anchor_pos) & MASK
            self.anchor_pos = pos

    # ---- lifecycle -----------------------------------------------------------------------

    def on_stop(self) -> None:
        """A checkpoint started (the primary's STOP; everything the secondary sent before it
        was read): what the secondary sends from now on is the next epoch's output."""
        self.stopped = self.deferring = True

    def on_checkpoint(self, stop_seen: bool = False) -> None:
        """The SVM is now a copy of the PVM: make the secondary's view equal the primary's.

        Held frames were flushed by the core. Comparison restarts after the last byte the
        primary produced, so frames in flight across the checkpoint are seen as
        retransmissions, not divergence. The secondary's output of the old epoch is
        discarded, its ACKs too; with ``stop_seen`` (:meth:`on_stop` was called) exactly
        what it sent since the STOP is kept, as the new epoch's. Without it, see
        :meth:`SecondaryStream.restart_at`.
        """
        self.queue.clear()
        self.pre_prefix = 0
        self.pre_memo = None
        self.syn_waits_checkpoint = False
        self._forget_deferred(self.unplaced)
        if not stop_seen and self.p_high is not None and self.delta == 0 and not self.diverged:
            self.stream.restart_at(self.p_high)
        else:
            self.stream.reset(self.p_high)
        self.diverged = False
        self.delta = 0
        self.delta_pending = False
        self.s_gen = self.p_gen
        if self.p_isn is not None:
            self.s_syn_seen = True
            self.s_isn = self.p_isn
        # What the old secondary acknowledged is gone with it; the new one has what the
        # primary had.
        self.s_max_ack = self.p_max_ack
        self.s_dup_acks = 0
        # A receipt of the old epoch may rest on bytes the old secondary acknowledged and
        # its successor lacks (the primary still queued them at STOP): forget it.
        self.host_held = None
        self.s_fin_pos = self.p_fin_pos
        self.s_rst = self.p_rst
        self.s_bare.clear()
        self.stopped = self.deferring = False
        if self.next_epoch:
            self._replay(self.next_epoch)

    def secondary_held(self) -> tuple[int, int]:
        """(frames, bytes) of secondary output waiting for the primary."""
        frames, size = self.stream.held()
        for deferred in (self.unplaced, self.next_epoch):
            frames += len(deferred)
            size += sum(p.payload_end - p.payload_start for p, _, _ in deferred)
        return frames, size

    def oldest_secondary(self) -> float | None:
        """Arrival time of the oldest unmatched secondary byte."""
        oldest = self.stream.oldest_arrival()
        for deferred in (self.unplaced, self.next_epoch):
            if deferred and (oldest is None or deferred[0][2] < oldest):
                oldest = deferred[0][2]
        return oldest
