"""Pre-release on one TCP connection: which waiting primary frames may leave early.

The policy (:mod:`colopp.compare.prerelease`) says what derives from synchronized state;
these functions apply the core's own limits first: no SYN/RST, payload in stream order,
and the absolute rule that nothing leaving early acknowledges client bytes the secondary
has not acknowledged (a payload segment beyond it may leave with its ACK lowered:
:mod:`~colopp.compare.ack_lower`). Frames that leave early stay queued and are compared later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from colopp.compare import ack_lower
from colopp.compare.counters import Counters
from colopp.compare.held import HeldFrame, ReleasePolicy
from colopp.compare.packet import ACK, FIN, RST, SYN, FlowKey
from colopp.compare.receipts import Receipt, host_covers
from colopp.compare.seq import HALF, MASK

if TYPE_CHECKING:  # tcp.py calls offer_early: no import cycle at run time
    from colopp.compare.tcp import TcpConnection

#: Frames past the pre-released prefix a pre-release scan looks at, at most (bounds the work
#: per call; bare ACKs further back get their turn as the head moves).
PRE_RELEASE_SCAN = 32
#: :attr:`HeldFrame.refused` values: why the last offer of a frame was refused.
REFUSED_ACK = 1
REFUSED_POLICY = 2


def offer_early(
    conn: TcpConnection,
    policy: ReleasePolicy,
    now: float,
    out: list[HeldFrame],
    force: bool = False,
) -> None:
    """Ask ``policy`` about the waiting frames past the pre-released prefix; append those
    it grants (marked ``pre_released``) to ``out``.

    Payload leaves in stream order: after a refused segment only bare ACKs are offered.
    Skipped when nothing changed since the last scan, unless ``force`` (the policy's own
    view changed).
    """
    queue = conn.queue
    if conn.diverged or not queue:
        return
    prefix = conn.pre_prefix
    memo = (conn.s_max_ack, len(queue), prefix, queue[0].pos_start)
    if memo == conn.pre_memo and not force:
        return
    conn.pre_memo = memo
    in_order = True
    extend = True
    for index in range(prefix, min(len(queue), prefix + PRE_RELEASE_SCAN)):
        held = queue[index]
        if not held.pre_released:
            bare = held.pos_end == held.pos_start and not held.flags & FIN
            if (in_order or bare) and may_go_early(conn, held, policy, now):
                held.pre_released = True
                out.append(held)
            elif not bare:
                in_order = False
        if extend and held.pre_released:
            conn.pre_prefix = index + 1
        else:
            extend = False


def offer_tail(conn: TcpConnection, held: HeldFrame, policy: ReleasePolicy, now: float) -> bool:
    """Ask ``policy`` about a frame just queued behind a waiting head; True if granted.

    O(1): only a bare ACK, or a frame right after the pre-released prefix, is offered.
    """
    queue = conn.queue
    if conn.diverged or queue[-1] is not held:
        return False
    last = len(queue) - 1
    bare = held.pos_end == held.pos_start and not held.flags & FIN
    if not (bare or conn.pre_prefix == last) or not may_go_early(conn, held, policy, now):
        return False
    held.pre_released = True
    if conn.pre_prefix == last:
        conn.pre_prefix = last + 1
    return True


def may_go_early(conn: TcpConnection, held: HeldFrame, policy: ReleasePolicy, now: float) -> bool:
    """The core's own limits first, then the policy."""
    # The core's own limits first: no SYN/RST, and the absolute ACK rule (a payload segment
    # may leave with its ACK lowered to what the secondary acknowledged, when the policy says
    # ``lower_acks``: :mod:`~colopp.compare.ack_lower`).
    flags = held.flags
    if flags & (SYN | RST):
        return False
    lowered = None
    if flags & ACK:
        s_ack = conn.s_max_ack
        if (s_ack is None or 0 < ((held.ack - s_ack) & MASK) < HALF) and not host_covers(
            s_ack, conn.host_held, held.ack
        ):
            # Neither the secondary guest nor the secondary host holds every client byte
            # this acknowledges (receipts.py); opt-in, it may leave with its ACK lowered.
            if getattr(policy, "lower_acks", False):
                lowered = ack_lower.prepare(conn, held)
            if lowered is None:
                held.refused = REFUSED_ACK
                return False
    stream = conn.stream
    if (
        not held.compared
        and held.pos_start < held.pos_end
        and stream.was_compared(held.pos_start, held.pos_end)
    ):
        # Every byte was compared before: what _compare_payload would find (and count).
        held.compared = True
        stream.counters.retransmitted_frames += 1
    if policy.may_pre_release(held, now):
        if lowered is not None:
            ack_lower.lower(conn, held, *lowered)
        return True
    held.refused = REFUSED_POLICY
    return False


def apply_receipts(
    connections: dict[FlowKey, TcpConnection],
    receipts: list[Receipt],
    policy: ReleasePolicy | None,
    now: float,
    out: list[HeldFrame],
    counters: Counters,
) -> None:
    """Record the secondary host's receipts; with a live ``policy``, offer the waiting
    frames of each connection they cover again (granted ones appended to ``out``)."""
    counters.host_receipts += len(receipts)
    for receipt in receipts:
        conn = connections.get(receipt.key)
        if conn is None:
            continue
        conn.host_held = (receipt.start, receipt.end)
        if policy is not None and conn.queue:
            before = len(out)
            offer_early(conn, policy, now, out, force=True)
            counters.host_covered_frames += sum(
                1 for h in out[before:] if h.flags & ACK and not _guest_covers(conn, h.ack)
            )


def _guest_covers(conn: TcpConnection, ack: int) -> bool:
    s_ack = conn.s_max_ack
    return s_ack is not None and not 0 < ((ack - s_ack) & MASK) < HALF
