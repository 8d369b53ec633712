"""The in-order TCP fast paths: the common case of a connection in step, done in one call.

Each function does exactly what the general path of :class:`~colopp.compare.tcp.TcpConnection`
would do for its case, or nothing (then the caller takes the general path); the property
tests ``test_fast_and_general_paths_agree`` and (with a pre-release policy, where only
:func:`primary_in_order` is used and the core offers a queued segment early itself)
``test_with_a_policy_fast_and_general_paths_agree`` hold them to that.
Sequence arithmetic is inlined (see :mod:`colopp.compare.seq`): this is the hot path.
"""

from __future__ import annotations

from colopp.compare.held import HeldFrame
from colopp.compare.packet import ACK, FIN, RST, SYN
from colopp.compare.seq import HALF, MASK
from colopp.compare.tcp import TcpConnection

# Outcomes of primary_in_order.
NOT_HANDLED = 0  # not the common case: nothing changed, take the general path
MATCHED = 1  # compared and releasable now; nothing was queued
QUEUED = 2  # queued as the new tail (``queue[-1]``); nothing can be released yet

# Segments with these flags always take the general path.
_SPECIAL = SYN | FIN | RST


def primary_in_order(
    conn: TcpConnection,
    frame: bytes,
    vnet_hdr_len: int,
    now: float,
    seq: int,
    ack: int,
    flags: int,
    payload_start: int,
    payload_end: int,
) -> int:
    """:meth:`TcpConnection.add_primary` + :meth:`TcpConnection.pump` for the common
    in-order segment.

    Handles a segment without SYN/FIN/RST on a connection that is not diverged, when it
    either completes at once (its bytes are exactly the next ones the secondary already
    delivered, or it carries none, and the secondary's ACK covers it) or must simply wait
    at the tail of the queue. Returns :data:`MATCHED`, :data:`QUEUED` (the new
    :class:`HeldFrame` is ``queue[-1]``) or :data:`NOT_HANDLED` (nothing changed). The
    state left behind is exactly what the general path would leave (before it pumps a new
    head or offers a queued segment early: the caller does that).
    """
    anchor = conn.anchor_seq
    stream = conn.stream
    base = stream.base
    if anchor is None or base is None or conn.diverged or flags & _SPECIAL:
        return NOT_HANDLED
    d = (seq - anchor) & MASK
    if d >= HALF:
        d -= 1 << 32
    start = conn.anchor_pos + d
    size = payload_end - payload_start
    end = start + size
    queue = conn.queue
    if queue:
        if queue[-1].pos_start > start:
            return NOT_HANDLED
        outcome = QUEUED  # behind a waiting head: add_primary would not pump
    elif size and start >= stream.end and conn.s_fin_pos is None:
        if stream.pending_bytes and start == stream.end:
            return NOT_HANDLED  # the secondary skipped these bytes: pump asks a checkpoint
        outcome = QUEUED  # pump's quick exit: none of its bytes arrived yet
    else:
        s_ack = conn.s_max_ack
        if flags & ACK and (s_ack is None or 0 < ((ack - s_ack) & MASK) < HALF):
            return NOT_HANDLED
        if not flags & ACK and not size:
            return NOT_HANDLED  # no payload, no ACK: it waits for a counterpart
        if size:
            if start != base or stream.end < end:
                return NOT_HANDLED
            if not stream.holds_at(frame, payload_start, size):
                return NOT_HANDLED  # a divergence: the general path reports it
            stream.advance(end)
            if end - conn.anchor_pos > 1 << 30:
                conn.rebase(end)
        outcome = MATCHED
    p_ack = conn.p_max_ack
    if flags & ACK and (p_ack is None or 0 < ((ack - p_ack) & MASK) < HALF):
        conn.p_max_ack = ack
    if conn.p_high is None or end > conn.p_high:
        conn.p_high = end
    if outcome is MATCHED:
        if conn.closed_at is None and conn.is_closed():
            conn.closed_at = now
        return MATCHED
    held = HeldFrame(frame, vnet_hdr_len, now, conn.key, payload_start, payload_end, ack, flags)
    held.pos_start = start
    held.pos_end = end
    queue.append(held)
    return QUEUED


def secondary_in_order(
    conn: TcpConnection,
    frame: bytes,
    now: float,
    seq: int,
    ack: int,
    flags: int,
    payload_start: int,
    payload_end: int,
) -> HeldFrame | None:
    """:meth:`TcpConnection.add_secondary` + the first step of :meth:`TcpConnection.pump`.

    Handles a secondary segment without SYN/FIN/RST whose bytes are exactly those of the
    waiting head segment, itself not yet compared and without SYN/FIN/RST, when every
    earlier secondary byte was already compared, the bytes are equal and the secondary's
    ACK covers the head. Then the head is compared, dequeued and returned: the caller
    releases it and pumps on if the queue is not empty. Returns None (nothing changed)
    otherwise. No pre-release policy may be in use.
    """
    queue = conn.queue
    anchor = conn.anchor_seq
    if not queue or anchor is None or conn.diverged or conn.deferring or flags & _SPECIAL:
        return None
    head = queue[0]
    if head.compared or head.flags & _SPECIAL:
        return None
    stream = conn.stream
    d = (seq - conn.delta - anchor) & MASK
    if d >= HALF:
        d -= 1 << 32
    start = conn.anchor_pos + d
    end = start + payload_end - payload_start
    if (
        head.pos_start != start
        or head.pos_end != end
        or end == start
        or stream.base != start
        or stream.end != start
        or stream.pending_bytes
    ):
        return None
    s_ack = conn.s_max_ack
    if flags & ACK and (s_ack is None or 0 < ((ack - s_ack) & MASK) < HALF):
        s_ack = ack
    if head.flags & ACK and (s_ack is None or 0 < ((head.ack - s_ack) & MASK) < HALF):
        return None
    if not frame.startswith(head.frame[head.payload_start : head.payload_end], payload_start):
        return None
    if s_ack != conn.s_max_ack:
        conn.s_max_ack = s_ack
        conn.s_dup_acks = 0
    # The bytes arrived and were compared at once: nothing is ever stored.
    stream.base = stream.end = end
    if end - conn.anchor_pos > 1 << 30:
        conn.rebase(end)
    head.compared = True
    queue.popleft()
    if not queue and conn.closed_at is None and conn.is_closed():
        conn.closed_at = now
    return head
