"""Client frames that acknowledge more than the secondary guest has sent wait on host B.

With pre-release, the client may get (and acknowledge) primary payload before the secondary
guest has sent the same bytes. Linux discards any segment whose ACK runs past its
``snd_nxt`` (``tcp_ack``: "ACK of unsent data"), with the data it carries: the client's next
request riding on that ACK is lost to the secondary, which then never acknowledges it, and
the primary's answer waits (the absolute rule) until the client re-sends the request on its
retransmission timeout. The relay sees both streams. With :attr:`AckGate.lowering` (the
relay's default) such a client frame goes on at once with its ACK lowered to the end of
the secondary's output (``wire.lower_ack``): its data is taken, and the secondary is not
starved of ACKs (holding every ACK of a connection until the secondary sent as far stops a
secondary whose send window is full: it waits for those very ACKs, until its
retransmission timeout). The client's own ACK is owed (:attr:`AckGate.owed`) and goes, as
the bare ACK the client would send (``wire.pure_ack``), once the secondary's output
reaches it, unless a later client frame acknowledged as much. Without lowering (or for a
frame it cannot rewrite: not plain IPv4) the gate holds
such a frame (and every later one of its connection, to keep their order) until the
secondary's own output reaches that ACK, or ``max_wait`` passes. Pure.

Two things make the secondary's own output an unreliable witness, and the gate handles both:

- its SYN-ACK carries the secondary guest's own initial sequence number: ``filter-rewriter``
  translates only the segments after the handshake into the primary's (the client's) sequence
  space, so a SYN is not counted (were it, a secondary ISN above the primary's would make
  every later ACK look covered, and the gate would never hold anything);
- a checkpoint replaces the secondary guest by a copy of the primary, which has sent what
  the primary sent: :meth:`AckGate.checkpoint` forgets what the old guest sent and
  what was owed to it, and lets every held frame go (the agent signals each checkpoint the
  secondary loads).
"""

from __future__ import annotations

from collections import deque

from colopp.compare.packet import ACK, FIN, SYN, TCP, FlowKey, Malformed, Packet, parse_frame
from colopp.compare.seq import HALF, MASK
from colopp.ingress.log import OwedAck
from colopp.ingress.wire import pure_ack

DEFAULT_MAX_WAIT_S = 0.2
DEFAULT_MAX_FRAMES = 4096


