"""Two hosts on one machine: confine each lab host's processes to its own CPUs (cgroup cpuset).

The lab's namespaces separate networks, not CPUs: without this, host A's QEMU, host B's QEMU,
the comparator and the client all share every core, and the secondary's CPU is taken from
the primary. With a :class:`CpuPlan`, every process started through :meth:`CpuPlan.wrap`
runs in a cpuset cgroup of its host (``colopp-lab/PREFIX-NODE``) and so do its children (the
agent's QEMU and comparator). Default on a machine with two CPUs or more: host A on CPU 0,
host B on CPU 1, the client on host B's CPU (it must not steal the primary's CPU; it models
a client machine that costs the backup host, the lesser evil here), the unreplicated guest on
host A's CPU (it is the primary agent's VM).

:func:`plan_cpus` is pure; :func:`create_groups` / :func:`remove_groups` do the cgroup I/O;
``python -m colopp.lab.cpuset GROUP -- ARGV`` enters GROUP and executes ARGV (the wrapper
:meth:`CpuPlan.wrap` builds), so nothing runs outside its host's CPUs, not even briefly.
:func:`cpu_busy` reads each host's CPU time from ``/proc/stat``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from colopp.errors import LabError
from colopp.lab.plan import Node

#: Where the cgroup v1 cpuset hierarchy is usually mounted.
V1_CPUSET = Path("/sys/fs/cgroup/cpuset")
#: The cgroup v2 unified hierarchy.
V2_ROOT = Path("/sys/fs/cgroup")
PARENT = "colopp-lab"


@dataclass(frozen=True)
class CpuPlan:
    """Which CPUs each lab node may use, and where its cgroup lives."""

    prefix: str
    cpus: dict[Node, tuple[int, ...]]
    root: Path  # the cpuset hierarchy's mount point
    v2: bool = False

    def group(self, node: Node) -> Path:
        """The cgroup directory of ``node``."""
        return self.root / PARENT / f"{self.prefix}-{node.value}"

    def wrap(self, node: Node, argv: list[str]) -> list[str]:
        """``argv`` started inside ``node``'s cpuset (unchanged for an unconfined node).

        Wrap ``ip netns exec ...`` from the outside: it remounts ``/sys`` in its own mount
        namespace, where the cgroup hierarchy is not mounted."""
        if node not in self.cpus:
            return argv
        return [sys.executable, "-m", "colopp.lab.cpuset", str(self.group(node)), "--", *argv]

    def describe(self) -> dict[str, list[int]]:
        """Node name -> its CPUs, for the record."""
        return {node.value: list(cpus) for node, cpus in self.cpus.items()}


def cpu_list(cpus: tuple[int, ...]) -> str:
    """The kernel's list syntax: ``0,2,3``."""
    return ",".join(str(c) for c in cpus)


def plan_cpus(
    prefix: str, available: list[int], root: Path | None = None, v2: bool | None = None
) -> CpuPlan | None:
    """Host A on the first CPU, host B and the client on the second (None: fewer than two).

    With more CPUs, the first half goes to host A and the second half to host B and the
    client.
    """
    cpus = sorted(available)
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    host_a, host_b = tuple(cpus[:half]), tuple(cpus[half:])
    if root is None:
        root, found_v2 = _find_hierarchy()
        v2 = found_v2 if v2 is None else v2
    mapping = {Node.HOST_A: host_a, Node.HOST_B: host_b, Node.CLIENT: host_b}
    return CpuPlan(prefix, mapping, root, bool(v2))


def _find_hierarchy() -> tuple[Path, bool]:
    if (V1_CPUSET / "cpuset.cpus").exists():
        return V1_CPUSET, False
    controllers = V2_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpuset" in controllers.read_text().split():
        return V2_ROOT, True
    raise LabError("no cpuset cgroup controller: cannot model two hosts on one machine")


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise LabError(f"cpuset: cannot write {text!r} to {path}: {exc}") from exc


def create_groups(plan: CpuPlan) -> None:
    """Create one cpuset cgroup per confined node (replacing leftovers of a crashed run).

    Raises:
        LabError: no permission, no such CPU, or the hierarchy is not usable.
    """
    parent = plan.root / PARENT
    try:
        parent.mkdir(exist_ok=True)
    except OSError as exc:
        raise LabError(f"cpuset: cannot create {parent}: {exc}") from exc
    if plan.v2:
        _write(plan.root / "cgroup.subtree_control", "+cpuset")
        _write(parent / "cgroup.subtree_control", "+cpuset")
    else:
        # cgroup v1: a child needs cpus and mems set before any task may join it.
        _inherit(parent, plan.root)
    for node, cpus in plan.cpus.items():
        group = plan.group(node)
        with contextlib.suppress(OSError):
            group.rmdir()
        try:
            group.mkdir(exist_ok=True)
        except OSError as exc:
            raise LabError(f"cpuset: cannot create {group}: {exc}") from exc
        prefix = "" if plan.v2 else "cpuset."
        if not plan.v2:
            _inherit(group, parent)
        _write(group / f"{prefix}cpus", cpu_list(cpus))


def _inherit(group: Path, parent: Path) -> None:
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not (group / name).read_text().strip():
            _write(group / name, (parent / name).read_text().strip())


def remove_groups(plan: CpuPlan) -> list[str]:
    """Remove the node cgroups (their processes are gone by now); never raises. Returns
    what could not be removed."""
    left = []
    for node in plan.cpus:
        group = plan.group(node)
        try:
            group.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            left.append(f"{group}: {exc}")
    return left


def enter(group: Path) -> None:
    """Move this process into ``group`` (its future children follow).

    Raises:
        LabError: the cgroup refused it.
    """
    _write(group / "cgroup.procs", str(os.getpid()))


def group_pids(group: Path) -> list[int]:
    """The processes in ``group`` now."""
    try:
        text = (group / "cgroup.procs").read_text()
    except OSError:
        return []
    return [int(line) for line in text.split()]


def cpu_busy(stat: str, cpus: tuple[int, ...], clock_ticks: int) -> float:
    """Busy seconds (all but idle and iowait) of ``cpus``, from ``/proc/stat`` text."""
    wanted = {f"cpu{c}" for c in cpus}
    busy = 0
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] in wanted:
            ticks = [int(x) for x in fields[1:]]
            busy += sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
    return busy / clock_ticks


def main(argv: list[str]) -> int:
    """``python -m colopp.lab.cpuset GROUP -- PROGRAM ARGS...``: enter GROUP, exec PROGRAM."""
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m colopp.lab.cpuset GROUP -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    try:
        enter(Path(argv[0]))
    except LabError as exc:
        print(f"colopp.lab.cpuset: {exc}", file=sys.stderr)
        return 2
    os.execvp(argv[2], argv[2:])  # noqa: S606 (argv is ours, not a shell string)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
