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
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from colopp.colo.state import PairState
from colopp.controller.agent_client import AgentClient
from colopp.controller.pair import PairController
from colopp.controller.setup import prepare_local_pair
from colopp.controller.supervisor import PairSupervisor
from colopp.lab import Node, netns_argv
from colopp.qemu.argv import ComparatorKind


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def checkpoints(pair: PairController) -> int:
    return int((await pair.agents[pair.primary.name].call("status"))["checkpoints"])


async def next_checkpoint(pair: PairController) -> None:
    first, deadline = await checkpoints(pair), time.monotonic() + 30
    while await checkpoints(pair) <= first:
        if time.monotonic() > deadline:
            raise RuntimeError("no checkpoint in 30 s")
        await asyncio.sleep(0.1)


async def run(trials: int, comparator: ComparatorKind, console: Console) -> dict[str, Any]:
    local = await prepare_local_pair(
        Path("/var/lib/colopp/bench-failover"), None, comparator, console, prefix="clpbench"
    )
    deployment = local.deployment
    await deployment.start()
    pair = PairController(local.config, deployment.agents)
    beat = {
        n: AgentClient(f"{n}-hb", a.host, a.port, deployment.token)
        for n, a in deployment.agents.items()
    }
    supervisor = PairSupervisor(pair, beat)
    workload = None
    reprotect_s: list[float] = []
    try:
        await pair.protect()
        plan = deployment.plan
        workload = subprocess.Popen(
            netns_argv(
                plan.netns(Node.CLIENT),
                [
                    sys.executable,
                    "-m",
                    "colopp.demo.workload",
                    "--target",
                    f"{plan.guest_address.ip}:80",
                    "--connections",
                    "4",
                ],
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        await next_checkpoint(pair)
        await next_checkpoint(pair)
        task = asyncio.create_task(supervisor.run())
        for trial in range(1, trials + 1):
            status = await pair.agents[pair.primary.name].call("status")
            os.kill(int(status["pid"]), signal.SIGKILL)
            assert workload.stdin is not None
            workload.stdin.write("mark\n")
            workload.stdin.flush()
            deadline = time.monotonic() + 120
            while not (len(supervisor.incidents) >= trial and pair.state is PairState.PROTECTED):
                if pair.state is PairState.ERROR or time.monotonic() > deadline:
                    raise RuntimeError(f"trial {trial}: {pair.state} {supervisor.incidents[-1:]}")
                await asyncio.sleep(0.05)
            incident = supervisor.incidents[-1]
            reprotect_s.append(incident.reprotect_s or 0.0)
            console.log(
                f"trial {trial}: failover {incident.failover_ms:.0f} ms, "
                f"re-protect {incident.reprotect_s:.1f} s"
            )
            await next_checkpoint(pair)
        supervisor.stop()
        await task
        assert workload.stdin is not None
        workload.stdin.write("stop\n")
        workload.stdin.flush()
        out, _ = await asyncio.to_thread(workload.communicate, None, 300)
        summary = json.loads(out.strip().splitlines()[-1])
    finally:
        supervisor.stop()
        await supervisor.close()
        if workload is not None and workload.poll() is None:
            workload.kill()
        await pair.stop()
        await deployment.stop()
    outages = [o for o in summary["outages_ms"] if o is not None]
    return {
        "trials": trials,
        "comparator": comparator.value,
        "accel": local.config.vm.accel,
        "outage_ms": outages,
        "outage_ms_p50": statistics.median(outages) if outages else None,
        "outage_ms_p99": percentile(outages, 0.99) if outages else None,
        "outage_ms_max": max(outages) if outages else None,
        "failover_ms": [i.failover_ms for i in supervisor.incidents],
        "reprotect_s_p50": statistics.median(reprotect_s) if reprotect_s else None,
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
    args = parser.parse_args()
    console = Console(stderr=True)
    result = asyncio.run(run(args.trials, ComparatorKind(args.comparator), console))
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
