"""The secondary guest's recent output, kept on its host for the client after a failover. Pure.

**Why.** While both sides run, the client gets the *primary's* copy of the guest's output,
once the comparator has the secondary's. When the primary's host dies, what the comparator
held dies with it: in a download, up to a megabyte of the stream had left the secondary
guest's TCP (its copies went to the comparison on host A) and never reached the client.
The promoted guest sends it again only when its retransmission timer fires, and that timer
came out past a second after a failover (the clocks of a guest in COLO, README "Where a
download's failover stall goes"): the download stood still 1.2-2.4 s in 4 of 35 runs.

**What it keeps.** Per TCP connection, the secondary guest's segments that carry payload (or
a FIN), in sequence order, until the client acknowledges their bytes. At each
checkpoint the secondary loads everything kept goes: what the guest sent before is its own
execution's output, which the checkpoint replaced (a nondeterministic stream, compressed or
random bytes, differs from the primary's), while every segment it sends after the load
comes from the state the promoted guest still holds. So what is kept at a promotion is
exactly bytes the promoted guest has in its send queue, at the same sequence numbers (red1's
frames come after ``filter-rewriter``: the client's numbering): sending them to the client is
what the guest's own retransmission would do, only sooner. A subset is as safe (the guest
retransmits the rest itself); the caller makes sure nothing from before a load stays
(:meth:`Relay.checkpoint` reads the guest's stream to its end first).

Bounded by ``max_bytes``: frames past it are not kept (``keep_refused``), so the oldest
stay, the bytes the client needs first. IPv4 TCP without options only (what
:func:`~colopp.ingress.wire.plain_tcp` parses); anything else is left to the guest's own
timer.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

from colopp.compare.packet import ACK, RST, FlowKey
from colopp.compare.seq import seq_after, seq_delta

#: Bytes kept at most, all connections together.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024


@dataclass
class _Kept:
    """One connection's kept segments, sorted by where they end (a retransmission of
    earlier bytes goes in its place); positions are sequence numbers relative to
    ``anchor``."""

    anchor: int
    ends: list[int] = field(default_factory=list)
    frames: list[tuple[bytes, int]] = field(default_factory=list)  # (frame, vnet length)


class OutputKeep:
    """Keep guest segments (:meth:`guest`), trim on client ACKs (:meth:`client`), forget
    at a checkpoint (:meth:`checkpoint`), hand over at a promotion (:meth:`take`). Keys
    are guest -> client (:data:`~colopp.compare.packet.FlowKey`)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._kept: dict[FlowKey, _Kept] = {}
        self._client_ack: dict[FlowKey, int] = {}
        self.bytes = 0
        self.kept = 0  # segments kept, ever
        self.refused = 0  # segments past max_bytes
        self.forgotten = 0  # segments a checkpoint made void
        self.taken = 0  # segments handed over at promotion

    def guest(self, key: FlowKey, seq: int, length: int, frame: bytes, vnet: int) -> None:
        """A guest segment of ``length`` sequence numbers (payload, plus one for a FIN) at
        ``seq``; ``frame`` as it came (its vnet header, ``vnet`` bytes, first)."""
        if length <= 0:
            return
        acked = self._client_ack.get(key)
        if acked is not None and seq_delta(seq + length, acked) <= 0:
            return  # the client has it all
        if self.bytes + len(frame) > self.max_bytes:
            self.refused += 1
            return
        kept = self._kept.get(key)
        if kept is None:
            kept = self._kept[key] = _Kept(seq)
        end = seq_delta(seq + length, kept.anchor)
        at = bisect_left(kept.ends, end)
        if at < len(kept.ends) and kept.ends[at] == end:
            return  # sent again as it was: kept already
        kept.ends.insert(at, end)
        kept.frames.insert(at, (frame, vnet))
        self.bytes += len(frame)
        self.kept += 1

    def client(self, key: FlowKey, flags: int, ack: int) -> None:
        """A client segment (its flags and ACK field) on connection ``key``."""
        if flags & RST:
            self.forget(key)
        elif flags & ACK:
            self.client_ack(key, ack)

    def client_ack(self, key: FlowKey, ack: int) -> None:
        """The client acknowledged guest bytes up to ``ack`` (its own ACK field)."""
        acked = self._client_ack.get(key)
        if acked is not None and not seq_after(ack, acked):
            return
        self._client_ack[key] = ack
        kept = self._kept.get(key)
        if kept is None:
            return
        cut = bisect_right(kept.ends, seq_delta(ack, kept.anchor))
        if cut:
            self.bytes -= sum(len(frame) for frame, _ in kept.frames[:cut])
            del kept.ends[:cut], kept.frames[:cut]
            if not kept.ends:
                del self._kept[key]

    def forget(self, key: FlowKey) -> None:
        """The connection was reset (either way): nothing of it goes again."""
        self._client_ack.pop(key, None)
        kept = self._kept.pop(key, None)
        if kept is not None:
            self.bytes -= sum(len(frame) for frame, _ in kept.frames)

    def checkpoint(self) -> None:
        """The secondary loaded a checkpoint: what its guest sent before is void. The
        client's ACKs go too (they come again with its next frames): what is remembered
        stays bounded by one checkpoint interval's connections."""
        self.forgotten += sum(len(kept.ends) for kept in self._kept.values())
        self._kept.clear()
        self._client_ack.clear()
        self.bytes = 0

    def take(self) -> list[tuple[bytes, int]]:
        """At promotion: the kept segments the client has not acknowledged, per connection
        in sequence order, as (frame, vnet header length); then nothing is kept."""
        out: list[tuple[bytes, int]] = []
        for kept in self._kept.values():
            out += kept.frames
        self._kept.clear()
        self.bytes = 0
        self.taken += len(out)
        return out

    def counters(self) -> dict[str, int]:
        return {
            "keep_segments": self.kept,
            "keep_refused": self.refused,
            "keep_forgotten": self.forgotten,
            "keep_taken": self.taken,
            "keep_bytes": self.bytes,
        }
