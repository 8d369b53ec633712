"""Client frames that acknowledge more than the secondary guest has sent wait on host B.

With pre-release, the client may get (and acknowledge) primary payload before the secondary
guest has sent the same bytes. Linux discards any segment whose ACK runs past its
``snd_nxt`` (``tcp_ack``: "ACK of unsent data"), with the data it carries: the client's next
request riding on that ACK is lost to the secondary, which then never acknowledges it, and
the primary's answer waits (the absolute rule) until the client re-sends the request on its
retransmission timeout. The relay sees both streams, so it holds such a client frame
(and every later one of its connection, to keep their order) until the secondary's own
output reaches that ACK, or ``max_wait`` passes. Pure.

Two things make the secondary's own output an unreliable witness, and the gate handles both:

- its SYN-ACK carries the secondary guest's own initial sequence number: ``filter-rewriter``
  translates only the segments after the handshake into the primary's (the client's) sequence
  space, so a SYN is not counted (were it, a secondary ISN above the primary's would make
  every later ACK look covered, and the gate would never hold anything);
- a checkpoint replaces the secondary guest by a copy of the primary, which has sent what
  the primary sent: :meth:`AckGate.checkpoint` forgets what the old guest sent and lets every
  held frame go (the agent signals each checkpoint the secondary loads).
"""

from __future__ import annotations

from collections import deque

from colopp.compare.packet import ACK, FIN, SYN, TCP, FlowKey, Malformed, Packet, parse_frame
from colopp.compare.seq import HALF, MASK

DEFAULT_MAX_WAIT_S = 0.2
DEFAULT_MAX_FRAMES = 4096


class AckGate:
    """Per connection: the end of what the secondary guest sent, and the held client frames."""

    def __init__(
        self, max_wait: float = DEFAULT_MAX_WAIT_S, max_frames: int = DEFAULT_MAX_FRAMES
    ) -> None:
        self.max_wait = max_wait
        self.max_frames = max_frames
        self.held_frames = 0
        self.released_late = 0  # held, then forwarded once the secondary caught up
        self.released_expired = 0  # held max_wait, forwarded anyway
        self.released_checkpoint = 0  # held, then forwarded at a checkpoint
        self.holds = 0  # client frames held (counted once each)
        self.checkpoints = 0  # checkpoints the gate was told of
        self._sent_end: dict[FlowKey, int] = {}
        # Per connection (guest -> client key): (arrival, ack, frame, vnet_hdr_len) in order.
        self._held: dict[FlowKey, deque[tuple[float, int, bytes, int]]] = {}

    def guest_frame(
        self, frame: bytes, vnet_hdr_len: int = 0, pkt: Packet | Malformed | None = None
    ) -> list[tuple[bytes, int]]:
        """A frame the secondary guest sent (``pkt``: parsed already, by the caller);
        returns the held client frames it releases."""
        if pkt is None:
            pkt = parse_frame(frame, vnet_hdr_len)
        if isinstance(pkt, Malformed) or pkt.kind != TCP or pkt.flags & SYN:
            return []  # a SYN-ACK's sequence number is the guest's own (not rewritten)
        size = pkt.payload_end - pkt.payload_start
        end = (pkt.seq + size + (1 if pkt.flags & FIN else 0)) & MASK
        old = self._sent_end.get(pkt.key)
        if old is None or 0 < ((end - old) & MASK) < HALF:
            self._sent_end[pkt.key] = end
        return self._release(pkt.key, None)

    def client_frame(
        self,
        frame: bytes,
        now: float,
        vnet_hdr_len: int = 0,
        pkt: Packet | Malformed | None = None,
    ) -> list[tuple[bytes, int]]:
        """A client frame from the mirror (``pkt``: parsed already, by the caller); returns
        what may go to the secondary now (this frame, or nothing when it must wait)."""
        if pkt is None:
            pkt = parse_frame(frame, vnet_hdr_len)
        if isinstance(pkt, Malformed) or pkt.kind != TCP or not pkt.flags & ACK:
            return [(frame, vnet_hdr_len)]
        _, client, guest, cport, gport = pkt.key
        key = (TCP, guest, client, gport, cport)
        queue = self._held.get(key)
        sent = self._sent_end.get(key)
        ahead = sent is not None and 0 < ((pkt.ack - sent) & MASK) < HALF
        if (queue or ahead) and self.held_frames < self.max_frames:
            self._held.setdefault(key, deque()).append((now, pkt.ack, frame, vnet_hdr_len))
            self.held_frames += 1
            self.holds += 1
            return []
        return [(frame, vnet_hdr_len)]

    def checkpoint(self) -> list[tuple[bytes, int]]:
        """The secondary guest is now a copy of the primary: what the old one sent tells
        nothing; every held frame goes (in order per connection)."""
        self._sent_end.clear()
        self.checkpoints += 1
        out = [(frame, vnet) for queue in self._held.values() for _, _, frame, vnet in queue]
        self.released_checkpoint += len(out)
        self.held_frames = 0
        self._held.clear()
        return out

    def counters(self) -> dict[str, int]:
        return {
            "gate_held_frames": self.held_frames,
            "gate_released_late": self.released_late,
            "gate_released_expired": self.released_expired,
            "gate_released_checkpoint": self.released_checkpoint,
            "gate_holds": self.holds,
            "gate_checkpoints": self.checkpoints,
        }

    def due(self, now: float) -> list[tuple[bytes, int]]:
        """Held frames whose wait passed ``max_wait`` (with those behind them that may go)."""
        out: list[tuple[bytes, int]] = []
        for key in [k for k, q in self._held.items() if now - q[0][0] >= self.max_wait]:
            out += self._release(key, now)
        return out

    def _release(self, key: FlowKey, expired_at: float | None) -> list[tuple[bytes, int]]:
        queue = self._held.get(key)
        if not queue:
            return []
        sent = self._sent_end.get(key)
        out: list[tuple[bytes, int]] = []
        while queue:
            arrival, ack, frame, vnet = queue[0]
            covered = sent is not None and not 0 < ((ack - sent) & MASK) < HALF
            if covered:
                self.released_late += 1
            elif expired_at is not None and expired_at - arrival >= self.max_wait:
                self.released_expired += 1
            else:
                break
            queue.popleft()
            out.append((frame, vnet))
        self.held_frames -= len(out)
        if not queue:
            del self._held[key]
        return out
