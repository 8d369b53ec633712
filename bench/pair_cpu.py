"""CPU used OUTSIDE the lab on each CPU during a bench.pair window: a window disturbed by other
work on the machine (another engineer's build, a pip install) shows it.

Per CPU: busy seconds (``/proc/stat``) minus what the lab's processes used there. The lab's
nodes are pinned (``colopp.lab.cpuset``): a node's processes (their ``/proc/<pid>/stat``
CPU, for the processes in its cgroup at both ends of the window) count on its CPUs, split
evenly when it has several; the client program, which exits before the window's end sample,
counts through ``RUSAGE_CHILDREN`` (every child the bench waited for) on the client's CPUs.
"""

from __future__ import annotations

import contextlib
import os
import resource
from dataclasses import dataclass, field
from pathlib import Path

from bench.pair_stats import proc_cpu_seconds
from colopp.lab.cpuset import CpuPlan, cpu_busy, group_pids
from colopp.lab.plan import Node


@dataclass(frozen=True)
class CpuSample:
    """Per-CPU busy seconds, and the lab's own seconds on each CPU so far."""

    busy_s: dict[int, float] = field(default_factory=dict)
    lab_s: dict[int, float] = field(default_factory=dict)
    """The pinned nodes' processes (``pid -> seconds`` summed per CPU)."""
    lab_pids: dict[int, dict[int, float]] = field(default_factory=dict)
    """CPU -> {pid: seconds}: a process must be seen at both ends to count."""
    children_s: float = 0.0
    client_cpus: tuple[int, ...] = ()


def take(plan: CpuPlan | None) -> CpuSample:
    """The machine now (an empty sample without a CPU plan)."""
    if plan is None:
        return CpuSample()
    ticks = os.sysconf("SC_CLK_TCK")
    stat = Path("/proc/stat").read_text()
    cpus = sorted({c for node_cpus in plan.cpus.values() for c in node_cpus})
    busy = {c: cpu_busy(stat, (c,), ticks) for c in cpus}
    lab_pids: dict[int, dict[int, float]] = {c: {} for c in cpus}
    for node, node_cpus in plan.cpus.items():
        for pid in group_pids(plan.group(node)):
            with contextlib.suppress(OSError, ValueError):
                used = proc_cpu_seconds(Path(f"/proc/{pid}/stat").read_text(), ticks)
                for c in node_cpus:
                    lab_pids[c][pid] = lab_pids[c].get(pid, 0.0) + used / len(node_cpus)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSample(
        busy_s=busy,
        lab_pids=lab_pids,
        children_s=children.ru_utime + children.ru_stime,
        client_cpus=plan.cpus.get(Node.CLIENT, ()),
    )


def outside_share(before: CpuSample, after: CpuSample, window_s: float) -> dict[str, float]:
    """``cpuN`` -> share of the window CPU N spent on processes outside the lab (0..1)."""
    if window_s <= 0:
        return {}
    client = after.client_cpus
    children = after.children_s - before.children_s
    out: dict[str, float] = {}
    for cpu, busy in after.busy_s.items():
        if cpu not in before.busy_s:
            continue
        old, new = before.lab_pids.get(cpu, {}), after.lab_pids.get(cpu, {})
        lab = sum(new[pid] - old[pid] for pid in new if pid in old)
        if cpu in client:
            lab += children / len(client)
        out[f"cpu{cpu}"] = round(max(0.0, busy - before.busy_s[cpu] - lab) / window_s, 3)
    return out


def process_role(cmdline: bytes) -> str:
    """What a lab process is, from its ``/proc/<pid>/cmdline``: ``qemu``, ``comparator``,
    ``mirror`` (the comparator's child, ``colopp.mirror``), ``relay``, ``agent`` or
    ``other`` (for the per-process split of a host's CPU)."""
    args = cmdline.split(b"\0")
    if any(a.endswith(b"qemu-system-x86_64") for a in args[:4]):
        return "qemu"
    for name, role in (
        (b"colopp.compare", "comparator"),
        (b"colopp.mirror", "mirror"),
        (b"colopp.ingress", "relay"),
        (b"colopp.agent", "agent"),
    ):
        if name in args:
            return role
    return "other"


def role_cpu_seconds(pids: list[int]) -> dict[str, float]:
    """CPU seconds used so far by ``pids``, summed per :func:`process_role` (processes that
    vanished count 0)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            used = proc_cpu_seconds(Path(f"/proc/{pid}/stat").read_text(), ticks)
            role = process_role(Path(f"/proc/{pid}/cmdline").read_bytes())
            out[role] = out.get(role, 0.0) + used
    return out
