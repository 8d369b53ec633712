"""Per-flow comparison of UDP, ICMP and other IPv4 datagrams: whole IP payloads, in order.

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
        "primary",
        "secondary",
        "secondary_bytes",
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

    def add_secondary(self, payload: bytes, now: float) -> None:
        """Queue one secondary datagram's payload."""
        self.secondary.append((payload, now))
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

    def on_checkpoint(self) -> None:
        """Forget everything: held primary frames were flushed, secondary output is stale."""
        self.primary.clear()
        self.counters.held_secondary_frames -= len(self.secondary)
        self.counters.held_secondary_bytes -= self.secondary_bytes
        self.secondary.clear()
        self.secondary_bytes = 0
        self.diverged = False

    def secondary_held(self) -> tuple[int, int]:
        """(frames, bytes) of secondary output waiting for the primary."""
        return len(self.secondary), self.secondary_bytes

    def oldest_secondary(self) -> float | None:
        """Arrival time of the oldest unmatched secondary datagram."""
        return self.secondary[0][1] if self.secondary else None


def _find(queue: deque[tuple[bytes, float]], payload: bytes) -> int:
    for index, (candidate, _) in enumerate(queue):
        if candidate == payload:
            return index
    return -1
