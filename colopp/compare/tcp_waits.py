"""What a TCP connection's held head waits for, read from its state (pure predicates).

Split out of :mod:`~colopp.compare.tcp` (the connection's state and its pump): the core's
fast path asks :func:`head_waits` before pumping; :func:`waits_on_gap` and
:func:`waits_on_ack` tell a head that would otherwise wait for the client's retransmission
timeout, and so ask for a checkpoint (:mod:`~colopp.compare.triggers`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from colopp.compare.held import HeldFrame
from colopp.compare.packet import ACK, RST, SYN
from colopp.compare.seq import HALF, MASK

if TYPE_CHECKING:  # tcp.py imports this module: no cycle at run time
    from colopp.compare.tcp import TcpConnection


def head_waits(conn: TcpConnection) -> bool:
    """True when :meth:`~colopp.compare.tcp.TcpConnection.pump` surely releases nothing
    now: the head of the (non-empty) queue was not compared and none of its bytes came
    from the secondary yet (``pump`` makes the same quick exit inline)."""
    head = conn.queue[0]
    return (
        not head.compared
        and head.pos_end > head.pos_start >= conn.stream.end
        and conn.stream.base is not None
        and conn.s_fin_pos is None
    )


def waits_on_gap(conn: TcpConnection, head: HeldFrame) -> bool:
    """True when ``head`` needs secondary bytes at :attr:`SecondaryStream.end` while the
    secondary already sent bytes past them (parked behind a gap).

    The secondary's output arrives in order over one socket and is never lost on the way,
    so it sends those bytes again only on a retransmission timeout: a segment the
    comparator had to drop, or bytes the checkpointed state counts as sent (primary
    output still in flight at the checkpoint). Nothing the client could see moves
    meanwhile (every later primary segment waits behind the head), so the connection
    would stall for at least one retransmission timeout, with backoff. The secondary
    may still reorder a little (tests do): ``conn.gap_wait`` seconds of grace first.
    """
    stream = conn.stream
    return (
        stream.base is not None
        and not head.compared
        and head.pos_start <= stream.end < head.pos_end
        and conn.s_fin_pos is None
    )


def waits_on_ack(conn: TcpConnection, now: float, wait: float) -> bool:
    """True when the head has waited ``wait`` seconds or more only for the secondary's
    ACK (its payload, if any, matched; the secondary has not acknowledged as much client
    data as it does) while the secondary sent duplicate ACKs: it lacks client bytes.

    Held that long, the client gets no acknowledgement at all on this connection (every
    later primary ACK waits behind it), retransmits only on its timeout, one segment at
    a time with backoff, and an upload stands still until a checkpoint. The likely
    cause is a client segment the secondary's guest did not take in (past its own
    receive window, which can be smaller than the primary's): the client re-sends it
    only on that timeout. A checkpoint gives the secondary the primary's bytes.
    """
    queue = conn.queue
    if not queue or conn.diverged:
        return False
    head = queue[0]
    if now - head.arrival < wait or not head.flags & ACK or head.flags & (SYN | RST):
        return False
    if head.pos_end > head.pos_start and not head.compared:
        return False  # it waits for payload: the gap and timeout rules apply
    s_ack = conn.s_max_ack
    if conn.s_rst and not conn.p_rst:
        # The secondary's guest reset a connection the primary keeps: it will never
        # acknowledge (issue 18: QEMU's filter-rewriter, which saw a handshake straddle a
        # checkpoint, shifts the client's first ACK by minus the primary's ISN and the
        # guest answers with RSTs). Only a checkpoint heals it; a failover before that
        # one keeps the shift on the promoted side and the connection hangs.
        return s_ack is None or 0 < ((head.ack - s_ack) & MASK) < HALF
    # Duplicate ACKs say the secondary is alive and lacks bytes; without them it may
    # only be slow (max_lag and the compare timeout are for that).
    return conn.s_dup_acks >= 2 and s_ack is not None and 0 < ((head.ack - s_ack) & MASK) < HALF
