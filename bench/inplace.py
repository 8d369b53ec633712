"""Live re-protection under client load: ``python -m bench.inplace --json FILE``.

For each guest size (256 and 1024 MiB by default) a protected pair on the lab (colopp's
comparator) serves a client workload (keep-alive connections doing PUT/GET/POST). The
primary QEMU is SIGKILLed; the supervisor fails over (automatic re-protection off), and
once the clients are served again the pair is re-protected onto the lost host while the
clients go on. ``max_gap_ms`` is the longest time without any successful response during
the re-protection (from its start to the first checkpoint after it). The new pair is then
tested: its primary is SIGKILLed too, so the secondary that re-protection filled (disk
mirror and RAM pre-copy with the guest running) serves; every acknowledged write is read
back over HTTP and, after stopping it, from its disk image (``writes_lost`` counts both).
Needs root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.inplace_disk import keys_missing_on_disk
from bench.inplace_running import protect_running_trial
from bench.inplace_trace import Captures
from colopp.colo.state import PairState
from colopp.demo.harness import ClientWorkload, SupervisedPair
from colopp.lab.plan import Network, Node
from colopp.qemu.argv import ComparatorKind

STATE = Path("/var/lib/colopp/bench-inplace")


async def _kill_primary(sp: SupervisedPair, incident: int) -> None:
    """SIGKILL the primary QEMU and wait until the supervisor failed over."""
    status = await sp.pair.agents[sp.pair.primary.name].call("status")
    os.kill(int(status["pid"]), signal.SIGKILL)
    await sp.wait_for(
        f"failover {incident}",
        lambda: sp.handled(incident) and sp.pair.state is PairState.FAILED_OVER,
        120,
    )
    error = sp.incidents[-1].error
    if error:
        raise RuntimeError(f"failover {incident}: {error}")


def _start_captures(sp: SupervisedPair, captures: Captures) -> None:
    """Capture the client's link, the serving host's guest tap and its replication link
    (the mirror, compare and NBD ports: the migration stream would drown them; NBD shows
    whether the guest's writes wait on the new secondary's disk)."""
    plan = sp.plan
    serving = Node(sp.pair.primary.name)
    ports = sp.local.config.ports
    captures.start(plan.netns(Node.CLIENT), "svc0", "client")
    captures.start(plan.netns(serving), plan.tap(serving).ifname, "tap")
    bpf = f"tcp port {ports.mirror} or tcp port {ports.compare} or tcp port {ports.nbd}"
    captures.start(plan.netns(serving), "repl0", "repl", bpf)
    lost = Node.HOST_A if serving is Node.HOST_B else Node.HOST_B
    captures.start(plan.netns(lost), plan.tap(lost).ifname, "sectap", "")


def _keep_trace(
    sp: SupervisedPair, state: Path, trace: Path, result: dict[str, Any], status: dict[str, Any]
) -> None:
    serving = sp.pair.primary.name
    for log in (state / serving).glob("*/*/compare.log"):
        shutil.copy(log, trace / "compare.log")
    for log in state.glob("agent-*.log"):
        shutil.copy(log, trace / log.name)
    doc = {
        "timeline": result.get("timeline", []),
        "guest": str(sp.plan.guest_address.ip),
        "nbd_port": sp.local.config.ports.nbd,
        "client": str(sp.plan.address(Node.CLIENT, Network.SERVICE)),
        "comparator": status.get("comparator", {}).get("counters", {}),
        "pauses_ms": status.get("checkpoint_pauses_ms", []),
    }
    (trace / "trace.json").write_text(json.dumps(doc, indent=1))


async def reprotect_trial(
    memory_mb: int, prefix: str, console: Console, trace: Path | None = None
) -> dict[str, Any]:
    """One guest size: kill, fail over, live re-protect (measured), kill again, check.

    ``trace``: keep packet captures, per-request times and the re-protection's timeline
    there (bench.inplace_trace)."""
    state = STATE / f"reprotect-{memory_mb}"
    sp = await SupervisedPair.protect(
        state, None, prefix, ComparatorKind.COLOPP, console, memory_mb=memory_mb
    )
    if trace is not None:
        trace.mkdir(parents=True, exist_ok=True)
    captures = Captures(trace) if trace is not None else None
    with tempfile.TemporaryDirectory(prefix="colopp-inplace-") as tmp:
        writes_file = Path(tmp) / "writes.json"
        workload = ClientWorkload(
            sp.plan,
            connections=3,
            writes_out=writes_file,
            trace_out=trace / "requests.json" if trace is not None else None,
        )
        try:
            await sp.next_checkpoint()
            await sp.next_checkpoint()
            sp.supervisor.auto_reprotect = False
            sp.supervise()
            await sp.heartbeats()
            await _kill_primary(sp, 1)
            await asyncio.to_thread(workload.served, 20)
            if captures is not None:
                _start_captures(sp, captures)
            workload.mark()
            result = await sp.pair.reprotect()
            await sp.next_checkpoint()
            workload.mark()
            primary = await sp.pair.agents[sp.pair.primary.name].call("status")
            result["pauses_ms"] = primary["checkpoint_pauses_ms"][-6:]
            if captures is not None and trace is not None:
                await asyncio.to_thread(workload.served, 10)
                captures.stop()
                _keep_trace(sp, state, trace, result, primary)
            console.log(f"{memory_mb} MiB: re-protected {result}")
            # The same measure in steady COLO (two checkpoint periods): what clients see
            # anyway on this machine, without a re-protection.
            workload.mark()
            await sp.next_checkpoint()
            await sp.next_checkpoint()
            workload.mark()
            await asyncio.to_thread(workload.served, 20)
            await _kill_primary(sp, 2)  # the secondary re-protection filled now serves
            await asyncio.to_thread(workload.served, 20)
            await sp.unsupervise()
            summary = await asyncio.to_thread(workload.finish, 300)
            survivor = sp.pair.primary.name
            stopped = await sp.pair.agents[survivor].call("stop_vm", timeout=30)
            writes: dict[str, str] = json.loads(writes_file.read_text())
            disk = state / survivor / "demo" / "secondary" / "disk.qcow2"
            # Only a QEMU that quit cleanly flushed its qcow2 metadata: after a SIGKILL
            # the image is not what the guest saw, and the disk check says nothing.
            on_disk = (
                await asyncio.to_thread(keys_missing_on_disk, sp.local.runtime, disk, writes)
                if stopped.get("returncode") == 0
                else None
            )
        finally:
            if captures is not None:
                captures.stop()
            workload.kill()
            await sp.close()
    gaps = summary["window_gaps_ms"]
    return {
        "max_gap_ms": round(gaps[0], 1) if gaps and gaps[0] is not None else None,
        "steady_max_gap_ms": round(gaps[1], 1) if len(gaps) > 1 and gaps[1] is not None else None,
        "writes_lost": summary["writes_lost"] + len(on_disk or []),
        "writes_lost_http": summary["writes_lost"],
        "writes_lost_disk": len(on_disk) if on_disk is not None else None,
        "survivor_returncode": stopped.get("returncode"),
        "lost_keys": (summary["lost_keys"] + (on_disk or []))[:20],
        "writes_acked": summary["writes_acked"],
        "connections_reset": summary["connections_reset"],
        "requests_ok": summary["requests_ok"],
        "requests_failed": summary["requests_failed"],
        "resync_s": round(result["resync_s"], 2),
        "precopy_s": round(result["precopy_s"], 2),
        "switch_ms": round(result["switch_ms"], 1),
        "downtime_ms": result["downtime_ms"],
        "linked_wait_s": round(result["linked_wait_s"], 2),
        "colo_after_continue_ms": round(result["colo_after_continue_ms"], 1),
        "primary_pauses_ms": result["pauses_ms"],
        "gap_at_ms": summary["window_gap_at_ms"][0] if summary["window_gap_at_ms"] else None,
        "reprotect_s": round(result["reprotect_s"], 2),
        "errors": summary["errors"],
    }


def machine() -> dict[str, Any]:
    """How the CPUs were shared while measuring (the figures depend on it)."""
    return {
        "cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "pinned": False,  # lab hosts, client and other users' work share every CPU
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
    }


async def run(
    sizes: list[int], console: Console, trace: Path | None = None, running: bool = True
) -> dict[str, Any]:
    out: dict[str, Any] = {"machine_before": machine(), "reprotect": {}}
    if running:
        try:
            out["protect_running"] = await protect_running_trial(console)
        except Exception as exc:  # recorded: the reprotect trials still run
            console.print_exception()
            out["protect_running"] = {"error": f"{type(exc).__name__}: {exc}"}
        out["machine_after_protect_running"] = machine()
    for index, memory_mb in enumerate(sizes):
        out["reprotect"][str(memory_mb)] = await reprotect_trial(
            memory_mb, f"clpip{index}", console, trace / str(memory_mb) if trace else None
        )
        out[f"machine_after_{memory_mb}"] = machine()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inplace", description=__doc__)
    parser.add_argument("--memory", type=int, action="append", help="MiB (repeatable)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--trace", type=Path, help="keep captures and timelines here")
    parser.add_argument("--no-running", action="store_true", help="skip protect_running")
    parser.add_argument("--no-reprotect", action="store_true", help="skip the reprotect trials")
    args = parser.parse_args()
    console = Console(stderr=True)
    sizes = [] if args.no_reprotect else (args.memory or [256, 1024])
    result = asyncio.run(run(sizes, console, args.trace, not args.no_running))
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
