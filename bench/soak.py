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

FAULTS = [
    ("primary", signal.SIGKILL, None),
    ("secondary", signal.SIGSTOP, None),
    ("primary", signal.SIGKILL, "STOP"),
    ("primary", signal.SIGSTOP, None),
]


async def _checkpoint_after(pair: PairController, first: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        status = await pair.agents[pair.primary.name].call("status")
        if int(status["checkpoints"]) > first:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("no checkpoint in 30 s")
        await asyncio.sleep(0.1)


async def next_checkpoint(pair: PairController) -> None:
    status = await pair.agents[pair.primary.name].call("status")
    await _checkpoint_after(pair, int(status["checkpoints"]))


async def inject(pair: PairController, role: str, sig: signal.Signals, after: str | None) -> str:
    slot = pair.primary if role == "primary" else pair.secondary
    assert slot is not None
    agent = pair.agents[slot.name]
    if after is None:
        os.kill(int((await agent.call("status"))["pid"]), sig)
    else:
        await agent.call("kill_vm", signum=int(sig), after_event=after, timeout=40)
    return slot.name


async def soak(cycles: int, console: Console) -> dict[str, Any]:
    local = await prepare_local_pair(
        Path("/var/lib/colopp/bench-soak"), None, ComparatorKind.COLOPP, console, prefix="clpsoak"
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
    failures: list[str] = []
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
                    "3",
                ],
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        await next_checkpoint(pair)
        await next_checkpoint(pair)
        task = asyncio.create_task(supervisor.run())
        for cycle in range(1, cycles + 1):
            role, sig, after = FAULTS[(cycle - 1) % len(FAULTS)]
            host = await inject(pair, role, sig, after)
            deadline = time.monotonic() + 120
            while not (
                len(supervisor.incidents) >= cycle
                and supervisor.incidents[-1].failover_ms is not None
                and pair.state is PairState.PROTECTED
            ):
                if pair.state is PairState.ERROR or time.monotonic() > deadline:
                    failures.append(f"cycle {cycle}: {pair.state} {supervisor.incidents[-1:]}")
                    break
                await asyncio.sleep(0.05)
            if failures:
                break
            incident = supervisor.incidents[-1]
            console.log(
                f"cycle {cycle}: {role} {sig.name}{' after ' + after if after else ''} on {host}: "
                f"{incident.health}, failover {incident.failover_ms:.0f} ms, "
                f"re-protect {incident.reprotect_s or 0:.1f} s"
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
    incidents = supervisor.incidents
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
