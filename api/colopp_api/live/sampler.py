"""Turn the agents' ``status`` replies into a metric sample and typed events (pure).

The primary's agent reports its checkpoint count and the last pauses; colopp's comparator
(``comparator.counters`` in the same reply) counts divergences by reason. A checkpoint is
attributed to a divergence reason when the comparator asked for one in the same interval,
else to ``periodic`` (``x-checkpoint-delay``); with QEMU's built-in colo-compare the two
cannot be told apart and the reason is ``colo-compare``.
"""

from __future__ import annotations

import bisect
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Upper bounds (seconds) of the checkpoint pause histogram.
PAUSE_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: Comparator counters copied into samples, under the API's names.
COMPARATOR_KEYS = {
    "matched_frames": "compared",
    "released_frames": "released",
    "pre_released_frames": "prereleased",
    "prerelease_mismatches": "prerelease_mismatches",
    "checkpoints_requested": "checkpoints_requested",
    "held_frames": "held_frames",
    "primary_frames_in": "primary_frames_in",
    "secondary_frames_in": "secondary_frames_in",
    "retransmitted_frames": "retransmitted_frames",
    "passthrough_frames": "passthrough",
    "passthrough_ipv6_control": "passthrough_ipv6_control",
}

Event = tuple[float, str, dict[str, Any]]


@dataclass
class AgentLiveness:
    """Whether a host's agent answered its last call, and when it last answered."""

    up: bool = False
    last_ok: float | None = None


@dataclass
class Tally:
    """Cumulative figures of one protection since this API process started watching it
    (the Prometheus counters; they restart at zero with the process, as counters may)."""

    checkpoints: Counter[str] = field(default_factory=Counter)
    divergences: Counter[str] = field(default_factory=Counter)
    pause_counts: list[int] = field(default_factory=lambda: [0] * (len(PAUSE_BUCKETS) + 1))
    pause_sum: float = 0.0
    failovers: int = 0
    switchovers: int = 0
    # The comparator's counters under the API's names; ``passthrough_by_ethertype`` is a
    # dict (EtherType -> primary frames released uncompared), every other value an int.
    comparator: dict[str, Any] = field(default_factory=dict)
    # Whether colopp's comparator on the primary runs (None: QEMU's colo-compare, or unknown).
    comparator_alive: bool | None = None
    agents: dict[str, AgentLiveness] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    last_checkpoint_at: float | None = None

    def observe_pause(self, seconds: float) -> None:
        self.pause_counts[bisect.bisect_left(PAUSE_BUCKETS, seconds)] += 1
        self.pause_sum += seconds

    def observe_agent(self, host: str, ok: bool, now: float) -> None:
        """Record one call to ``host``'s agent (a heartbeat or a status): answered or not."""
        agent = self.agents.setdefault(host, AgentLiveness())
        agent.up = ok
        if ok:
            agent.last_ok = now if agent.last_ok is None else max(agent.last_ok, now)


@dataclass
class SamplerMemory:
    """What the previous sample saw: per host (QEMU pid, checkpoint count), and the
    comparator's divergence counters."""

    seen: dict[str, tuple[int | None, int]] = field(default_factory=dict)
    divergences: dict[str, int] = field(default_factory=dict)


def cpu_seconds_from_stat(text: str, ticks: int) -> float:
    """User + system CPU seconds from a ``/proc/PID/stat`` line."""
    fields = text.rsplit(")", 1)[1].split()
    # After the command: state is field 3, utime field 14, stime field 15 (man 5 proc).
    return (int(fields[11]) + int(fields[12])) / ticks


