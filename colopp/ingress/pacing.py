"""Client frames held back until the secondary guest's receive window takes them. Pure.

The client follows the *primary's* window, and with pre-release its ACKs leave early on this
host's receipts (the log holds the bytes), so it may run megabytes ahead of the secondary
guest. Measured on the two-host lab (session 17, a 10 s upload with offloads): the client ran
up to 7.3 MB ahead of the secondary's ACK; the secondary guest, on host B's CPU beside this
relay and the client, advertised a zero window and sent runs of 12-37 duplicate ACKs. It had
dropped what came past its window, and the comparator forced a checkpoint each time
(``secondary_ack_wait``, 22-38 a window). Handing the missing segment back on duplicate ACKs
changed nothing: the guest's window was full.

So the relay forwards a client segment only while it starts inside the guest's window
(``ack + (window << scale)``, from the guest's own latest ACK, its window scale from its
SYN-ACK); later ones wait here, in order per connection, and go as the guest's ACKs open the
window, or after ``max_wait`` seconds whatever the window says (a window update the relay
never saw must not stall a connection). Nothing is lost or reordered within a connection; the
bytes are in the log already (:mod:`~colopp.ingress.log`), so receipts and the failover
replay are unchanged. A checkpoint replaces the guest by the primary's copy, whose window
the relay has not seen: every held frame goes at once and windows are learned again.
Connections whose SYN-ACK the relay did not see (scale unknown) are not paced.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from colopp.compare.packet import FIN, RST, FlowKey
from colopp.compare.seq import HALF, MASK

#: Seconds a held client frame waits for the window at most.
DEFAULT_MAX_WAIT_S = 0.2
#: Bytes held at most, all connections together (a client that ignores the window must not
#: grow this host's memory): past it, a connection's frames go at once, in order.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
#: RFC 7323: a window scale above 14 is used as 14.
MAX_SCALE = 14


@dataclass(slots=True)
class _Window:
    scale: int
    edge: int | None = None  # the guest's ack + (window << scale), a client sequence number
    # (seq, framed bytes, held since): frames waiting for the window, in arrival order.
    held: deque[tuple[int, bytes, float]] = field(default_factory=deque)


def _before(a: int, b: int) -> bool:
    """``a`` comes before ``b`` in sequence space (mod 2**32)."""
    return 0 < ((b - a) & MASK) < HALF


class WindowPacing:
    """Per connection (keyed guest -> client): the guest's window edge and the client
    frames held back for it. Frames are opaque bytes (framed for ``red0`` already)."""

    def __init__(
        self, max_wait: float = DEFAULT_MAX_WAIT_S, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.max_wait = max_wait
        self.max_bytes = max_bytes
        self.held_frames = 0
        self.held_bytes = 0
        self.counters = dict.fromkeys(("paced_frames", "paced_expired", "paced_overflow"), 0)
        self._conns: dict[FlowKey, _Window] = {}

    def guest_syn_ack(self, key: FlowKey, scale: int) -> list[bytes]:
        """The guest's SYN-ACK: ``scale`` is its window scale option (0 without one). Its
        window is learned anew; what was held on the connection goes now, in order (a
        SYN-ACK sent again, or a new incarnation of the 4-tuple: nothing is dropped)."""
        old = self._conns.pop(key, None)
        out = self._release(old, lambda _seq, _since: True) if old is not None else []
        self._conns[key] = _Window(min(scale, MAX_SCALE))
        return out

    def guest_ack(self, key: FlowKey, ack: int, window: int) -> list[bytes]:
        """The guest's ACK and raw window field (not on a SYN): the frames that now fit."""
        conn = self._conns.get(key)
        if conn is None:
            return []
        edge = conn.edge = (ack + (window << conn.scale)) & MASK
        if not conn.held:
            return []
        return self._release(conn, lambda seq, _since: _before(seq, edge))

    def must_wait(self, key: FlowKey, seq: int, size: int) -> bool:
        """True when a client frame with ``size`` sequence positions (payload, plus one for
        a FIN) at ``seq`` must be held (then :meth:`hold` it): it starts past the guest's
        window, or frames of its connection wait already (order). A bare ACK never waits."""
        conn = self._conns.get(key)
        if conn is None or not size:
            return False
        if conn.held:
            return True
        edge = conn.edge
        return edge is not None and not _before(seq, edge)

    def hold(self, key: FlowKey, seq: int, framed: bytes, now: float) -> list[bytes]:
        """Keep ``framed`` (after :meth:`must_wait` said so) for :meth:`guest_ack` or
        :meth:`due`. Returns [] (held), or, past ``max_bytes``, the connection's held frames
        with this one last: they go now, in order."""
        conn = self._conns[key]
        conn.held.append((seq, framed, now))
        self.held_frames += 1
        self.held_bytes += len(framed)
        self.counters["paced_frames"] += 1
        if self.held_bytes <= self.max_bytes:
            return []
        self.counters["paced_overflow"] += len(conn.held)
        return self._release(conn, lambda _seq, _since: True)

    def pieces(
        self,
        key: FlowKey,
        flags: int,
        seq: int,
        size: int,
        lowered: bytes | None,
        buf: bytes,
        start: int,
        end: int,
        now: float,
    ) -> list[bytes] | None:
        """What a plain TCP client frame (``buf[start:end]`` framed, or its ``lowered``
        copy) sends: None, it waits for the guest's window (held); [] as it came; else these
        framed pieces, in order (a RST after the frames it lets go first; past
        ``max_bytes``, the connection's held frames with this one last)."""
        if flags & RST:
            first = self.client_reset(key)
            if first:
                return [*first, lowered or buf[start:end]]
        elif self.must_wait(key, seq, size + (flags & FIN)):
            return self.hold(key, seq, lowered or buf[start:end], now) or None
        return [lowered] if lowered is not None else []

    def client_reset(self, key: FlowKey) -> list[bytes]:
        """A client RST: forget the connection; what it held goes first (in order)."""
        conn = self._conns.pop(key, None)
        if conn is None or not conn.held:
            return []
        out = [framed for _, framed, _ in conn.held]
        self._forget(conn)
        return out

    def due(self, now: float) -> list[bytes]:
        """Frames held ``max_wait`` or longer, with those behind them on their connection."""
        out: list[bytes] = []
        limit = now - self.max_wait
        for conn in self._conns.values():
            if conn.held and conn.held[0][2] <= limit:
                before = self.held_frames
                out += self._release(conn, lambda _seq, _since: True)
                self.counters["paced_expired"] += before - self.held_frames
        return out

    def checkpoint(self) -> list[bytes]:
        """The guest is the primary's copy now: its windows are unknown; everything goes."""
        out: list[bytes] = []
        for conn in self._conns.values():
            conn.edge = None
            out += self._release(conn, lambda _seq, _since: True)
        return out

    def clear(self) -> None:
        """Promotion: the mirror is gone; the replay hands the log over instead."""
        self._conns.clear()
        self.held_frames = self.held_bytes = 0

    def oldest(self) -> float | None:
        """When the longest-held frame was held (None: none)."""
        times = [conn.held[0][2] for conn in self._conns.values() if conn.held]
        return min(times) if times else None

    def _release(self, conn: _Window, fits: Callable[[int, float], bool]) -> list[bytes]:
        """The held frames from the head on while ``fits(seq, held_since)``."""
        held = conn.held
        out: list[bytes] = []
        while held and fits(held[0][0], held[0][2]):
            out.append(held.popleft()[1])
        self.held_frames -= len(out)
        self.held_bytes -= sum(map(len, out))
        return out

    def _forget(self, conn: _Window) -> None:
        self.held_frames -= len(conn.held)
        self.held_bytes -= sum(len(framed) for _, framed, _ in conn.held)
        conn.held.clear()
