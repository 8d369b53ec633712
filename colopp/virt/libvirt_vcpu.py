"""The semi-active secondary through libvirt: ``pinVcpuFlags`` and the ``vcpu_quota``
scheduler parameter instead of colopp/vcpu's direct affinity and cgroup calls.

The plan is the same pure :func:`colopp.vcpu.placement.plan_shrink`; libvirt's ``vcpu_quota``
caps each vCPU, so the pair-wide quota is split evenly over the vCPUs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import libvirt

from colopp.vcpu import VcpuError
from colopp.vcpu.placement import parse_cpus_fast, plan_shrink, thread_ids
from colopp.vcpu.shrink import VcpuState
from colopp.virt.libvirt_domain import DomainProcess
from colopp.virt.libvirt_monitor import LibvirtMonitor

VCPU_PERIOD_US = 100_000
_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE


def cpumap(cpus: frozenset[int], host_cpus: int) -> tuple[bool, ...]:
    """libvirt's cpumap: one boolean per host CPU."""
    return tuple(cpu in cpus for cpu in range(host_cpus))


def per_vcpu_quota_us(quota: float, vcpus: int, period_us: int = VCPU_PERIOD_US) -> int:
    """libvirt's per-vCPU ``vcpu_quota`` for a quota of ``quota`` CPUs over all vCPUs
    (libvirt's floor is 1000 µs)."""
    return max(1000, int(quota * period_us / vcpus))


def _pinned(maps: Sequence[Sequence[bool]]) -> list[frozenset[int]]:
    return [frozenset(i for i, on in enumerate(m) if on) for m in maps]


async def shrink_domain(
    process: DomainProcess, monitor: LibvirtMonitor, quota: float | None, fraction: float
) -> VcpuState:
    """Pin every vCPU on ``fraction`` of the CPUs it may use and cap it at ``quota`` CPUs.

    Raises:
        VcpuError: libvirt refused a pin or the quota (what was pinned is restored).
        QmpError: ``query-cpus-fast`` failed.
    """
    threads = parse_cpus_fast(await monitor.execute("query-cpus-fast"))
    tids = thread_ids(threads)
    domain = process.domain
    try:
        _info, maps = await asyncio.to_thread(domain.vcpus)
        host_cpus = len(maps[0])
        before_sets = _pinned(maps)
        plan = plan_shrink(threads, before_sets[0], None, fraction)
        for thread in threads:
            await asyncio.to_thread(
                domain.pinVcpuFlags, thread.cpu_index, cpumap(plan.target, host_cpus), _LIVE
            )
        if quota is not None:
            params = {
                "vcpu_period": VCPU_PERIOD_US,
                "vcpu_quota": per_vcpu_quota_us(quota, len(threads)),
            }
            await asyncio.to_thread(domain.setSchedulerParametersFlags, params, _LIVE)
    except libvirt.libvirtError as exc:
        why = exc.get_error_message()
        raise VcpuError(f"libvirt vCPU shrink of {process.name}", why) from exc
    by_index = {t.cpu_index: t.thread_id for t in threads}
    before = {by_index[i]: cpus for i, cpus in enumerate(before_sets) if i in by_index}
    after = {tid: plan.target for tid in tids}
    return VcpuState(pid=process.pid or 0, thread_ids=tids, before=before, after=after, quota=quota)


async def restore_domain(process: DomainProcess, monitor: LibvirtMonitor, state: VcpuState) -> None:
    """Undo :func:`shrink_domain`: the vCPUs' former CPU sets, no quota.

    Raises:
        VcpuError: libvirt refused (the domain may be gone).
    """
    domain = process.domain
    threads = parse_cpus_fast(await monitor.execute("query-cpus-fast"))
    try:
        _info, maps = await asyncio.to_thread(domain.vcpus)
        host_cpus = len(maps[0])
        if state.quota is not None:
            params: dict[str, Any] = {"vcpu_quota": -1}
            await asyncio.to_thread(domain.setSchedulerParametersFlags, params, _LIVE)
        for thread in threads:
            cpus = state.before.get(thread.thread_id, frozenset(range(host_cpus)))
            await asyncio.to_thread(
                domain.pinVcpuFlags, thread.cpu_index, cpumap(cpus, host_cpus), _LIVE
            )
    except libvirt.libvirtError as exc:
        why = exc.get_error_message()
        raise VcpuError(f"libvirt vCPU restore of {process.name}", why) from exc
