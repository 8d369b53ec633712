"""The release rule for one primary TCP segment, and its payload comparison.

Split out of :mod:`~colopp.compare.tcp` (the connection's state and its pump): these read
and advance that state for one segment. Release rule (colo-compare's): a segment goes out
once its payload matched the secondary's bytes at the same positions (or was compared
before: a retransmission) AND the secondary acknowledged at least as much of the client's
data as the segment does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from colopp.compare.counters import Counters
from colopp.compare.held import HeldFrame
from colopp.compare.packet import ACK, FIN, RST, SYN
from colopp.compare.seq import HALF, MASK

if TYPE_CHECKING:  # tcp.py imports this module: no cycle at run time
    from colopp.compare.tcp import TcpConnection

OK = "ok"
WAIT = "wait"
PAYLOAD_MISMATCH = "tcp_payload_mismatch"
FIN_MISMATCH = "tcp_fin_mismatch"
PRERELEASE_MISMATCH = "prerelease_mismatch"
#: The secondary skipped bytes the primary's head needs (it sent later ones): they come
#: again only with a retransmission timeout, so a checkpoint is asked at once.
SECONDARY_GAP = "secondary_gap"
#: The primary's ACK waited ``ack_wait`` for the secondary's (see
#: :func:`~colopp.compare.tcp_waits.waits_on_ack`).
SECONDARY_ACK_WAIT = "secondary_ack_wait"


def check_segment(conn: TcpConnection, seg: HeldFrame, counters: Counters) -> str:
    """The release rule for one primary segment: OK, WAIT, or a divergence reason."""
    if not seg.compared:
        if seg.flags & SYN and (conn.syn_waits_checkpoint or not conn.s_syn_seen):
            return WAIT
        if (
            not seg.flags & (ACK | SYN | FIN | RST)
            and seg.pos_end == seg.pos_start
            and seg.pos_start not in conn.s_bare
        ):
            # No payload and none of ACK/SYN/FIN/RST: like colo-compare, never released
            # without a secondary counterpart (here: the same kind of segment at the same
            # position); one that never comes is caught by the compare timeout.
            return WAIT
        if seg.pos_end > seg.pos_start:
            verdict = compare_payload(conn, seg, counters)
            fin = conn.s_fin_pos
            if verdict is WAIT and fin is not None and seg.pos_end > fin:
                return FIN_MISMATCH  # the secondary's stream already ended
            if verdict is not OK:
                return verdict
        seg.compared = True
    flags = seg.flags
    if flags & FIN:
        if conn.s_fin_pos is None:
            return WAIT
        if conn.s_fin_pos != seg.pos_end:
            return FIN_MISMATCH
    if flags & RST and not conn.s_rst:
        return WAIT
    if flags & ACK:
        s_ack = conn.s_max_ack
        if s_ack is None or 0 < ((seg.ack - s_ack) & MASK) < HALF:
            return WAIT  # the secondary has not acknowledged this much client data
    return OK


def compare_payload(conn: TcpConnection, seg: HeldFrame, counters: Counters) -> str:
    """Compare the segment's payload with the secondary's bytes at the same positions."""
    stream = conn.stream
    base = stream.base
    start = seg.pos_start
    stop = seg.pos_end
    if base is None:
        # Nothing below the first payload compared: first seen mid-stream, no SYN.
        stream.set_base(start, mid_stream=conn.p_isn is None)
        base = start
    floor = stream.floor
    if floor is not None and start < floor:
        low = stop if stop < floor else floor
        theirs = stream.low_bytes(start, low)
        if theirs is None:
            return WAIT
        off = seg.payload_start
        if seg.frame[off : off + low - start] != theirs:
            return PAYLOAD_MISMATCH
        if stop <= floor:
            return OK
    if stop <= base:
        counters.retransmitted_frames += 1
        return OK
    end = stream.end
    if start > base or end <= base:
        return WAIT  # a gap in the primary's bytes, or no secondary bytes yet
    upto = stop if stop < end else end
    if upto > base:
        off = seg.payload_start + base - start
        if seg.frame[off : off + upto - base] != stream.get(base, upto):
            return PAYLOAD_MISMATCH
        stream.advance(upto)
        if upto - conn.anchor_pos > 1 << 30:
            conn.rebase(upto)
    return OK if upto >= stop else WAIT
