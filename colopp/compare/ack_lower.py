"""ACK lowering (``--prerelease-ack-lowering``, off by default): an early answer leaves before
the secondary acknowledged its request.

The absolute rule (:mod:`~colopp.compare.prerelease`) keeps an early segment's ACK number at
or below the secondary's highest ACK on the connection. A secondary guest that acknowledges a
request only piggy-backed on its own answer then lets the primary's answer go only when the
secondary's answer is there too. With lowering, a payload segment the policy grants may leave
with its ACK field **lowered** to the *floor*: the highest ACK the client was already given on
this connection, or the secondary's highest ACK, whichever is higher (never above the
segment's own); its TCP checksum is updated incrementally (IPv4 and IPv6).

What stays true. No ACK the client sees exceeds what the secondary acknowledged (or compared
primary output carried): every request byte above the floor stays unacknowledged at the
client, which keeps it and re-sends it to whoever answers at the guest's address. Write
answers are never pre-released. Segments with SACK blocks (a client does not re-send SACKed
bytes), FIN, or a virtio-net header asking for checksum/segmentation offload are not lowered.

**What is lost, and why it is off by default.** The absolute rule also *orders* the request:
the secondary guest holds it before any write another client sends after the early answer
left, so after a failover it answers it from the state the primary answered it from. A
lowered answer may leave before the secondary has the request at all. If the primary dies
then, the promoted secondary gets the request only from the client's retransmission (a
retransmission timeout later, 200 ms or more), possibly behind writes that other connections
sent meanwhile to the same resource. Its answer is then computed from a newer state: other
bytes at the sequence numbers the client already holds. The client keeps its early bytes (a
value that was current when it got it: consistent), but if the two answers differ in
*length* the rest of that connection's stream is misaligned: a corrupted connection. So use
it only where no other client writes what an early answer read (a single writer per
resource that is also its only reader, or read-only data), or with the secondary host's
receipts (issue 22: the host holds the request and hands it to the promoted guest in order,
which makes the real ACK safe and lowering unnecessary). Measured on the bench lab, the
absolute rule refused no answer at all (``late_ack_refused`` 0: the guests ACK requests at
once): lowering changes nothing there.

Then the client must get the real ACK promptly (a client with unacknowledged bytes holds
back its next small request under Nagle; its retransmission timer runs). The connection
remembers what it owes: the highest real ACK among its lowered segments. Each time the
secondary's ACK rises (a secondary segment, or a checkpoint: the secondary is then a copy of
the primary), a **bare ACK** is sent: a header-only copy of the latest lowered segment with
the ACK raised to ``min(owed, secondary's highest ACK)`` and its sequence number at the end of
what the client was sent (an older one could fall below the client's window and be dropped).
It is sent only when it raises what the client was told, so it is never a duplicate ACK.

Invariant (tested with hypothesis): no ACK leaving for the client exceeds the higher of the
secondary's highest ACK and the ACKs of compared primary output.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from colopp.compare.ack_frames import bare_ack_frame, lowered_frame
from colopp.compare.held import HeldFrame
from colopp.compare.packet import ACK, FlowKey
from colopp.compare.seq import MASK, seq_after
from colopp.compare.verdict import PreRelease

if TYPE_CHECKING:  # tcp.py and core.py call in here: no import cycle at run time
    from colopp.compare.tcp import TcpConnection


class AckLow:
    """What one connection owes its client after lowered early segments."""

    __slots__ = ("owed", "sent_end", "template", "told", "vnet_hdr_len")

    def __init__(self) -> None:
        self.told: int | None = None  # highest ACK the early path gave the client
        self.owed: int | None = None  # highest real ACK of a lowered segment
        self.template = b""  # the latest lowered frame (its header makes the bare ACKs)
        self.vnet_hdr_len = 0
        self.sent_end = 0  # stream position after the last lowered payload byte

    def tell(self, ack: int) -> None:
        """The client was given ``ack``."""
        if self.told is None or seq_after(ack, self.told):
            self.told = ack

    @property
    def owing(self) -> bool:
        """True while the client was told less than a lowered segment's real ACK."""
        owed, told = self.owed, self.told
        return owed is not None and (told is None or seq_after(owed, told))


# ---- per connection ----------------------------------------------------------------------


