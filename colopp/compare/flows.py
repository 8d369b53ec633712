"""Per-flow comparison of UDP, ICMP(v6) and other IP datagrams: whole IP payloads, in order.

Like colo-compare, each primary datagram is matched against the secondary's queued datagrams of
the same flow (the first equal one wins); the IP header (ID, TTL, checksum) is ignored.
"""

from __future__ import annotations

from collections import deque

from colopp.compare.counters import Counters
from colopp.compare.held import HeldFrame
from colopp.compare.packet import KIND_NAMES, FlowKey


class DatagramFlow:
    """Queued primary frames and secondary payloads of one datagram flow."""

    __slots__ = (
        "counters",
        "diverged",
        "key",
        "kind",
        "last_seen",
        "next_epoch",
        "primary",
        "secondary",
        "secondary_bytes",
        "stopped",
    )

    def __init__(self, key: FlowKey, kind: int, now: float, counters: Counters) -> None:
        self.counters = counters
        self.key = key
        self.kind = kind
        self.last_seen = now
        self.diverged = False
        self.primary: deque[HeldFrame] = deque()
        self.secondary: deque[tuple[bytes, float]] = deque()
        self.secondary_bytes = 0
        # While a checkpoint runs, secondary datagrams wait here for the next epoch.
        self.stopped = False
        self.next_epoch: deque[tuple[bytes, float]] = deque()

    def add_secondary(self, payload: bytes, now: float) -> None:
        """Queue one secondary datagram's payload."""
        (self.next_epoch if self.stopped else self.secondary).append((payload, now))
        self.secondary_bytes += len(payload)
        self.counters.held_secondary_frames += 1
        self.counters.held_secondary_bytes += len(payload)

    def pump(self, released: list[HeldFrame]) -> str | None:
        """Release matched primary frames (appended to ``released``); return a divergence reason.

        A primary datagram with secondary output queued but none equal to it is a divergence
        (``udp_payload_mismatch``, ``icmp_payload_mismatch`` or ``ip_payload_mismatch``).
        """
        if self.diverged:
            return None
        primary = self.primary
        secondary = self.secondary
        while primary and secondary:
            payload = primary[0].payload
            index = _find(secondary, payload)
            if index < 0:
                self.diverged = True
                return f"{KIND_NAMES.get(self.kind, 'ip')}_payload_mismatch"
            if index:
                del secondary[index]
            else:
                secondary.popleft()
            self.secondary_bytes -= len(payload)
            self.counters.held_secondary_frames -= 1
            self.counters.held_secondary_bytes -= len(payload)
            released.append(primary.popleft())
        return None

    def on_stop(self) -> None:
        """A checkpoint started: later secondary datagrams are the next epoch's."""
        self.stopped = True

    def on_checkpoint(self) -> None:
        """Held primary frames were flushed; the old epoch's secondary output is stale and
        forgotten, what came since :meth:`on_stop` is kept."""
        self.primary.clear()
        fresh = self.next_epoch
        stale = self.secondary_bytes - sum(len(p) for p, _ in fresh)
        self.counters.held_secondary_frames -= len(self.secondary)
        self.counters.held_secondary_bytes -= stale
        self.secondary = fresh
        self.secondary_bytes -= stale
        self.next_epoch = deque()
        self.stopped = False
        self.diverged = False

    def secondary_held(self) -> tuple[int, int]:
        """(frames, bytes) of secondary output waiting for the primary."""
        return len(self.secondary) + len(self.next_epoch), self.secondary_bytes

    def oldest_secondary(self) -> float | None:
        """Arrival time of the oldest unmatched secondary datagram."""
        if self.secondary:
            return self.secondary[0][1]
        return self.next_epoch[0][1] if self.next_epoch else None


def _find(queue: deque[tuple[bytes, float]], payload: bytes) -> int:
    for index, (candidate, _) in enumerate(queue):
        if candidate == payload:
            return index
    return -1
