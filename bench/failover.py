"""Failover outage over repeated trials: ``python -m bench.failover --trials N --json FILE``.

A protected pair on the lab (colopp's comparator, the supervisor watching it) serves a
client workload (long-lived keep-alive connections doing PUT/GET/POST). Each trial
SIGKILLs the current primary QEMU; the supervisor detects it, fails over and re-protects.
The outage of a trial is what the client sees: the gap between the last successful
response before the kill and the first one after it. Needs root.
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
from colopp.controller.setup import GUESTS
from colopp.demo.harness import ClientWorkload, SupervisedPair
from colopp.qemu.argv import ComparatorKind


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def run(
    trials: int, comparator: ComparatorKind, console: Console, guest: str = "kvd"
) -> dict[str, Any]:
    sp = await SupervisedPair.protect(
        Path("/var/lib/colopp/bench-failover"), None, "clpbench", comparator, console, guest=guest
    )
    workload = ClientWorkload(sp.plan, connections=4)
    try:
        await sp.next_checkpoint()
        await sp.next_checkpoint()
        sp.supervise()
        for trial in range(1, trials + 1):
            status = await sp.pair.agents[sp.pair.primary.name].call("status")
            os.kill(int(status["pid"]), signal.SIGKILL)
            workload.mark()
            await sp.wait_for(
                f"trial {trial}",
                lambda t=trial: sp.handled(t) and sp.pair.state is PairState.PROTECTED,
                120,
            )
            incident = sp.incidents[-1]
            if incident.error:
                raise RuntimeError(f"trial {trial}: {incident.error}")
            console.log(
                f"trial {trial}: failover {incident.failover_ms:.0f} ms, "
                f"re-protect {incident.reprotect_s or 0:.1f} s"
            )
            await sp.next_checkpoint()
        await sp.unsupervise()
        summary = await asyncio.to_thread(workload.finish, 300)
    finally:
        workload.kill()
        await sp.close()
    outages = [o for o in summary["outages_ms"] if o is not None]
    reprotect = [i.reprotect_s for i in sp.incidents if i.reprotect_s]
    return {
        "trials": trials,
        "guest": guest,
        "comparator": comparator.value,
        "accel": sp.local.config.vm.accel,
        "outage_ms": outages,
        "outage_ms_p50": statistics.median(outages) if outages else None,
        "outage_ms_p99": percentile(outages, 0.99) if outages else None,
        "outage_ms_max": max(outages) if outages else None,
        "failover_ms": [i.failover_ms for i in sp.incidents],
        "reprotect_s_p50": statistics.median(reprotect) if reprotect else None,
        "requests_ok": summary["requests_ok"],
        "requests_failed": summary["requests_failed"],
        "connections_reset": summary["connections_reset"],
        "writes_acked": summary["writes_acked"],
        "writes_lost": summary["writes_lost"],
        "lost_keys": summary["lost_keys"],
        "errors": summary["errors"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--comparator", choices=["builtin", "colopp"], default="colopp")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--guest", choices=GUESTS, default="kvd", help="the protected guest")
    args = parser.parse_args()
    console = Console(stderr=True)
    result = asyncio.run(run(args.trials, ComparatorKind(args.comparator), console, args.guest))
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
