"""Keep a vCPU cap across an agent restart.

The cap (:mod:`colopp.vcpu.cgroup`) is the kernel's: it outlives the agent that set it. A
restarted agent must know it (to lift it before the secondary is promoted) and must not
trust that it is still intact (an operator, or a cgroup tool, may have moved threads or
lifted the limit meanwhile). :func:`cap_record` / :func:`recorded_cap` carry it through the
agent's state file (plain data, pure); :func:`keep_cap` rebuilds it against the ``cpu``
controller found now (an agent in a lab namespace mounts its own view of the same
hierarchy), checks the limit and where each vCPU thread is, and puts back what is missing.
A record from an agent that did not save the cap (an older build) is rebuilt from the
group's name; the tasks then go back, at removal, to the cgroup this agent runs in (v2) or
QEMU's main thread's (v1), which is where QEMU started.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from colopp.errors import ConfigError
from colopp.vcpu import VcpuError
from colopp.vcpu.cgroup import (
    DEFAULT_PERIOD_US,
    PROC,
    CgroupVersion,
    CpuCap,
    CpuController,
    apply_cap,
    cgroup_of,
    cpu_max_line,
    group_path,
    quota_us_for,
    read_limit,
    remove_cap,
)


def cap_record(cap: CpuCap) -> dict[str, Any]:
    """The JSON form of ``cap`` (pure): its group's name, not its path (the next agent may
    see the hierarchy at another mount point)."""
    return {
        "version": cap.controller.version.value,
        "name": cap.group.name,
        "period_us": cap.period_us,
        "origins": [[task, path] for task, path in cap.origins],
    }


def recorded_cap(data: Any) -> tuple[str, int, tuple[tuple[int, str], ...]]:
    """(group name, period in us, origins) from :func:`cap_record`'s form (pure).

    Raises:
        ConfigError: not that form.
    """
    if not isinstance(data, dict):
        raise ConfigError("recorded vCPU cap must be an object")
    try:
        name, period = str(data["name"]), int(data["period_us"])
        origins = tuple((int(task), str(path)) for task, path in data["origins"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"recorded vCPU cap: {exc!r}") from exc
    return name, period, origins


def _cgroup_at(path: Path, version: CgroupVersion) -> str:
    try:
        return cgroup_of(path.read_text(), version)
    except OSError as exc:
        raise VcpuError("read cgroup", f"{path}: {exc}") from exc


def _proc_cgroup(proc: Path, pid: int, tid: int | None, version: CgroupVersion) -> str:
    task = proc / str(pid) if tid is None else proc / str(pid) / "task" / str(tid)
    return _cgroup_at(task / "cgroup", version)


def _relative(controller: CpuController, path: Path) -> str:
    return "/" + str(path.relative_to(controller.mount.resolve()))


def _default_origins(
    controller: CpuController, pid: int, thread_ids: Sequence[int], proc: Path
) -> tuple[tuple[int, str], ...]:
    """Where QEMU's tasks were before the cap, when no record says (see the module doc)."""
    if controller.version is CgroupVersion.V1:
        main = _proc_cgroup(proc, pid, None, controller.version)
        return tuple((tid, main) for tid in thread_ids)
    return ((pid, _cgroup_at(proc / "self" / "cgroup", controller.version)),)


def _write(operation: str, path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise VcpuError(operation, f"write {text!r} to {path}: {exc}") from exc


def keep_cap(
    controller: CpuController,
    name: str,
    pid: int,
    thread_ids: Sequence[int],
    quota: float,
    recorded: Any = None,
    proc: Path = PROC,
) -> tuple[CpuCap, list[str]]:
    """The cap named ``name`` on QEMU ``pid``'s vCPU threads, checked and repaired; returns
    it and what had to be put back (empty: it was intact).

    Raises:
        ConfigError: a bad record, name or quota.
        VcpuError: a cgroup file cannot be read or written.
    """
    period, origins = DEFAULT_PERIOD_US, None
    if recorded is not None:
        name, period, recorded_origins = recorded_cap(recorded)
        origins = recorded_origins or None
    group = group_path(controller, name)
    if origins is None:
        origins = _default_origins(controller, pid, thread_ids, proc)
    quota_us = quota_us_for(quota, period)
    cap = CpuCap(controller, group, pid, tuple(thread_ids), quota, quota_us, period, origins)
    v2 = controller.version is CgroupVersion.V2
    intact_group = cap.limited.is_dir() and (
        not v2 or _proc_cgroup(proc, pid, None, controller.version) == _relative(controller, group)
    )
    if not intact_group:
        if group.is_dir():
            remove_cap(cap)  # what is left of it, before a fresh one
        fresh = apply_cap(controller, name, pid, thread_ids, quota, period, proc)
        return fresh, [f"cgroup {group} re-created"]
    repaired: list[str] = []
    if read_limit(cap) != (quota_us, period):
        if v2:
            _write("set cpu.max", cap.limited / "cpu.max", cpu_max_line(quota_us, period))
        else:
            _write("set cpu.cfs_period_us", group / "cpu.cfs_period_us", str(period))
            _write("set cpu.cfs_quota_us", group / "cpu.cfs_quota_us", str(quota_us))
        repaired.append(f"limit {quota_us}/{period} us")
    inside = _relative(controller, cap.limited)
    tasks = cap.limited / ("cgroup.threads" if v2 else "tasks")
    for tid in thread_ids:
        if _proc_cgroup(proc, pid, tid, controller.version) != inside:
            _write("move vCPU thread", tasks, str(tid))
            repaired.append(f"thread {tid}")
    return cap, repaired
