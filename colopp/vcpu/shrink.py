"""Shrink the secondary's vCPUs onto fewer host CPUs (and cap them); restore before failover.

The I/O adapter over :mod:`colopp.vcpu.placement` and :mod:`colopp.vcpu.cgroup`: asks QEMU
for its vCPU threads over QMP, applies ``sched_setaffinity`` per thread and the cgroup cap,
and returns a :class:`VcpuState` that :func:`restore` undoes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from colopp.errors import ConfigError
from colopp.vcpu import VcpuError
from colopp.vcpu.cgroup import CpuCap, CpuController, apply_cap, find_cpu_controller, remove_cap
from colopp.vcpu.placement import ShrinkPlan, parse_cpus_fast, plan_shrink, thread_ids

PROC = Path("/proc")


class QmpExecutor(Protocol):
    """What :func:`shrink` needs of :class:`colopp.qmp.monitor.Monitor`."""

    async def execute(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Run one QMP command and return its ``return`` value."""


@dataclass(frozen=True)
class ThreadAffinity:
    """The affinity system calls; tests swap them for fakes."""

    get: Callable[[int], set[int]] = os.sched_getaffinity
    set: Callable[[int, frozenset[int]], None] = os.sched_setaffinity


@dataclass(frozen=True)
class VcpuState:
    """What :func:`shrink` did, for :func:`restore`, status and metrics."""

    pid: int
    thread_ids: tuple[int, ...]
    before: Mapping[int, frozenset[int]]
    after: Mapping[int, frozenset[int]]
    quota: float | None
    cap: CpuCap | None = field(default=None, compare=False)

    def to_status(self) -> dict[str, Any]:
        """A JSON-ready summary (CPU sets as sorted lists)."""
        return {
            "pid": self.pid,
            "thread_ids": list(self.thread_ids),
            "cpus_before": {str(t): sorted(c) for t, c in self.before.items()},
            "cpus_after": {str(t): sorted(c) for t, c in self.after.items()},
            "quota": self.quota,
            "cgroup": str(self.cap.limited) if self.cap is not None else None,
            "cgroup_version": self.cap.controller.version.value if self.cap is not None else None,
        }


def process_of_thread(tid: int, proc: Path = PROC) -> int:
    """The process (thread group) id a host thread belongs to, from ``/proc/TID/status``.

    Raises:
        VcpuError: the thread does not exist or its status has no ``Tgid``.
    """
    path = proc / str(tid) / "status"
    try:
        text = path.read_text()
    except OSError as exc:
        raise VcpuError("find QEMU process", f"read {path}: {exc}") from exc
    for line in text.splitlines():
        if line.startswith("Tgid:"):
            return int(line.split()[1])
    raise VcpuError("find QEMU process", f"no Tgid in {path}")


async def shrink(
    monitor: QmpExecutor,
    cpus: int | None,
    quota: float | None,
    *,
    fraction: float | None = None,
    cgroup_name: str | None = None,
    controller: CpuController | None = None,
    affinity: ThreadAffinity = ThreadAffinity(),
    proc: Path = PROC,
) -> VcpuState:
    """Pin the vCPU threads to ``cpus`` host CPUs (or ``fraction`` of them) and/or cap
    them together at ``quota`` CPUs (0.5 = half a CPU) in a cgroup.

    The CPUs available are the QEMU process's own affinity; the highest-numbered are kept
    (see :func:`colopp.vcpu.placement.plan_shrink`). ``cgroup_name`` defaults to
    ``qemu-PID``. If a step fails, what was done is undone before raising.

    Raises:
        ConfigError: neither a CPU count/fraction nor a quota given, or bad values.
        QmpError: ``query-cpus-fast`` failed.
        VcpuError: an affinity call or a cgroup operation failed; also when a quota is
            asked for and this host has no ``cpu`` cgroup controller.
    """
    if cpus is None and fraction is None and quota is None:
        raise ConfigError("vCPU shrink needs a CPU count, a CPU fraction or a quota")
    threads = parse_cpus_fast(await monitor.execute("query-cpus-fast"))
    tids = thread_ids(threads)
    pid = process_of_thread(tids[0], proc)
    before = {tid: _get(affinity, tid) for tid in tids}
    after = dict(before)
    if cpus is not None or fraction is not None:
        plan = plan_shrink(threads, _get(affinity, pid), cpus, fraction)
        after = _apply_plan(affinity, plan, before)
    cap = None
    if quota is not None:
        try:
            cap = _cap(controller, cgroup_name or f"qemu-{pid}", pid, tids, quota, proc)
        except (VcpuError, ConfigError):
            _set_all(affinity, before)
            raise
    return VcpuState(pid=pid, thread_ids=tids, before=before, after=after, quota=quota, cap=cap)


def _cap(
    controller: CpuController | None,
    name: str,
    pid: int,
    tids: tuple[int, ...],
    quota: float,
    proc: Path,
) -> CpuCap:
    found = controller or find_cpu_controller()
    if found is None:
        raise VcpuError("cap vCPU threads", "this host has no cgroup cpu controller mounted")
    return apply_cap(found, name, pid, tids, quota, proc=proc)


def _get(affinity: ThreadAffinity, tid: int) -> frozenset[int]:
    try:
        return frozenset(affinity.get(tid))
    except OSError as exc:
        raise VcpuError("sched_getaffinity", f"thread {tid}: {exc}") from exc


def _apply_plan(
    affinity: ThreadAffinity, plan: ShrinkPlan, before: Mapping[int, frozenset[int]]
) -> dict[int, frozenset[int]]:
    after: dict[int, frozenset[int]] = {}
    try:
        for placement in plan.placements:
            affinity.set(placement.thread_id, placement.cpus)
            after[placement.thread_id] = _get(affinity, placement.thread_id)
    except (OSError, VcpuError) as exc:
        _set_all(affinity, {tid: before[tid] for tid in after})
        if isinstance(exc, VcpuError):
            raise
        raise VcpuError("sched_setaffinity", f"thread {placement.thread_id}: {exc}") from exc
    return after


def _set_all(affinity: ThreadAffinity, cpus: Mapping[int, frozenset[int]]) -> list[VcpuError]:
    """Set each thread's affinity; threads that exited are skipped, failures returned."""
    errors: list[VcpuError] = []
    for tid, cpu_set in cpus.items():
        try:
            affinity.set(tid, cpu_set)
        except ProcessLookupError:
            continue
        except OSError as exc:
            errors.append(VcpuError("sched_setaffinity", f"restore thread {tid}: {exc}"))
    return errors


async def restore(
    monitor: QmpExecutor, state: VcpuState, *, affinity: ThreadAffinity = ThreadAffinity()
) -> None:
    """Remove the cap and give every vCPU thread back its affinity from before :func:`shrink`.

    Meant to run before the secondary is promoted. ``monitor`` is not needed to undo (the
    state holds the thread ids) and is taken so callers keep one shape; every step is tried
    even when one fails. Threads that exited are skipped.

    Raises:
        VcpuError: the first step that failed (lifting the cap or an affinity call).
    """
    del monitor
    errors: list[VcpuError] = []
    if state.cap is not None:
        try:
            remove_cap(state.cap)
        except VcpuError as exc:
            errors.append(exc)
    errors += _set_all(affinity, state.before)
    if errors:
        raise errors[0]
