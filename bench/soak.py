"""Failover soak: ``python -m bench.soak --cycles 16 --json FILE`` (needs root).

Runs the failover matrix over and over on one protected pair under client load (reads and
writes on long-lived keep-alive connections), cycling through: primary SIGKILL, secondary
SIGSTOP (hung, fenced), primary SIGKILL right after a checkpoint's STOP event, primary
SIGSTOP. The supervisor detects, fences, fails over and re-protects; each cycle must end
back in COLO. The summary counts failed requests, reset connections and lost writes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console

from colopp.colo.state import PairState
from colopp.demo.harness import ClientWorkload, SupervisedPair
from colopp.qemu.argv import ComparatorKind

FAULTS = [
    ("primary", signal.SIGKILL, None),
    ("secondary", signal.SIGSTOP, None),
    ("primary", signal.SIGKILL, "STOP"),
    ("primary", signal.SIGSTOP, None),
]


async def inject(sp: SupervisedPair, role: str, sig: signal.Signals, after: str | None) -> str:
    slot = sp.pair.primary if role == "primary" else sp.pair.secondary
    assert slot is not None
    agent = sp.pair.agents[slot.name]
    if after is None:
        os.kill(int((await agent.call("status"))["pid"]), sig)
    else:
        await agent.call("kill_vm", signum=int(sig), after_event=after, timeout=40)
    return slot.name


async def soak(cycles: int, console: Console) -> dict[str, Any]:
    sp = await SupervisedPair.protect(
        Path("/var/lib/colopp/bench-soak"), None, "clpsoak", ComparatorKind.COLOPP, console
    )
    workload = ClientWorkload(sp.plan)
    failures: list[str] = []
    try:
        await sp.next_checkpoint()
        await sp.next_checkpoint()
        sp.supervise()
        for cycle in range(1, cycles + 1):
            role, sig, after = FAULTS[(cycle - 1) % len(FAULTS)]
            host = await inject(sp, role, sig, after)
            try:
                await sp.wait_for(
                    f"cycle {cycle}",
                    lambda c=cycle: sp.handled(c) and sp.pair.state is PairState.PROTECTED,
                    120,
                )
            except TimeoutError as exc:
                failures.append(str(exc))
                break
            incident = sp.incidents[-1]
            console.log(
                f"cycle {cycle}: {role} {sig.name}{' after ' + after if after else ''} on {host}: "
                f"{incident.health}, failover {incident.failover_ms or 0:.0f} ms, "
                f"re-protect {incident.reprotect_s or 0:.1f} s"
            )
            await sp.next_checkpoint()
        await sp.unsupervise()
        summary = await asyncio.to_thread(workload.finish, 300)
    finally:
        workload.kill()
        await sp.close()
    incidents = sp.incidents
    return {
        "cycles": cycles,
        "cycles_completed": len([i for i in incidents if i.failover_ms is not None]),
        "failures": failures,
        "incidents": [vars(i) for i in incidents],
        "failover_ms_p50": statistics.median(i.failover_ms for i in incidents if i.failover_ms),
        "reprotect_s_p50": statistics.median(i.reprotect_s for i in incidents if i.reprotect_s),
        "requests_ok": summary["requests_ok"],
        "requests_failed": summary["requests_failed"],
        "connections_reset": summary["connections_reset"],
        "writes_acked": summary["writes_acked"],
        "writes_lost": summary["writes_lost"],
        "counter_regressions": summary["counter_regressions"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--cycles", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(soak(args.cycles, Console(stderr=True)))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    ok = not result["failures"] and result["requests_failed"] == 0 and result["writes_lost"] == 0
    return 0 if ok and result["connections_reset"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