def prepare(conn: TcpConnection, held: HeldFrame) -> tuple[bytes, int] | None:
    """``held`` (a payload segment whose ACK the secondary has not reached) as it may leave
    early, with the ACK it would carry, or None when it may not be lowered.

    The floor: what the early path told the client, or the secondary's highest ACK, the
    higher; never above ``held``'s own ACK (then it leaves unchanged).
    """
    if held.pos_end <= held.pos_start:
        return None  # a bare ACK lowered would say nothing new (or be a duplicate ACK)
    floor = conn.s_max_ack
    low = conn.ack_low
    if low is not None and low.told is not None and (floor is None or seq_after(low.told, floor)):
        floor = low.told
    if floor is None:
        return None
    if not seq_after(held.ack, floor):
        return held.frame, held.ack
    frame = lowered_frame(held.frame, held.vnet_hdr_len, floor)
    return None if frame is None else (frame, floor)


def lower(conn: TcpConnection, held: HeldFrame, frame: bytes, floor: int) -> None:
    """``held`` leaves early as ``frame`` (its ACK lowered to ``floor``): remember what the
    client is owed. ``held.ack`` stays the real ACK (the comparison's release rule)."""
    if frame is held.frame:
        return  # not lowered after all: the client had been told that much
    low = conn.ack_low
    if low is None:
        low = conn.ack_low = AckLow()
    held.frame = frame
    low.tell(floor)
    if low.owed is None or seq_after(held.ack, low.owed):
        low.owed = held.ack
    low.template = frame
    low.vnet_hdr_len = held.vnet_hdr_len
    low.sent_end = max(low.sent_end, held.pos_end)
    conn.stream.counters.prerelease_ack_lowered += 1


def catch_up(
    conn: TcpConnection, released: Iterable[HeldFrame] = (), pre: Iterable[HeldFrame] = ()
) -> PreRelease | None:
    """A bare ACK raising what the client was told towards what it is owed, as far as the
    secondary acknowledged, or None. ``released`` and ``pre``: frames of this connection
    that leave now, after comparison or early (their ACKs count as told: a bare ACK behind
    them saying no more would be a duplicate ACK)."""
    low = conn.ack_low
    if low is None:
        return None
    s_ack = conn.s_max_ack
    for held in released:
        if held.flags & ACK and not held.pre_released:
            low.tell(held.ack)
    for held in pre:  # sent unchanged (at most the secondary's ACK) or lowered (told already)
        if held.flags & ACK and s_ack is not None:
            low.tell(held.ack if not seq_after(held.ack, s_ack) else s_ack)
    owed = low.owed
    if owed is None or s_ack is None or not low.owing:
        return None
    target = s_ack if seq_after(owed, s_ack) else owed
    if low.told is not None and not seq_after(target, low.told):
        return None
    seq = _sent_seq(conn, low)
    frame = None if seq is None else bare_ack_frame(low.template, low.vnet_hdr_len, seq, target)
    if frame is None:
        return None
    low.tell(target)
    conn.stream.counters.prerelease_bare_acks += 1
    if not low.owing:
        low.template = b""  # settled: keep only what the client was told
        low.owed = None
    return PreRelease([frame], low.vnet_hdr_len)


def _sent_seq(conn: TcpConnection, low: AckLow) -> int | None:
    """The sequence number after the last byte (or FIN) the client was sent, as far as the
    connection knows."""
    if conn.anchor_seq is None:
        return None
    queue = conn.queue
    if queue:
        pos = queue[conn.pre_prefix - 1].pos_end if conn.pre_prefix else queue[0].pos_start
    else:
        pos = conn.p_high if conn.p_high is not None else low.sent_end
    pos = max(pos, low.sent_end)
    if conn.p_fin_pos is not None and pos >= conn.p_fin_pos and not queue:
        pos = conn.p_fin_pos + 1
    return (conn.anchor_seq + pos - conn.anchor_pos) & MASK


def settle_all(
    conns: dict[FlowKey, TcpConnection], flushed: Iterable[HeldFrame]
) -> list[PreRelease]:
    """After a checkpoint (``flushed``: the frames it released): the bare ACKs still owed
    on ``conns`` (the secondary now acknowledged all the primary did)."""
    by_key: dict[FlowKey, list[HeldFrame]] = {}
    for held in flushed:
        if held.key in conns:
            by_key.setdefault(held.key, []).append(held)
    out = []
    for key, conn in conns.items():
        bare = catch_up(conn, by_key.get(key, ()))
        if bare is not None:
            out.append(bare)
    return out
