"""``colopp demo``: a protected pair on the lab, a client workload, a primary SIGKILL.

Everything it does is shown as it happens (rich); the summary is printed and optionally
written as JSON. Teardown (QEMU, agents, namespaces) always runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from colopp.colo.state import Transition
from colopp.controller.pair import PairController
from colopp.controller.setup import prepare_local_pair
from colopp.errors import ColoppError, ConfigError
from colopp.lab import Node, netns_argv
from colopp.qemu.argv import ComparatorKind, Role

DEFAULT_STATE_DIR = Path("/var/lib/colopp/demo")


@dataclass
class DemoOptions:
    """Knobs of the demo (CLI flags)."""

    state_dir: Path = DEFAULT_STATE_DIR
    qemu_root: Path | None = None
    comparator: ComparatorKind = ComparatorKind.BUILTIN
    before_kill_s: float = 8.0
    after_failover_s: float = 8.0
    connections: int = 4
    checkpoint_delay_ms: int = 2000
    json_path: Path | None = None
    guest: str = "kvd"  # or "debian" (colopp.controller.setup.GUESTS)


@dataclass
class DemoLive:
    """What the live panel shows."""

    state: str = "starting"
    primary: str = "-"
    secondary: str = "-"
    checkpoints: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    def table(self) -> Table:
        table = Table(title="colopp demo", show_header=False, min_width=50)
        table.add_row("pair state", self.state)
        table.add_row("primary / secondary", f"{self.primary} / {self.secondary}")
        table.add_row("checkpoints", str(self.checkpoints))
        table.add_row(
            "requests ok / failed", f"{self.stats.get('ok', 0)} / {self.stats.get('failed', 0)}"
        )
        table.add_row("connections reset", str(self.stats.get("resets", 0)))
        table.add_row("writes acknowledged", str(self.stats.get("writes_acked", 0)))
        return table


class Workload:
    """The client workload process in the client namespace."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.latest: dict[str, Any] = {}
        self.summary: dict[str, Any] | None = None
        self._reader: asyncio.Task[None] | None = None

    def start_reading(self) -> None:
        self._reader = asyncio.create_task(asyncio.to_thread(self._read))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if message.get("type") == "summary":
                    self.summary = message
                else:
                    self.latest = message

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()

    async def finish(self, timeout: float = 120.0) -> dict[str, Any]:
        self.send("stop")
        await asyncio.to_thread(self.proc.wait, timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 10)
        if self.summary is None:
            raise ColoppError("the client workload ended without a summary")
        return self.summary

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


async def wait_primary_gone(pair: PairController, timeout: float) -> float:
    """Heartbeat the primary's agent until its QEMU is gone; returns detection seconds."""
    agent = pair.agents[pair.primary.name]
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        beat = await agent.call("ping", timeout=2)
        if not beat["vm_alive"]:
            return time.monotonic() - start
        await asyncio.sleep(0.02)  # heartbeat period
    raise ColoppError(f"the primary still runs {timeout:.0f}s after SIGKILL")


