"""A CPU-bandwidth cap on a set of vCPU threads, with cgroups.

Two kernels' ways, picked by :func:`find_cpu_controller`:

- **cgroup v2** (``cpu`` listed in the unified hierarchy's ``cgroup.controllers``): a thread
  can only leave its process's cgroup for a *threaded* cgroup of the same threaded subtree.
  So the QEMU process moves into its own domain cgroup ``colopp/NAME``, a child
  ``colopp/NAME/vcpus`` is made ``threaded``, ``+cpu`` is enabled on the way down, the vCPU
  threads are written to ``vcpus/cgroup.threads`` and ``vcpus/cpu.max`` gets
  ``"QUOTA PERIOD"``. Removal writes ``"max PERIOD"``, moves the threads back to the
  domain, removes ``vcpus``, moves the process back to the cgroup it came from and removes
  ``colopp/NAME``.
- **cgroup v1** (a hierarchy with the ``cpu`` controller mounted): threads move one by one
  through ``tasks``; the cap is ``cpu.cfs_period_us`` + ``cpu.cfs_quota_us`` (``-1`` is
  "max"). Removal puts each thread back in the cgroup it came from.

Every path is checked to lie under the controller's mount; ``OSError`` becomes
:class:`colopp.vcpu.VcpuError` naming the operation.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import math
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from colopp.errors import ConfigError
from colopp.vcpu import VcpuError

PROC = Path("/proc")
PRIVATE_MOUNT = Path("/run/colopp-cgroup")
MOUNTS = Path("/proc/self/mounts")
# Short periods: a capped secondary is throttled for at most a few ms at a time, so its
# guest's ACKs (which early answers wait for) are never held back for a whole 100 ms period.
DEFAULT_PERIOD_US = 5_000
# The kernel refuses quotas below 1 ms per period (both v1 and v2).
MIN_QUOTA_US = 1_000
GROUP_PARENT = "colopp"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class CgroupVersion(enum.Enum):
    """Which cgroup interface carries the ``cpu`` controller."""

    V1 = "v1"
    V2 = "v2"


@dataclass(frozen=True)
class CpuController:
    """Where the ``cpu`` controller is mounted, and in which cgroup version."""

    version: CgroupVersion
    mount: Path


@dataclass(frozen=True)
class CpuCap:
    """A cap in force: what :func:`remove_cap` needs to undo it."""

    controller: CpuController
    group: Path
    pid: int
    thread_ids: tuple[int, ...]
    quota: float
    quota_us: int
    period_us: int
    origins: tuple[tuple[int, str], ...]
    """(task id, cgroup path relative to the mount) to move back to: each thread for v1,
    the process (by pid) for v2."""

    @property
    def limited(self) -> Path:
        """The cgroup whose limit file holds the cap (v2: the threaded ``vcpus`` child)."""
        return self.group / "vcpus" if self.controller.version is CgroupVersion.V2 else self.group


def parse_cpu_mounts(mounts: str) -> tuple[list[Path], list[Path]]:
    """From ``/proc/self/mounts`` text: (v1 mounts carrying ``cpu``, all cgroup2 mounts)."""
    v1: list[Path] = []
    v2: list[Path] = []
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mount_point = Path(fields[1].replace("\\040", " "))
        if fields[2] == "cgroup2":
            v2.append(mount_point)
        elif fields[2] == "cgroup" and "cpu" in fields[3].split(","):
            v1.append(mount_point)
    return v1, v2


def find_cpu_controller(mounts_file: Path = MOUNTS) -> CpuController | None:
    """The host's ``cpu`` controller: cgroup v2 if it offers ``cpu``, else v1, else None.

    ``ip netns exec`` (how agents run in a host's network namespace) remounts ``/sys`` in a
    mount namespace of its own, which hides the cgroup mounts. With no cgroup mounted at all,
    the host's hierarchy is mounted again at :data:`PRIVATE_MOUNT` (in that mount namespace
    only; the same kernel hierarchy, so caps apply host-wide).

    Raises:
        VcpuError: the mount table cannot be read.
    """
    found = _find_cpu_controller(mounts_file)
    if found is None and mounts_file == MOUNTS and not _any_cgroup(mounts_file):
        found = _mount_private()
    return found


def _any_cgroup(mounts_file: Path) -> bool:
    with contextlib.suppress(OSError):
        return any(
            len(f) > 2 and f[2] in ("cgroup", "cgroup2")
            for f in (line.split() for line in mounts_file.read_text().splitlines())
        )
    return False


def _mount_private() -> CpuController | None:
    """Mount cgroup2 (if it offers ``cpu``) or the v1 ``cpu`` hierarchy; None if neither."""
    for kind, options, version in (
        ("cgroup2", [], CgroupVersion.V2),
        ("cgroup", ["-o", "cpu"], CgroupVersion.V1),
    ):
        target = PRIVATE_MOUNT / version.value
        try:
            target.mkdir(parents=True, exist_ok=True, mode=0o700)
            done = subprocess.run(
                ["mount", "-t", kind, *options, kind, str(target)],
                capture_output=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode != 0:
            continue
        if version is CgroupVersion.V1:
            return CpuController(version, target)
        with contextlib.suppress(OSError):
            if "cpu" in (target / "cgroup.controllers").read_text().split():
                return CpuController(version, target)
        subprocess.run(["umount", str(target)], capture_output=True, timeout=10, check=False)
    return None


def _find_cpu_controller(mounts_file: Path) -> CpuController | None:
    try:
        v1, v2 = parse_cpu_mounts(mounts_file.read_text())
    except OSError as exc:
        raise VcpuError("read mounts", f"{mounts_file}: {exc}") from exc
    for mount in v2:
        try:
            controllers = (mount / "cgroup.controllers").read_text().split()
        except OSError:
            continue
        if "cpu" in controllers:
            return CpuController(CgroupVersion.V2, mount)
    return CpuController(CgroupVersion.V1, v1[0]) if v1 else None


def quota_us_for(quota: float, period_us: int = DEFAULT_PERIOD_US) -> int:
    """Microseconds per period for a cap of ``quota`` CPUs (0.5 = half of one CPU).

    Raises:
        ConfigError: ``quota`` not a positive finite number, or a period outside
            1 ms..1 s (the kernel's range).
    """
    if not 1_000 <= period_us <= 1_000_000:
        raise ConfigError(f"cgroup period {period_us} us is outside 1000..1000000")
    if not (math.isfinite(quota) and quota > 0):
        raise ConfigError(f"CPU quota {quota} must be a positive number of CPUs")
    return max(MIN_QUOTA_US, round(quota * period_us))


def cpu_max_line(quota_us: int | None, period_us: int) -> str:
    """The cgroup v2 ``cpu.max`` line: ``"QUOTA PERIOD"``, or ``"max PERIOD"`` for no cap."""
    return f"{'max' if quota_us is None else quota_us} {period_us}"


def parse_cpu_max(text: str) -> tuple[int | None, int]:
    """``cpu.max`` text back to (quota in us or None for ``max``, period in us).

    Raises:
        ConfigError: not two fields of the expected form.
    """
    fields = text.split()
    if (
        len(fields) != 2
        or not fields[1].isdigit()
        or not (fields[0] == "max" or fields[0].isdigit())
    ):
        raise ConfigError(f"unexpected cpu.max content {text!r}")
    return (None if fields[0] == "max" else int(fields[0])), int(fields[1])


def cgroup_of(proc_cgroup: str, version: CgroupVersion) -> str:
    """The cpu cgroup path in a ``/proc/PID[/task/TID]/cgroup`` text.

    Raises:
        ConfigError: no line for that hierarchy.
    """
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if version is CgroupVersion.V2 and hierarchy == "0" and controllers == "":
            return path
        if version is CgroupVersion.V1 and "cpu" in controllers.split(","):
            return path
    raise ConfigError(f"no {version.value} cpu cgroup in {proc_cgroup!r:.200}")


def group_path(controller: CpuController, name: str) -> Path:
    """``MOUNT/colopp/NAME``, after checking ``name`` is one plain path component.

    Raises:
        ConfigError: ``name`` is empty, too long, or not ``[A-Za-z0-9][A-Za-z0-9_.-]*``.
    """
    if not _NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"cgroup name {name!r} must match {_NAME.pattern} without '..'")
    return _inside(controller, controller.mount / GROUP_PARENT / name)


def _inside(controller: CpuController, path: Path) -> Path:
    """``path`` if it stays under the controller's mount once resolved."""
    mount = controller.mount.resolve()
    resolved = path.resolve()
    if resolved != mount and mount not in resolved.parents:
        raise ConfigError(f"cgroup path {path} is outside {controller.mount}")
    return resolved


def _origin_path(controller: CpuController, relative: str) -> Path:
    if not relative.startswith("/") or ".." in Path(relative).parts:
        raise ConfigError(f"unexpected cgroup path {relative!r} in /proc")
    return _inside(controller, controller.mount / relative.lstrip("/"))


def _write(operation: str, path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise VcpuError(operation, f"write {text!r} to {path}: {exc}") from exc


def _read_cgroup(operation: str, proc: Path, pid: int, tid: int | None) -> str:
    path = (
        proc / str(pid) / "cgroup"
        if tid is None
        else proc / str(pid) / "task" / str(tid) / "cgroup"
    )
    try:
        return path.read_text()
    except OSError as exc:
        raise VcpuError(operation, f"read {path}: {exc}") from exc


def _check_ids(pid: int, thread_ids: Sequence[int]) -> None:
    if pid <= 0:
        raise ConfigError(f"bad QEMU pid {pid}")
    if not thread_ids or any(tid <= 0 for tid in thread_ids):
        raise ConfigError(f"bad vCPU thread ids {list(thread_ids)}")


def apply_cap(
    controller: CpuController,
    name: str,
    pid: int,
    thread_ids: Sequence[int],
    quota: float,
    period_us: int = DEFAULT_PERIOD_US,
    proc: Path = PROC,
) -> CpuCap:
    """Cap the threads ``thread_ids`` of process ``pid`` together at ``quota`` CPUs.

    On failure, what was already done is undone as far as possible before raising.

    Raises:
        ConfigError: a bad name, id, quota or period, or a path outside the mount.
        VcpuError: a cgroup file or directory operation failed (the operation is named).
    """
    _check_ids(pid, thread_ids)
    quota_us = quota_us_for(quota, period_us)
    group = group_path(controller, name)
    if group.exists():
        raise VcpuError("create cgroup", f"{group} already exists (a cap is already in force?)")
    if controller.version is CgroupVersion.V1:
        origins = tuple(
            (tid, cgroup_of(_read_cgroup("read thread cgroup", proc, pid, tid), controller.version))
            for tid in thread_ids
        )
    else:
        origin = cgroup_of(_read_cgroup("read process cgroup", proc, pid, None), controller.version)
        origins = ((pid, origin),)
    for _, relative in origins:
        _origin_path(controller, relative)
    cap = CpuCap(controller, group, pid, tuple(thread_ids), quota, quota_us, period_us, origins)
    try:
        _mkdir("create cgroup", group)
        if controller.version is CgroupVersion.V1:
            _apply_v1(cap)
        else:
            _apply_v2(cap)
    except (VcpuError, ConfigError):
        _remove(cap)  # best effort: the first error is the one worth reporting
        raise
    return cap


def _mkdir(operation: str, path: Path) -> None:
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise VcpuError(operation, f"mkdir {path}: {exc}") from exc


def _apply_v1(cap: CpuCap) -> None:
    _write("set cpu.cfs_period_us", cap.group / "cpu.cfs_period_us", str(cap.period_us))
    _write("set cpu.cfs_quota_us", cap.group / "cpu.cfs_quota_us", str(cap.quota_us))
    for tid in cap.thread_ids:
        _write("move vCPU thread", cap.group / "tasks", str(tid))


def _apply_v2(cap: CpuCap) -> None:
    mount = cap.controller.mount
    # cpu must be enabled in every ancestor's subtree_control; colopp/ holds no process.
    for ancestor in (mount, mount / GROUP_PARENT):
        _write("enable cpu controller", ancestor / "cgroup.subtree_control", "+cpu")
    _write("move QEMU process", cap.group / "cgroup.procs", str(cap.pid))
    _mkdir("create threaded cgroup", cap.limited)
    _write("make cgroup threaded", cap.limited / "cgroup.type", "threaded")
    _write("enable cpu controller", cap.group / "cgroup.subtree_control", "+cpu")
    _write("set cpu.max", cap.limited / "cpu.max", cpu_max_line(cap.quota_us, cap.period_us))
    for tid in cap.thread_ids:
        _write("move vCPU thread", cap.limited / "cgroup.threads", str(tid))


def read_limit(cap: CpuCap) -> tuple[int | None, int]:
    """The limit now in force in the cap's cgroup: (quota us or None for none, period us).

    Raises:
        VcpuError: the limit files cannot be read.
        ConfigError: their content is not what the kernel writes.
    """
    try:
        if cap.controller.version is CgroupVersion.V2:
            return parse_cpu_max((cap.limited / "cpu.max").read_text())
        quota = int((cap.group / "cpu.cfs_quota_us").read_text())
        period = int((cap.group / "cpu.cfs_period_us").read_text())
    except OSError as exc:
        raise VcpuError("read cpu limit", f"{cap.limited}: {exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"unexpected cfs quota/period in {cap.group}: {exc}") from exc
    return (None if quota < 0 else quota), period


def remove_cap(cap: CpuCap) -> None:
    """Lift the cap, move every task back where it came from, remove the cgroups.

    Threads that exited meanwhile are skipped. Every step is tried; the first failure is
    raised at the end.

    Raises:
        VcpuError: lifting the limit, moving a task back or removing a cgroup failed.
    """
    errors = _remove(cap)
    if errors:
        raise errors[0]


def _remove(cap: CpuCap) -> list[VcpuError]:
    errors: list[VcpuError] = []

    def attempt(operation: str, path: Path, text: str) -> None:
        if not path.parent.is_dir():
            return
        try:
            path.write_text(text)
        except ProcessLookupError:
            pass  # the task exited: nothing to move back
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                errors.append(VcpuError(operation, f"write {text!r} to {path}: {exc}"))

    controller = cap.controller
    if controller.version is CgroupVersion.V1:
        attempt("lift cpu.cfs_quota_us", cap.group / "cpu.cfs_quota_us", "-1")
        for tid, relative in cap.origins:
            attempt("move vCPU thread back", _origin_path(controller, relative) / "tasks", str(tid))
        _rmdirs(errors, [cap.group, cap.group.parent])
        return errors
    attempt("lift cpu.max", cap.limited / "cpu.max", cpu_max_line(None, cap.period_us))
    for tid in cap.thread_ids:
        attempt("move vCPU thread back", cap.group / "cgroup.threads", str(tid))
    _rmdirs(errors, [cap.limited])
    for pid, relative in cap.origins:
        attempt(
            "move QEMU process back", _origin_path(controller, relative) / "cgroup.procs", str(pid)
        )
    _rmdirs(errors, [cap.group, cap.group.parent])
    return errors


def _rmdirs(errors: list[VcpuError], paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            path.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            # colopp/ is shared by every capped VM: still in use is expected.
            if path.name == GROUP_PARENT and exc.errno in (errno.ENOTEMPTY, errno.EBUSY):
                continue
            errors.append(VcpuError("remove cgroup", f"rmdir {path}: {exc}"))
