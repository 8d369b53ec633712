"""Where a bench's CPU goes: processes sampled from ``/proc`` once a second (Linux).

:class:`CpuSampler` sums user+system time per *category* (``classify(cmdline)`` names it,
``None`` = not ours; those count as ``other``) and, for QEMU processes, the time of their
vCPU threads (named ``CPU n/TCG`` or ``CPU n/KVM``) apart: a vCPU thread near 1.0 core
means the guest itself is saturated. :meth:`CpuSampler.summary` gives cores used on
average (and the busiest second) per category over a window, plus the host's busy share.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(stat: str) -> int:
    fields = stat.rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _host_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole host."""
    line = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in line[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class Sample:
    at: float
    host: tuple[int, int]
    ticks: dict[int, tuple[str, int]] = field(default_factory=dict)  # pid -> (category, jiffies)
    vcpus: dict[int, int] = field(default_factory=dict)  # tid -> jiffies of one vCPU thread
    waits: dict[int, int] = field(default_factory=dict)  # tid -> ns runnable but not running


class CpuSampler:
    """Samples in a thread until :meth:`stop`; see the module doc."""

    def __init__(self, classify: Callable[[str], str | None], interval: float = 1.0) -> None:
        self.classify = classify
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)

    def start(self) -> CpuSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            self.samples.append(self.sample())
            if self._stop.wait(self.interval):
                return

    def sample(self) -> Sample:
        out = Sample(time.monotonic(), _host_ticks())
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            raw = _read(Path(entry.path, "cmdline"))
            stat = _read(Path(entry.path, "stat"))
            if raw is None or stat is None:
                continue
            cmdline = raw.replace("\0", " ")
            category = self.classify(cmdline) or "other"
            out.ticks[int(entry.name)] = (category, _cpu_ticks(stat))
            if category == "qemu":
                self._vcpus(Path(entry.path), out)
        return out

    @staticmethod
    def _vcpus(proc: Path, into: Sample) -> None:
        try:
            tasks = list(os.scandir(proc / "task"))
        except OSError:
            return
        for task in tasks:
            comm = _read(Path(task.path, "comm"))
            stat = _read(Path(task.path, "stat"))
            if comm is not None and stat is not None and comm.startswith("CPU "):
                into.vcpus[int(task.name)] = _cpu_ticks(stat)
                sched = _read(Path(task.path, "schedstat"))  # run ns, wait ns, slices
                if sched is not None:
                    into.waits[int(task.name)] = int(sched.split()[1])

    def summary(self, start: float | None = None, end: float | None = None) -> dict[str, Any]:
        """Cores used per category between ``start`` and ``end`` (monotonic; None = all)."""
        window = [
            s
            for s in self.samples
            if (start is None or s.at >= start) and (end is None or s.at <= end)
        ]
        if len(window) < 2:
            return {}
        first, last = window[0], window[-1]
        wall = last.at - first.at
        per_s: dict[str, list[float]] = {}
        for a, b in itertools.pairwise(window):
            span = b.at - a.at
            used: dict[str, float] = {}
            for pid, (name, ticks) in b.ticks.items():  # processes alive in both samples
                before = a.ticks.get(pid)
                if before is not None and before[0] == name:
                    used[name] = used.get(name, 0.0) + (ticks - before[1]) / TICK / span
            for name, cores in used.items():
                per_s.setdefault(name, []).append(cores)
            vcpu = max(
                ((b.vcpus[t] - a.vcpus[t]) / TICK / span for t in b.vcpus if t in a.vcpus),
                default=0.0,
            )
            per_s.setdefault("busiest_vcpu", []).append(vcpu)
            # Runnable but not scheduled: the host's CPUs were busy with something else.
            wait = max(
                ((b.waits[t] - a.waits[t]) / 1e9 / span for t in b.waits if t in a.waits),
                default=0.0,
            )
            per_s.setdefault("vcpu_runqueue_wait", []).append(wait)
        busy = (last.host[0] - first.host[0]) / max(1, last.host[1] - first.host[1])
        return {
            "seconds": round(wall, 1),
            "host_cpus": os.cpu_count(),
            "host_busy_share": round(busy, 3),
            "cores_mean": {k: round(sum(v) / len(v), 3) for k, v in sorted(per_s.items())},
            "cores_peak": {k: round(max(v), 3) for k, v in sorted(per_s.items())},
        }
