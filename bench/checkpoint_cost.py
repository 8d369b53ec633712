"""Checkpoint cost per guest: ``python -m bench.checkpoint_cost --json FILE``.

For each guest (today's kvd guest, 256 MiB / 1 vCPU, and the Debian 12 server, 1 GiB /
2 vCPUs) a protected pair (colopp's comparator) runs two windows of periodic checkpoints:
idle, then under the kvd client workload (keep-alive PUT/GET/POST from the client
namespace). Per window it reports the primary's pause per checkpoint (QMP STOP -> RESUME,
as the agent records them) p50/p99/mean, and what each checkpoint sends. QEMU's
query-migrate reports no RAM counters once in COLO state, so the bytes are read off the
migration socket itself: ``ss``'s ``bytes_acked`` of the primary's connection to the
secondary's migration port, its delta divided by the checkpoints in the window. Dirty
pages per checkpoint are estimated from it (bytes / 4 KiB page: an upper bound, the device
state rides along). Needs root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.pair import machine
from colopp.controller.pair import PairController
from colopp.controller.setup import GUESTS, prepare_local_pair
from colopp.demo.harness import ClientWorkload
from colopp.lab import Node, netns_argv
from colopp.qemu.argv import ComparatorKind

STATE_DIR = Path("/var/lib/colopp/bench-checkpoint")
PREFIX = "clpckpt"
#: The anchor the README compares with (QEMU COLO under load, 10 GbE, KVM).
ANCHOR = {"mean_ms": 24, "p99_ms": 78, "interval_ms": 600}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


PAGE = 4096
_ACKED = re.compile(r"\bbytes_acked:(\d+)")


def parse_bytes_acked(ss_output: str) -> int:
    """Sum of ``bytes_acked`` over the sockets ``ss -tin`` printed (0 if none)."""
    return sum(int(m) for m in _ACKED.findall(ss_output))


def window_figures(
    before: dict[str, Any],
    after: dict[str, Any],
    pauses_ms: list[float],
    stream_bytes: int | None,
) -> dict[str, Any]:
    """One window's figures from the primary's status before and after it, and the
    migration stream's bytes during it."""
    n = int(after["checkpoints"]) - int(before["checkpoints"])
    per = max(n, 1)
    sent = None if stream_bytes is None else stream_bytes / per
    return {
        "checkpoints": n,
        "pause_ms_p50": statistics.median(pauses_ms) if pauses_ms else None,
        "pause_ms_p99": percentile(pauses_ms, 0.99) if pauses_ms else None,
        "pause_ms_mean": statistics.fmean(pauses_ms) if pauses_ms else None,
        "pause_ms_max": max(pauses_ms) if pauses_ms else None,
        "stream_bytes_per_checkpoint": sent,
        "dirty_pages_per_checkpoint": None if sent is None else sent / PAGE,
    }


def stream_bytes(netns: str, port: int) -> int:
    """Bytes the primary's migration connection(s) in ``netns`` had acknowledged."""
    argv = netns_argv(netns, ["ss", "-tinH", "state", "established", f"dport = :{port}"])
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return parse_bytes_acked(done.stdout)


async def _window(
    pair: PairController, netns: str, checkpoints: int, timeout: float
) -> dict[str, Any]:
    agent = pair.agents[pair.primary.name]
    port = pair.config.ports.migration
    sent_before = await asyncio.to_thread(stream_bytes, netns, port)
    before = await agent.call("status")
    deadline = time.monotonic() + timeout
    while True:
        after = await agent.call("status")
        done = int(after["checkpoints"]) - int(before["checkpoints"])
        if done >= checkpoints:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done} of {checkpoints} checkpoints in {timeout:.0f}s")
        await asyncio.sleep(0.5)  # checkpoints happen in QEMU: poll the agent
    sent = await asyncio.to_thread(stream_bytes, netns, port) - sent_before
    pauses = [float(p) for p in after["checkpoint_pauses_ms"]][-done:] if done else []
    return window_figures(before, after, pauses, sent if sent_before else None)