class AckGate:
    """Per connection: the end of what the secondary guest sent, and the held client frames."""

    def __init__(
        self,
        max_wait: float = DEFAULT_MAX_WAIT_S,
        max_frames: int = DEFAULT_MAX_FRAMES,
        lowering: bool = False,
    ) -> None:
        self.max_wait = max_wait
        self.max_frames = max_frames
        #: The relay may send a frame that runs ahead on at once with its ACK lowered
        #: (:meth:`lowered`) rather than hold it: see the module's docstring.
        self.lowering = lowering
        self.lowered_frames = 0  # sent on with their ACK lowered to the secondary's output
        self.acks_sent = 0  # bare ACKs owed for lowered frames, sent once it caught up
        #: Per connection (guest -> client key): (ACK owed, the client frame furthest in
        #: sequence, its vnet header length, the sequence number past its payload), for
        #: :func:`~colopp.ingress.wire.pure_ack`.
        self.owed: dict[FlowKey, tuple[int, bytes, int, int]] = {}
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
        if isinstance(pkt, Malformed) or pkt.kind != TCP:
            return []
        size = pkt.payload_end - pkt.payload_start
        return self.guest_sent(pkt.key, pkt.flags, pkt.seq, size)

    def guest_sent(self, key: FlowKey, flags: int, seq: int, size: int) -> list[tuple[bytes, int]]:
        """:meth:`guest_frame` on fields read already (``key`` guest -> client, ``size``
        the payload's)."""
        if flags & SYN:
            return []  # a SYN-ACK's sequence number is the guest's own (not rewritten)
        end = (seq + size + (1 if flags & FIN else 0)) & MASK
        old = self._sent_end.get(key)
        if old is None or 0 < ((end - old) & MASK) < HALF:
            self._sent_end[key] = old = end
        out = self._release(key, None) if key in self._held else []
        owed = self.owed.get(key) if self.owed else None
        if owed is not None and not 0 < ((owed[0] - old) & MASK) < HALF:
            del self.owed[key]  # the secondary sent as far: the client's own ACK may go
            out.append((pure_ack(owed[1], owed[2], owed[0]), owed[2]))
            self.acks_sent += 1
        return out

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
        if self.must_hold(key, pkt.ack):
            self.hold(key, pkt.ack, frame, vnet_hdr_len, now)
            return []
        return [(frame, vnet_hdr_len)]

    def must_hold(self, key: FlowKey, ack: int) -> bool:
        """True when a client frame of ``key`` (guest -> client) carrying ACK ``ack`` must
        wait: it acknowledges bytes the secondary guest has not sent, or frames of its
        connection wait already (and there is room)."""
        if self.held_frames >= self.max_frames:
            return False
        if key in self._held:
            return True
        sent = self._sent_end.get(key)
        return sent is not None and 0 < ((ack - sent) & MASK) < HALF

    def lowered_ack(self, key: FlowKey) -> int | None:
        """With :attr:`lowering`, for a frame :meth:`must_hold` said must wait: the ACK
        it may go on with now (what the secondary guest sent), or None (it waits: frames of
        its connection wait already)."""
        if not self.lowering or key in self._held:
            return None
        return self._sent_end.get(key)

    def lowered(self, key: FlowKey, ack: int, frame: bytes, vnet_hdr_len: int, end: int) -> None:
        """A client frame acknowledging ``ack`` went on with its ACK lowered (``end``: the
        sequence number past its payload): the client's own ACK is owed to the secondary
        once its output reaches it (:meth:`guest_sent`)."""
        self._owe(key, ack, frame, vnet_hdr_len, end)
        self.lowered_frames += 1

    def passed(self, key: FlowKey, ack: int, frame: bytes, vnet_hdr_len: int, end: int) -> None:
        """A client frame of a connection that is owed an ACK went on as it came: it pays
        the debt when it acknowledges as much; otherwise the owed ACK, built later, takes
        this frame's sequence number and options, when they are the newest."""
        owed = self.owed.get(key)
        if owed is None:
            return
        if not 0 < ((owed[0] - ack) & MASK) < HALF:
            del self.owed[key]
        else:
            self._owe(key, ack, frame, vnet_hdr_len, end)

    def _owe(self, key: FlowKey, ack: int, frame: bytes, vnet_hdr_len: int, end: int) -> None:
        """The owed ACK: the highest ACK; the frame with the furthest sequence number (an
        owed ACK behind the secondary's receive point would be dropped as old)."""
        owed = self.owed.get(key)
        if owed is None:
            self.owed[key] = (ack, frame, vnet_hdr_len, end)
            return
        if 0 < ((owed[0] - ack) & MASK) < HALF:
            ack = owed[0]
        if 0 < ((owed[3] - end) & MASK) < HALF:
            frame, vnet_hdr_len, end = owed[1], owed[2], owed[3]
        self.owed[key] = (ack, frame, vnet_hdr_len, end)

    def hold(self, key: FlowKey, ack: int, frame: bytes, vnet_hdr_len: int, now: float) -> None:
        """Keep a client frame :meth:`must_hold` said must wait."""
        self._held.setdefault(key, deque()).append((now, ack, frame, vnet_hdr_len))
        self.held_frames += 1
        self.holds += 1

    def checkpoint(self) -> list[tuple[bytes, int]]:
        """The secondary guest is now a copy of the primary: what the old one sent tells
        nothing; every held frame goes (in order per connection)."""
        self._sent_end.clear()
        self.owed.clear()  # the new secondary has every ACK the primary got
        self.checkpoints += 1
        out = [(frame, vnet) for queue in self._held.values() for _, _, frame, vnet in queue]
        self.released_checkpoint += len(out)
        self.held_frames = 0
        self._held.clear()
        return out

    def handover(self) -> dict[FlowKey, OwedAck]:
        """At failover: per connection still owed the client's ACK, what the promoted guest
        must be given (:class:`~colopp.ingress.log.OwedAck`; the replay sends it as that
        guest's output reaches it)."""
        return {
            key: OwedAck(ack, frame[vnet:], self._sent_end.get(key))
            for key, (ack, frame, vnet, _) in self.owed.items()
        }

    def counters(self) -> dict[str, int]:
        return {
            "gate_held_frames": self.held_frames,
            "gate_released_late": self.released_late,
            "gate_released_expired": self.released_expired,
            "gate_released_checkpoint": self.released_checkpoint,
            "gate_holds": self.holds,
            "gate_checkpoints": self.checkpoints,
            "gate_lowered": self.lowered_frames,
            "gate_acks_sent": self.acks_sent,
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