async def run_demo(options: DemoOptions, console: Console) -> dict[str, Any]:
    """Run the whole demo; returns the summary."""
    if os.geteuid() != 0:
        raise ConfigError("the demo needs root (network namespaces, taps, QEMU)")
    console.rule("[bold]1. QEMU runtime, guest image, accelerator")
    local = await prepare_local_pair(
        options.state_dir,
        options.qemu_root,
        options.comparator,
        console,
        options.checkpoint_delay_ms,
        guest=options.guest,
    )
    deployment, config = local.deployment, local.config
    accel = config.vm.accel
    guest_ip = deployment.plan.guest_address.ip
    summary: dict[str, Any] = {
        "accel": accel,
        "colo_reached": False,
        "comparator": options.comparator.value,
        "guest": options.guest,
        "vcpus": config.vm.vcpus,
        "memory_mb": config.vm.memory_mb,
    }
    live = DemoLive()
    workload: Workload | None = None
    pair: PairController | None = None
    try:
        console.rule("[bold]2. lab network and host agents")
        await deployment.start()
        console.log(f"lab up: client, hosta, hostb; agents on {', '.join(deployment.agents)}")

        def changed(step: Transition) -> None:
            live.state = step.target.value
            console.log(f"pair: {step.source.value} → {step.target.value} {step.reason}")

        pair = PairController(config, deployment.agents, progress=console.log, on_change=changed)
        console.rule("[bold]3. protect: COLO with disk replication")
        await pair.protect()
        summary["colo_reached"] = True
        summary["boot_s"] = pair.boot_s
        live.primary, live.secondary = "hosta", "hostb"
        console.rule("[bold]4. client workload, then SIGKILL of the primary QEMU")
        workload = Workload(
            netns_argv(
                deployment.plan.netns(Node.CLIENT),
                [
                    sys.executable,
                    "-m",
                    "colopp.demo.workload",
                    "--target",
                    f"{guest_ip}:80",
                    "--connections",
                    str(options.connections),
                ],
            )
        )
        workload.start_reading()
        summary.update(await _drive(pair, workload, live, options, console))
        summary.update(await workload.finish())
        workload = None
    finally:
        if workload is not None:
            workload.kill()
        console.rule("[bold]teardown")
        if pair is not None:
            await pair.stop()
        await deployment.stop()
        console.log("QEMU processes, agents and namespaces removed")
    return summary


async def _drive(
    pair: PairController, workload: Workload, live: DemoLive, options: DemoOptions, console: Console
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with Live(live.table(), console=console, refresh_per_second=4) as panel:

        async def watch(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                status = await pair.status()
                live.checkpoints = max(
                    (
                        s.get("checkpoints", 0)
                        for s in status["sides"].values()
                        if isinstance(s, dict)
                    ),
                    default=0,
                )
                live.stats = workload.latest
                panel.update(live.table())
                await asyncio.sleep(0.5)  # display refresh

        await watch(options.before_kill_s)
        status = await pair.status()
        primary = status["sides"][pair.primary.name]
        out["checkpoints"] = primary.get("checkpoints", 0)
        out["checkpoint_pause_ms"] = primary.get("checkpoint_pauses_ms", [])[-10:]
        pauses = list(primary.get("checkpoint_pauses_ms", []))
        if pauses and primary.get("checkpoints", 0) <= len(pauses):
            pauses = pauses[1:]  # the first STOP -> RESUME ends the migration into COLO
        pauses.sort()
        out["checkpoint_pause_ms_p50"] = pauses[len(pauses) // 2] if pauses else None
        out["checkpoint_pause_ms_p99"] = pauses[round(0.99 * (len(pauses) - 1))] if pauses else None
        if "comparator" in primary:
            counters = primary["comparator"].get("counters", {})
            out["comparator_counters"] = {
                key: counters.get(key)
                for key in (
                    "primary_frames_in",
                    "secondary_frames_in",
                    "matched_frames",
                    "released_frames",
                    "divergences",
                    "checkpoints_requested",
                    "malformed_total",
                )
            }
        pid = int(primary["pid"])
        console.log(f"[bold red]SIGKILL[/] primary QEMU pid {pid} on {pair.primary.name}")
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        workload.send("mark")
        detect_s = await wait_primary_gone(pair, timeout=10)
        result = await pair.failover(Role.PRIMARY)
        out["failover_detect_ms"] = detect_s * 1000
        out["failover_sequence_ms"] = result["took_ms"]
        out["failover_total_ms"] = (time.monotonic() - killed_at) * 1000
        took = result["took_ms"]
        console.log(f"failover done: detect {detect_s * 1000:.0f} ms, QMP sequence {took:.0f} ms")
        live.primary, live.secondary = pair.primary.name, "-"
        await watch(options.after_failover_s)
    return out


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """The final table."""
    table = Table(title="demo summary", show_header=False)
    for key in (
        "accel",
        "comparator",
        "colo_reached",
        "checkpoints",
        "requests_ok",
        "requests_failed",
        "connections_reset",
        "writes_acked",
        "writes_lost",
        "counter_regressions",
        "failover_outage_ms",
        "failover_detect_ms",
        "failover_sequence_ms",
    ):
        value = summary.get(key)
        table.add_row(key, f"{value:.0f}" if isinstance(value, float) else str(value))
    console.print(table)