def read_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of a local process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return cpu_seconds_from_stat(handle.read(), os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def hold_time_histogram(counters: dict[str, Any]) -> dict[str, Any] | None:
    """The comparator's cumulative hold-time histogram (primary frames, arrival to release):
    finite bucket bounds in seconds, counts (one more than bounds: the overflow), sum."""
    counts = counters.get("hold_time_counts")
    bounds = [b for b in counters.get("hold_time_buckets") or () if isinstance(b, int | float)]
    if not isinstance(counts, list) or len(counts) != len(bounds) + 1:
        return None
    return {
        "buckets": bounds,
        "counts": [int(n) for n in counts],
        "sum": float(counters.get("hold_time_sum") or 0.0),
    }


def _divergence_deltas(memory: SamplerMemory, now: dict[str, int]) -> dict[str, int]:
    if sum(now.values()) < sum(memory.divergences.values()):
        previous: dict[str, int] = {}  # the comparator restarted: its counters did too
    else:
        previous = memory.divergences
    return {r: n - previous.get(r, 0) for r, n in now.items() if n > previous.get(r, 0)}


def passthrough_by_ethertype(counters: dict[str, Any]) -> dict[str, int]:
    """Primary frames the comparator released uncompared, by EtherType (``"0x0806"``...)."""
    raw = counters.get("passthrough_by_ethertype")
    if not isinstance(raw, dict):
        return {}
    return {str(k): int(v) for k, v in raw.items() if isinstance(v, int)}


def digest(
    memory: SamplerMemory,
    tally: Tally,
    statuses: dict[str, dict[str, Any]],
    roles: tuple[str, str | None],
    now: float,
    cpu: dict[str, float],
) -> tuple[dict[str, Any], list[Event]]:
    """One sample and its events from the agents' replies; updates ``memory`` and ``tally``.

    ``roles`` is (primary host, secondary host or None).
    """
    primary, secondary = roles
    status = statuses.get(primary, {})
    count = int(status.get("checkpoints") or 0)
    pid = status.get("pid")
    before = memory.seen.get(primary)
    new = max(0, count - before[1]) if before is not None and before[0] == pid else 0
    memory.seen[primary] = (pid, count)
    pauses = [float(p) for p in (status.get("checkpoint_pauses_ms") or [])][-new:] if new else []

    counters = (status.get("comparator") or {}).get("counters") or {}
    divergences = {str(k): int(v) for k, v in (counters.get("divergences") or {}).items()}
    deltas = _divergence_deltas(memory, divergences) if counters else {}
    memory.divergences = divergences if counters else memory.divergences
    events: list[Event] = [
        (now, "divergence", {"reason": reason, "count": n}) for reason, n in deltas.items()
    ]
    reasons = [reason for reason, n in deltas.items() for _ in range(n)]
    default = "periodic" if counters else "colo-compare"
    by_reason: Counter[str] = Counter()  # this interval's checkpoints (the dashboard's chart)
    for i, pause in enumerate(pauses):
        reason = reasons[i] if i < len(reasons) else default
        events.append((now, "checkpoint", {"reason": reason, "pause_ms": round(pause, 3)}))
        tally.checkpoints[reason] += 1
        by_reason[reason] += 1
        tally.observe_pause(pause / 1000.0)
    tally.checkpoints[default] += max(0, new - len(pauses))
    if new > len(pauses):
        by_reason[default] += new - len(pauses)
    tally.divergences.update(deltas)
    comparator: dict[str, Any] = {
        api: int(counters.get(key) or 0) for key, api in COMPARATOR_KEYS.items()
    }
    if counters:
        comparator["divergences"] = sum(divergences.values())
        comparator["passthrough_by_ethertype"] = passthrough_by_ethertype(counters)
        tally.comparator = comparator
    tally.cpu_seconds = dict(cpu)
    for host, reply in statuses.items():
        tally.observe_agent(host, "error" not in reply, now)
    comparator_state = status.get("comparator")
    tally.comparator_alive = (
        bool(comparator_state.get("alive")) if isinstance(comparator_state, dict) else None
    )
    last = status.get("last_checkpoint_at")
    tally.last_checkpoint_at = float(last) if last is not None else tally.last_checkpoint_at
    sample = {
        "t": now,
        "primary": primary,
        "secondary": secondary,
        "checkpoints": count,
        "new_checkpoints": new,
        "checkpoint_pauses_ms": pauses,
        "last_checkpoint_at": tally.last_checkpoint_at,
        "pids": {host: s.get("pid") for host, s in statuses.items() if s.get("vm_alive")},
        "cpu_seconds": cpu,
        "comparator": comparator if counters else None,
        "divergences": divergences if counters else None,
        "checkpoint_reasons": dict(by_reason),
        "hold_time": hold_time_histogram(counters) if counters else None,
    }
    return sample, events