async def measure(
    guest: str, checkpoints: int, interval_ms: int, console: Console
) -> dict[str, Any]:
    local = await prepare_local_pair(
        STATE_DIR / guest,
        None,
        ComparatorKind.COLOPP,
        console,
        checkpoint_delay_ms=interval_ms,
        prefix=PREFIX,
        guest=guest,
    )
    await local.deployment.start()
    pair = PairController(local.config, local.deployment.agents, progress=console.log)
    vm = local.config.vm
    out: dict[str, Any] = {"memory_mb": vm.memory_mb, "vcpus": vm.vcpus, "accel": vm.accel}
    try:
        await pair.protect()
        timeout = checkpoints * interval_ms / 1000 * 4 + 120
        console.log(f"{guest}: idle window ({checkpoints} checkpoints)")
        netns = local.deployment.plan.netns(Node(pair.primary.name))
        out["idle"] = await _window(pair, netns, checkpoints, timeout)
        workload = ClientWorkload(local.deployment.plan, connections=4)
        try:
            await asyncio.to_thread(workload.served, 20)
            console.log(f"{guest}: loaded window ({checkpoints} checkpoints)")
            out["load"] = await _window(pair, netns, checkpoints, timeout)
            summary = await asyncio.to_thread(workload.finish, 300)
            out["load"]["requests_ok"] = summary["requests_ok"]
            out["load"]["requests_failed"] = summary["requests_failed"]
        finally:
            workload.kill()
    finally:
        await pair.stop()
        await local.deployment.stop()
    return out


async def run(
    guests: list[str], checkpoints: int, interval_ms: int, console: Console
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "meta": {
            "command": shlex.join(["python", "-m", "bench.checkpoint_cost", *sys.argv[1:]]),
            "machine": machine(),
            "checkpoint_interval_ms": interval_ms,
            "checkpoints_per_window": checkpoints,
            "load": "kvd client workload, 4 keep-alive connections (PUT/GET/POST)",
            "anchor": ANCHOR,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "errors": {},
        }
    }
    for guest in guests:
        try:
            result[guest] = await measure(guest, checkpoints, interval_ms, console)
        except Exception as exc:  # one guest failing must not lose the other's figures
            console.log(f"[red]{guest} failed: {type(exc).__name__}: {exc}")
            result["meta"]["errors"][guest] = f"{type(exc).__name__}: {exc}"
    result["meta"]["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return result


def format_table(result: dict[str, Any]) -> str:
    """One line per guest and window."""
    lines = [
        f"{'guest':8} {'window':6} {'ckpts':>5} {'p50 ms':>8} {'p99 ms':>8} {'dirty pages':>12}"
    ]
    for guest in GUESTS:
        for window in ("idle", "load"):
            f = result.get(guest, {}).get(window)
            if not f:
                continue
            p50, p99 = f["pause_ms_p50"] or 0.0, f["pause_ms_p99"] or 0.0
            lines.append(
                f"{guest:8} {window:6} {f['checkpoints']:>5} {p50:>8.1f} {p99:>8.1f}"
                f" {f['dirty_pages_per_checkpoint'] or 0:>12.0f}"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.checkpoint_cost", description=__doc__)
    parser.add_argument("--json", type=Path, required=True, help="write the result here")
    parser.add_argument("--guests", default=",".join(GUESTS), help="comma-separated subset")
    parser.add_argument("--checkpoints", type=int, default=10, help="per window")
    parser.add_argument("--checkpoint-delay-ms", type=int, default=2000, help="COLO interval")
    args = parser.parse_args()
    guests = [g for g in args.guests.split(",") if g]
    if unknown := [g for g in guests if g not in GUESTS]:
        parser.error(f"unknown guest: {', '.join(unknown)}")
    console = Console(stderr=True)
    result = asyncio.run(run(guests, args.checkpoints, args.checkpoint_delay_ms, console))
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    return 1 if result["meta"]["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
