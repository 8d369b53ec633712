"""Pure vCPU placement: parse ``query-cpus-fast``, plan a shrink, adapt it to lag.

Nothing here touches the host; :mod:`colopp.vcpu.shrink` applies the plans.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from colopp.errors import ConfigError


@dataclass(frozen=True, order=True)
class VcpuThread:
    """One vCPU as QEMU reports it: its index and the host thread that runs it."""

    cpu_index: int
    thread_id: int


def parse_cpus_fast(reply: Any) -> list[VcpuThread]:
    """The vCPUs of a ``query-cpus-fast`` reply (a list of dicts), ordered by ``cpu-index``.

    Under single-threaded TCG every vCPU reports the same ``thread-id``; that is kept here
    (see :func:`thread_ids`).

    Raises:
        ConfigError: the reply is not a list of dicts with integer ``cpu-index`` and a
            positive integer ``thread-id``, or a ``cpu-index`` repeats.
    """
    if not isinstance(reply, list) or not reply:
        raise ConfigError(f"query-cpus-fast: expected a non-empty list, got {reply!r:.80}")
    threads: list[VcpuThread] = []
    for entry in reply:
        if not isinstance(entry, dict):
            raise ConfigError(f"query-cpus-fast: expected a dict per vCPU, got {entry!r:.80}")
        index, tid = entry.get("cpu-index"), entry.get("thread-id")
        if not _is_int(index) or index < 0:
            raise ConfigError(f"query-cpus-fast: bad cpu-index {index!r}")
        if not _is_int(tid) or tid <= 0:
            raise ConfigError(f"query-cpus-fast: bad thread-id {tid!r} for vCPU {index}")
        threads.append(VcpuThread(cpu_index=index, thread_id=tid))
    indexes = [t.cpu_index for t in threads]
    if len(set(indexes)) != len(indexes):
        raise ConfigError(f"query-cpus-fast: repeated cpu-index in {sorted(indexes)}")
    return sorted(threads)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def thread_ids(threads: Iterable[VcpuThread]) -> tuple[int, ...]:
    """Distinct host thread ids, in vCPU order (one per vCPU with MTTCG/KVM)."""
    return tuple(dict.fromkeys(t.thread_id for t in sorted(threads)))


@dataclass(frozen=True)
class Placement:
    """Where one vCPU thread may run after the shrink."""

    thread_id: int
    cpu_indexes: tuple[int, ...]
    cpus: frozenset[int]


@dataclass(frozen=True)
class ShrinkPlan:
    """The host CPUs kept for the secondary, and each vCPU thread's new CPU set."""

    available: frozenset[int]
    target: frozenset[int]
    placements: tuple[Placement, ...]

    def cpus_of(self, thread_id: int) -> frozenset[int]:
        """The planned CPU set of one thread.

        Raises:
            KeyError: the thread is not in the plan.
        """
        for placement in self.placements:
            if placement.thread_id == thread_id:
                return placement.cpus
        raise KeyError(thread_id)


def target_count(available: int, count: int | None = None, fraction: float | None = None) -> int:
    """How many host CPUs to keep: ``count``, or ``ceil(fraction * available)``.

    The result is clamped to ``1..available``: a shrink never leaves a vCPU with no CPU
    and never asks for CPUs the process may not use.

    Raises:
        ConfigError: not exactly one of ``count`` and ``fraction`` given, ``available`` < 1,
            ``count`` < 1, or ``fraction`` outside ``(0, 1]``.
    """
    if available < 1:
        raise ConfigError("no host CPU available to the QEMU process")
    if (count is None) == (fraction is None):
        raise ConfigError("give exactly one of a CPU count and a CPU fraction")
    if count is not None:
        if count < 1:
            raise ConfigError(f"CPU count {count} must be at least 1")
        return min(count, available)
    assert fraction is not None
    if not (math.isfinite(fraction) and 0 < fraction <= 1):
        raise ConfigError(f"CPU fraction {fraction} must be in (0, 1]")
    return max(1, min(available, math.ceil(fraction * available)))


