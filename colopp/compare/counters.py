"""The comparator's counters, exported as a JSON-ready snapshot by the shell."""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from colopp.compare.ipv6 import ETHERTYPE_IPV6

#: Upper bounds (seconds) of the hold-time histogram buckets; a final bucket catches the rest.
HOLD_TIME_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.0005,
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1.0,
    3.0,
    10.0,
)

#: Distinct EtherTypes named in ``passthrough_by_ethertype``; the rest count as ``"other"``.
MAX_ETHERTYPE_LABELS = 32


@dataclass(slots=True)
class Counters:
    """Monotonic counters plus the current held gauges.

    ``held_*`` are gauges (frames/bytes waiting now); everything else only grows.
    ``passthrough_by_ethertype`` counts the primary frames released uncompared because
    colopp cannot compare their protocol, by EtherType (``"0x0806"``: ARP, ``"0x8100"``:
    VLAN-tagged...; at most :data:`MAX_ETHERTYPE_LABELS` of them, then ``"other"``). IPv6
    neighbour discovery and MLD, link-local control that no COLO implementation compares (like
    ARP), are counted apart in ``passthrough_ipv6_control``: IPv6 itself is compared, so
    ``"0x86dd"`` is never a key. ``hold_time_counts[i]`` counts primary frames held at most
    ``HOLD_TIME_BUCKETS[i]`` seconds from arrival to release; the last
    slot counts the longer ones.
    """

    primary_frames_in: int = 0
    secondary_frames_in: int = 0
    primary_bytes_in: int = 0
    secondary_bytes_in: int = 0
    released_frames: int = 0
    released_bytes: int = 0
    matched_frames: int = 0
    passthrough_frames: int = 0
    passthrough_ipv6_control: int = 0
    # New IPv6 connections whose opening segment waited for a checkpoint (core.py).
    ipv6_birth_checkpoints: int = 0
    flushed_frames: int = 0
    pre_released_frames: int = 0
    prerelease_mismatches: int = 0
    # Payload frames that left only once compared (with a pre-release policy): matched on
    # arrival (the secondary's copy came first: they did not wait), or late, by why they did
    # not leave early: never offered (queued behind a refused segment, or a checkpoint was
    # pending), refused by the absolute ACK rule, refused by the policy.
    matched_on_arrival: int = 0
    late_unoffered: int = 0
    late_ack_refused: int = 0
    late_policy_refused: int = 0
    rearm_checkpoints: int = 0
    # Early payload frames whose ACK was lowered to what the secondary acknowledged, and the
    # bare ACKs sent later to give the client the real one (:mod:`~colopp.compare.ack_lower`).
    prerelease_ack_lowered: int = 0
    prerelease_bare_acks: int = 0
    # Times pre-release paused because the secondary lagged past the lag budget.
    prerelease_lag_pauses: int = 0
    # Receipts from the secondary host (receipts.py), and early frames whose ACK only the
    # host's receipt covered (the secondary guest had not acknowledged as much yet).
    host_receipts: int = 0
    host_covered_frames: int = 0
    client_frames_in: int = 0
    retransmitted_frames: int = 0
    secondary_dropped: int = 0
    held_frames: int = 0
    held_bytes: int = 0
    held_secondary_frames: int = 0
    held_secondary_bytes: int = 0
    checkpoints_requested: int = 0
    checkpoints_done: int = 0
    connections_open: int = 0
    connections_closed: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    divergences: Counter[str] = field(default_factory=Counter)
    passthrough_by_ethertype: Counter[str] = field(default_factory=Counter)
    hold_time_counts: list[int] = field(default_factory=lambda: [0] * (len(HOLD_TIME_BUCKETS) + 1))
    hold_time_sum: float = 0.0

    def observe_late(self, refused: int, waited: float) -> None:
        """A payload frame released by its comparison, not early (``HeldFrame.refused``),
        after waiting ``waited`` seconds."""
        if waited <= 0:
            self.matched_on_arrival += 1
        elif refused == 0:
            self.late_unoffered += 1
        elif refused == 1:
            self.late_ack_refused += 1
        else:
            self.late_policy_refused += 1

    def count_passthrough(self, ethertype: int) -> None:
        """One primary frame of ``ethertype`` released uncompared."""
        self.passthrough_frames += 1
        if ethertype == ETHERTYPE_IPV6:
            self.passthrough_ipv6_control += 1
        else:
            label = f"0x{ethertype:04x}"
            by_type = self.passthrough_by_ethertype
            if label not in by_type and len(by_type) >= MAX_ETHERTYPE_LABELS:
                label = "other"  # a guest spraying EtherTypes must not grow the status file
            by_type[label] += 1

    def observe_hold(self, seconds: float) -> None:
        """Add one primary frame's arrival-to-release time to the histogram."""
        self.hold_time_counts[bisect.bisect_left(HOLD_TIME_BUCKETS, seconds)] += 1
        self.hold_time_sum += seconds

    def snapshot(self) -> dict[str, Any]:
        """A JSON-serialisable copy of every counter."""
        out: dict[str, Any] = {
            name: getattr(self, name)
            for name in self.__slots__
            if name
            not in ("malformed", "divergences", "passthrough_by_ethertype", "hold_time_counts")
        }
        out["passthrough_by_ethertype"] = dict(self.passthrough_by_ethertype)
        out["malformed"] = dict(self.malformed)
        out["malformed_total"] = sum(self.malformed.values())
        out["divergences"] = dict(self.divergences)
        out["hold_time_buckets"] = [*HOLD_TIME_BUCKETS, "+Inf"]
        out["hold_time_counts"] = list(self.hold_time_counts)
        return out
