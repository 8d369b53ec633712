"""What the backup host's CPU is made of, thread by thread, while a bench runs.

``python -m bench.semiactive_cpu --netns clpbnch-hostb --json OUT --seconds N`` reads
``/proc`` only (it starts nothing and takes no lab lock), so it can watch a lab that
``python -m bench.pair`` built: every ``--interval`` seconds it samples each thread of every
process in the namespace (utime + stime) and writes, per interval, the CPU seconds of each
(process kind, thread name): the secondary QEMU's vCPU thread (``CPU 0/TCG``), its main loop,
its COLO incoming thread (checkpoint loads), the agent and the ingress relay. The same
counters ``bench.pair``'s ``secondary_host_cpu_ms_per_req`` sums (per process), split finer.
It also notes, per interval, which comparator options are in force on the lab (read from the
comparator's command line), so a long bench run's intervals can be told apart.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.pair_stats import proc_cpu_seconds
from colopp.controller.local import processes_in_netns


def _argv(pid: int) -> list[str]:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    return []


def kind_of(argv: list[str]) -> str:
    """A short name for a lab process from its command line (pure)."""
    text = " ".join(argv)
    if "qemu-system" in text:
        return "qemu"
    for module in ("colopp.ingress", "colopp.compare", "colopp.agent"):
        if module in text:
            return module.split(".")[1]
    return os.path.basename(argv[0]) if argv and argv[0] else "?"


def threads(netns: str) -> dict[tuple[int, int], tuple[str, str, float]]:
    """(pid, tid) -> (process kind, thread name, CPU seconds so far) in ``netns``."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[tuple[int, int], tuple[str, str, float]] = {}
    for pid in processes_in_netns(netns):
        kind = kind_of(_argv(pid))
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    stat = (task / "stat").read_text()
                    name = (task / "comm").read_text().strip()
                    out[(pid, int(task.name))] = (kind, name, proc_cpu_seconds(stat, ticks))
    return out


def lab_options(netns_a: str) -> str:
    """The comparator's options in force (its argv past the sockets), or '' without one."""
    for pid in processes_in_netns(netns_a):
        argv = _argv(pid)
        if "colopp.compare" in argv:
            keep = [a for a in argv if a.startswith("--prerelease=") or a == "--max-lag-ms"]
            return " ".join(keep) or "colopp"
        if any("qemu-system" in a for a in argv) and any("colo-compare" in a for a in argv):
            return "builtin"
    return ""


def interval(
    before: dict[tuple[int, int], tuple[str, str, float]],
    after: dict[tuple[int, int], tuple[str, str, float]],
) -> dict[str, float]:
    """CPU seconds per 'kind/thread' between two samples (threads seen at both ends)."""
    sums: dict[str, float] = defaultdict(float)
    for key, (kind, name, used) in after.items():
        if key in before:
            sums[f"{kind}/{name}"] += used - before[key][2]
    return {k: round(v, 4) for k, v in sorted(sums.items()) if v > 0}


def summarize(
    rows: list[dict[str, Any]], start: float, end: float, requests: int
) -> dict[str, float]:
    """CPU ms per request of each kind/thread over the samples taken in ``[start, end]``
    (wall-clock seconds; pure). Processes other than QEMU are summed per kind."""
    sums: dict[str, float] = defaultdict(float)
    for row in rows:
        if start <= row["t"] <= end:
            for key, used in row["cpu_s"].items():
                kind = key.split("/", 1)[0]
                sums[key if kind == "qemu" else kind] += used
    if requests <= 0:
        return {}
    out = {k: round(v * 1000.0 / requests, 3) for k, v in sorted(sums.items(), key=lambda x: -x[1])}
    out["total"] = round(sum(sums.values()) * 1000.0 / requests, 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.semiactive_cpu", description=__doc__)
    parser.add_argument(
        "--summarize",
        nargs=3,
        metavar=("START", "END", "REQUESTS"),
        help="print ms/request per thread of --json's samples between two UTC times "
        "(HH:MM:SS, today) for REQUESTS requests, instead of sampling",
    )
    parser.add_argument("--netns", default="clpbnch-hostb")
    parser.add_argument("--primary-netns", default="clpbnch-hosta")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    if args.summarize:
        start, end, requests = args.summarize
        day = time.strftime("%Y-%m-%d", time.gmtime())
        bounds = [
            calendar.timegm(time.strptime(f"{day} {t}", "%Y-%m-%d %H:%M:%S")) for t in (start, end)
        ]
        rows = json.loads(args.json.read_text())
        print(json.dumps(summarize(rows, bounds[0], bounds[1], int(requests)), indent=1))
        return 0
    rows: list[dict[str, Any]] = []
    end = time.monotonic() + args.seconds
    before = threads(args.netns)
    while time.monotonic() < end:
        time.sleep(args.interval)
        after = threads(args.netns)
        rows.append(
            {
                "t": round(time.time(), 1),
                "options": lab_options(args.primary_netns),
                "cpu_s": interval(before, after),
                "loadavg": os.getloadavg()[0],
            }
        )
        before = after
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