def plan_shrink(
    threads: Sequence[VcpuThread],
    available: Iterable[int],
    count: int | None = None,
    fraction: float | None = None,
) -> ShrinkPlan:
    """Plan to run every vCPU thread on the same ``n`` host CPUs out of ``available``.

    The highest-numbered available CPUs are kept (CPU 0 usually carries housekeeping and
    device interrupts). All threads share the kept set, so the host scheduler balances them
    inside it. The same inputs always give the same plan.

    Raises:
        ConfigError: see :func:`target_count`; no threads; a negative CPU number.
    """
    if not threads:
        raise ConfigError("no vCPU threads to place")
    pool = sorted(set(available))
    if pool and pool[0] < 0:
        raise ConfigError(f"negative host CPU number in {pool}")
    keep = target_count(len(pool), count, fraction)
    target = frozenset(pool[-keep:])
    placements = tuple(
        Placement(
            thread_id=tid,
            cpu_indexes=tuple(t.cpu_index for t in sorted(threads) if t.thread_id == tid),
            cpus=target,
        )
        for tid in thread_ids(threads)
    )
    return ShrinkPlan(available=frozenset(pool), target=target, placements=placements)


@dataclass(frozen=True)
class LagSignal:
    """How far behind the secondary is, over the last minute.

    ``timeout_checkpoints_per_minute``: checkpoints the comparator forced because the
    secondary's output did not arrive within the compare timeout. ``hold_latency_ms``: how
    long primary output waited for the secondary's copy (e.g. p90), None when unknown.
    """

    timeout_checkpoints_per_minute: float
    hold_latency_ms: float | None = None


@dataclass(frozen=True)
class AdaptivePolicy:
    """Thresholds of :func:`adapt_target`; the gap between relax and tighten is hysteresis."""

    relax_checkpoints_per_minute: float = 6.0
    tighten_checkpoints_per_minute: float = 1.0
    relax_latency_ms: float = 50.0
    tighten_latency_ms: float = 10.0
    step: int = 1


def adapt_target(
    current: int,
    minimum: int,
    maximum: int,
    signal: LagSignal,
    policy: AdaptivePolicy = AdaptivePolicy(),
) -> int:
    """The next CPU count for the secondary, from how much it lags.

    The rule, one step at a time so one noisy minute cannot swing the placement:

    - **relax** (``current + step``, at most ``maximum``) when the secondary lags: compare
      timeouts at or above ``relax_checkpoints_per_minute``, or hold latency at or above
      ``relax_latency_ms``;
    - **tighten** (``current - step``, at least ``minimum``) when it clearly keeps up: both
      signals below their tighten thresholds (an unknown latency does not block);
    - otherwise keep ``current``.

    Raises:
        ConfigError: ``minimum`` < 1, ``minimum`` > ``maximum``, ``step`` < 1, or thresholds
            where tighten is above relax.
    """
    if minimum < 1 or minimum > maximum:
        raise ConfigError(f"CPU bounds {minimum}..{maximum} are not a range of at least 1")
    if policy.step < 1:
        raise ConfigError(f"adaptive step {policy.step} must be at least 1")
    if (
        policy.tighten_checkpoints_per_minute > policy.relax_checkpoints_per_minute
        or policy.tighten_latency_ms > policy.relax_latency_ms
    ):
        raise ConfigError("adaptive policy: tighten thresholds must not exceed relax ones")
    current = min(max(current, minimum), maximum)
    latency = signal.hold_latency_ms
    lagging = signal.timeout_checkpoints_per_minute >= policy.relax_checkpoints_per_minute or (
        latency is not None and latency >= policy.relax_latency_ms
    )
    if lagging:
        return min(maximum, current + policy.step)
    keeping_up = signal.timeout_checkpoints_per_minute < policy.tighten_checkpoints_per_minute and (
        latency is None or latency < policy.tighten_latency_ms
    )
    if keeping_up:
        return max(minimum, current - policy.step)
    return current
