"""``colopp demo``: protect → client load → SIGKILL the primary → automatic failover →
automatic re-protection → protected again → summary.

The pair is watched by :class:`~colopp.controller.supervisor.PairSupervisor`, the same
supervisor ``colopp controller`` and the API run: the demo only kills the primary QEMU and
watches. The kill is detected by the supervisor's health verdicts, the failover and the
re-protection are the supervisor's own. By default the pair runs colopp's comparator with
pre-release on the guest's read path (``GET /kv/``) and a semi-active secondary;
``--comparator builtin`` runs QEMU's colo-compare as the baseline.

Everything is shown as it happens (rich); the summary is printed and optionally written as
JSON. Teardown (QEMU, agents, namespaces) always runs, also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from colopp.colo.state import PairState, Transition
from colopp.controller.setup import prepare_local_pair
from colopp.controller.supervisor import Incident
from colopp.demo.display import live_panel
from colopp.demo.harness import ClientWorkload, SupervisedPair, Watched
from colopp.demo.options import READ_PREFIXES, DemoOptions
from colopp.demo.services import ServiceLoad
from colopp.errors import ColoppError, ConfigError
from colopp.lab import Node

COUNTER_KEYS = (
    "primary_frames_in",
    "secondary_frames_in",
    "matched_frames",
    "released_frames",
    "pre_released_frames",
    "prerelease_mismatches",
    "divergences",
    "checkpoints_requested",
    "malformed_total",
)


@dataclass
class DemoLive:
    """What the live panel shows."""

    state: str = "starting"
    primary: str = "-"
    secondary: str = "-"
    checkpoints: int = 0
    prereleased: str = "-"
    stats: dict[str, Any] = field(default_factory=dict)

    def table(self) -> Table:
        table = Table(title="colopp demo", show_header=False, min_width=50)
        table.add_row("pair state", self.state)
        table.add_row("primary / secondary", f"{self.primary} / {self.secondary}")
        table.add_row("checkpoints", str(self.checkpoints))
        table.add_row("pre-released frames", self.prereleased)
        table.add_row(
            "requests ok / failed", f"{self.stats.get('ok', 0)} / {self.stats.get('failed', 0)}"
        )
        table.add_row("connections reset", str(self.stats.get("resets", 0)))
        table.add_row("writes acknowledged", str(self.stats.get("writes_acked", 0)))
        return table


class StatsFeed:
    """Reads the workload's periodic stats lines in a thread into ``latest``."""

    def __init__(self, workload: ClientWorkload) -> None:
        self.workload = workload
        self.latest: dict[str, Any] = {}
        self._stopping = False
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while not self._stopping:
            try:
                self.latest = await asyncio.to_thread(self.workload.stats)
            except (RuntimeError, ValueError):
                return

    async def stop(self) -> None:
        """Stop reading (returns after the line being read, at most half a second)."""
        self._stopping = True
        await self._task


def pause_percentiles(primary: dict[str, Any]) -> dict[str, float | None]:
    """p50 and p99 of the primary's checkpoint pauses (its agent keeps the recent ones).

    While the agent still holds every pause, the first one is the migration's final stop
    into COLO, not a checkpoint: it is left out.
    """
    pauses = [float(p) for p in primary.get("checkpoint_pauses_ms", [])]
    if pauses and int(primary.get("checkpoints", 0)) <= len(pauses):
        pauses = pauses[1:]
    pauses.sort()
    if not pauses:
        return {"checkpoint_pause_ms_p50": None, "checkpoint_pause_ms_p99": None}
    return {
        "checkpoint_pause_ms_p50": pauses[len(pauses) // 2],
        "checkpoint_pause_ms_p99": pauses[round(0.99 * (len(pauses) - 1))],
    }


def prerelease_ratio(counters: dict[str, Any]) -> float:
    """Pre-released frames over released frames (the dashboard's tile)."""
    released = int(counters.get("released_frames") or 0)
    return int(counters.get("pre_released_frames") or 0) / released if released else 0.0


async def run_demo(
    options: DemoOptions,
    console: Console,
    report: Callable[[dict[str, Any]], None] = lambda _summary: None,
) -> dict[str, Any]:
    """Run the whole demo; ``report(summary)`` runs once the story is told (before
    ``hold``, before teardown); returns the summary.

    Raises:
        ConfigError: not root.
        ColoppError: a step failed (the message names it); teardown has run.
    """
    if os.geteuid() != 0:
        raise ConfigError("the demo needs root (network namespaces, taps, QEMU)")
    stop_on_sigterm()
    live = DemoLive()
    summary: dict[str, Any] = {
        "comparator": options.comparator.value,
        "colo_reached": False,
        "reprotected": False,
    }
    pair_cm: contextlib.AbstractAsyncContextManager[Watched]
    if options.dashboard:
        from colopp.demo.served import served_pair

        pair_cm = served_pair(options, console, summary)
    else:
        pair_cm = local_pair(options, console, summary)
    async with pair_cm as sp:
        summary["colo_reached"] = True
        workload = ClientWorkload(
            sp.plan,
            connections=options.connections,
            read_only=options.seed_keys if options.colo_plus else None,
        )
        # The Debian guest's own services get their own load: redis-benchmark and wrk.
        services = ServiceLoad(sp.plan) if options.guest == "debian" else None
        try:
            summary.update(await Story(sp, workload, live, options, console).run())
            summary.update(await asyncio.to_thread(workload.finish, 300))
            if services is not None:
                summary.update(await asyncio.to_thread(services.finish))
        finally:
            workload.kill()
            if services is not None:
                services.kill()
        report(summary)
        if options.hold:
            console.rule("[bold]holding: the pair stays protected until Ctrl-C")
            netns, guest = sp.plan.netns(Node.CLIENT), sp.plan.guest_address.ip
            console.log(f"try: ip netns exec {netns} curl http://{guest}/kv/r0-0")
            await asyncio.Event().wait()
    return summary


def stop_on_sigterm() -> None:
    """SIGTERM (systemd, a test's timeout, ``kill``) stops the demo as Ctrl-C does: the
    running task is cancelled, so teardown (QEMU, agents, namespaces, the lab lock) runs
    instead of leaving a pair behind.

    A plain handler, not ``loop.add_signal_handler``: that one acts on the signal numbers
    written to the loop's wakeup socket, which a forked child that has not exec'd shares,
    so a SIGTERM sent to such a child (teardown kills them; pyroute2 forks) cancelled the
    demo. Here a handler running in another process restores the default and dies."""
    task = asyncio.current_task()
    if task is None:
        return
    loop = asyncio.get_running_loop()
    demo_pid = os.getpid()

    def on_sigterm(signum: int, _frame: object) -> None:
        if os.getpid() != demo_pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        loop.call_soon_threadsafe(task.cancel)

    signal.signal(signal.SIGTERM, on_sigterm)


@contextlib.asynccontextmanager
async def local_pair(
    options: DemoOptions, console: Console, summary: dict[str, Any]
) -> AsyncIterator[SupervisedPair]:
    """Lab, agents, a protected pair and its supervisor in this process; teardown on exit."""
    console.rule("[bold]1. QEMU runtime, guest image, accelerator")
    local = await prepare_local_pair(
        options.state_dir,
        options.qemu_root,
        options.comparator,
        console,
        options.checkpoint_delay_ms,
        prerelease="auto" if options.colo_plus else None,
        read_prefixes=READ_PREFIXES if options.colo_plus else (),
        semiactive=options.colo_plus,
        guest=options.guest,
    )
    summary.update(
        accel=local.config.vm.accel,
        prerelease=local.config.options.prerelease is not None,
        semiactive=local.config.options.semiactive,
        guest=options.guest,
        vcpus=local.config.vm.vcpus,
        memory_mb=local.config.vm.memory_mb,
    )

    def changed(step: Transition) -> None:
        console.log(f"pair: {step.source.value} → {step.target.value} {step.reason}")

    def incident(found: Incident) -> None:
        verdict = f"supervisor: {found.role} on {found.host} is {found.health}"
        if found.error:
            console.log(f"[bold red]{verdict}; handling failed: {found.error}")
        else:
            console.log(f"{verdict} → fenced={found.fenced}, failover {found.failover_ms:.0f} ms")

    sp: SupervisedPair | None = None
    try:
        console.rule("[bold]2. lab network and host agents")
        await local.deployment.start()
        console.log(f"lab up: client, hosta, hostb; agents on {', '.join(local.deployment.agents)}")
        sp = SupervisedPair(local)  # the agents exist now: the supervisor heartbeats them
        sp.pair.progress = console.log
        sp.pair.lifecycle.on_change = changed
        sp.supervisor.on_incident = incident
        console.rule("[bold]3. protect: COLO with disk replication")
        await sp.pair.protect()
        summary["boot_s"] = sp.pair.boot_s
        sp.supervise()
        console.log("supervisor started: heartbeats both agents, fails over and re-protects")
        yield sp
    finally:
        console.rule("[bold]teardown")
        if sp is not None:
            await sp.close()
        else:
            await local.deployment.stop()
        console.log("QEMU processes, agents and namespaces removed")


def _primary_status(status: dict[str, Any], sp: Watched) -> dict[str, Any]:
    side: dict[str, Any] = status["sides"][sp.pair.primary.name]
    return side


class Story:
    """Phases 4-7 of the demo, each shown live; the figures go into ``out``."""

    def __init__(
        self,
        sp: Watched,
        workload: ClientWorkload,
        live: DemoLive,
        options: DemoOptions,
        console: Console,
    ) -> None:
        self.sp, self.workload, self.live = sp, workload, live
        self.options, self.console = options, console
        self.feed = StatsFeed(workload)
        self.out: dict[str, Any] = {}

    async def refresh(self) -> None:
        sp, live = self.sp, self.live
        status = await sp.pair.status()
        sides = [s for s in status["sides"].values() if isinstance(s, dict)]
        live.checkpoints = max((s.get("checkpoints", 0) for s in sides), default=0)
        primary = status["sides"].get(sp.pair.primary.name) or {}
        counters = (primary.get("comparator") or {}).get("counters") or {}
        if counters:
            live.prereleased = (
                f"{counters.get('pre_released_frames', 0)} of {counters.get('released_frames', 0)}"
            )
        live.state = sp.pair.state.value
        live.primary = sp.pair.primary.name
        live.secondary = sp.pair.secondary.name if sp.pair.secondary else "-"
        live.stats = self.feed.latest

    async def show(self, until: Callable[[], bool], seconds: float, what: str) -> None:
        """Refresh the live panel until ``until()`` holds.

        Raises:
            ColoppError: not within ``seconds``.
        """
        deadline = time.monotonic() + seconds
        with live_panel(self.console, self.live.table) as panel:
            while not until():
                if time.monotonic() > deadline:
                    raise ColoppError(f"{what}: not within {seconds:.0f}s ({self.sp.pair.state})")
                await self.refresh()
                panel.update(self.live.table())
                await asyncio.sleep(0.25)  # display refresh; the pair lives in other processes
            await self.refresh()

    async def hold_load(self, seconds: float) -> None:
        """Show the load for ``seconds``."""
        until = time.monotonic() + seconds
        await self.show(lambda: time.monotonic() >= until, seconds + 30, "load")

    async def run(self) -> dict[str, Any]:
        try:
            primary = await self.load()
            killed_at = await self.kill_and_fail_over(primary)
            await self.reprotect(killed_at)
            self.console.rule("[bold]7. protected again, still under load")
            await self.sp.next_checkpoint(60)
            await self.hold_load(self.options.after_failover_s)
        finally:
            await self.feed.stop()
        return self.out

    async def load(self) -> dict[str, Any]:
        """Phase 4: client load on the protected pair; returns the primary's status."""
        sp, options, out = self.sp, self.options, self.out
        self.console.rule("[bold]4. client load on the protected pair")
        mode = (
            f"read-mostly: each PUTs {options.seed_keys} keys, then GETs them"
            if options.colo_plus
            else "PUT, GET, POST /counter in a loop"
        )
        self.console.log(f"{options.connections} keep-alive connections from the client ({mode})")
        if options.colo_plus:
            seeded = options.connections * options.seed_keys
            await self.show(
                lambda: self.feed.latest.get("writes_acked", 0) >= seeded, 60, "seeding the keys"
            )
            await sp.next_checkpoint()  # the checkpoint after the writes re-arms the read rule
        await self.hold_load(options.before_kill_s)
        primary = _primary_status(await sp.pair.status(), sp)
        out["checkpoints"] = primary.get("checkpoints", 0)
        out["checkpoint_pause_ms"] = primary.get("checkpoint_pauses_ms", [])[-10:]
        out.update(pause_percentiles(primary))
        counters = (primary.get("comparator") or {}).get("counters") or {}
        if counters:
            out["comparator_counters"] = {key: counters.get(key) for key in COUNTER_KEYS}
        out["prerelease_ratio"] = prerelease_ratio(counters)
        if sp.pair.secondary is not None:
            secondary = await sp.pair.agents[sp.pair.secondary.name].call("status")
            vcpu = secondary.get("vcpu")
            out["secondary_cpu_quota"] = vcpu.get("quota") if isinstance(vcpu, dict) else None
        return primary

    async def kill_and_fail_over(self, primary: dict[str, Any]) -> float:
        """Phase 5: SIGKILL the primary QEMU, wait for the supervisor; returns the kill time."""
        sp, out = self.sp, self.out
        self.console.rule("[bold]5. SIGKILL the primary QEMU; the supervisor fails over")
        pid = int(primary["pid"])
        self.console.log(f"[bold red]SIGKILL[/] primary QEMU pid {pid} on {sp.pair.primary.name}")
        killed_at, killed_wall = time.monotonic(), time.time()
        os.kill(pid, signal.SIGKILL)
        self.workload.mark()
        await self.show(lambda: sp.handled(1), 30, "failover")
        first = sp.incidents[0]
        if first.error is not None:
            raise ColoppError(f"the supervisor's failover failed: {first.error}")
        out["killed_wall"] = killed_wall
        out["failover_verdict"] = first.health
        out["failover_detect_ms"] = (first.detected_at - killed_wall) * 1000
        out["failover_sequence_ms"] = first.failover_ms
        out["failover_total_ms"] = (time.monotonic() - killed_at) * 1000
        self.console.log(
            f"failed over to {sp.pair.primary.name}: verdict {first.health}, detected after "
            f"{out['failover_detect_ms']:.0f} ms, failover {first.failover_ms:.0f} ms"
        )
        return killed_at

    async def reprotect(self, killed_at: float) -> None:
        """Phase 6: the supervisor re-protects onto the lost host."""
        sp, out = self.sp, self.out
        self.console.rule("[bold]6. automatic re-protection onto the lost host")
        first = sp.incidents[0]
        await self.show(
            lambda: (
                (sp.pair.state is PairState.PROTECTED and first.reprotect_s is not None)
                or first.error is not None
            ),
            self.options.reprotect_timeout_s,
            "re-protection",
        )
        if first.error is not None:
            raise ColoppError(f"the supervisor could not re-protect: {first.error}")
        out["reprotected"] = True
        out["reprotect_s"] = first.reprotect_s
        out["reprotected_after_kill_s"] = time.monotonic() - killed_at
        out["primary_after"] = sp.pair.primary.name
        out["secondary_after"] = sp.pair.secondary.name if sp.pair.secondary else None
        self.console.log(
            f"protected again: {out['primary_after']} primary, {out['secondary_after']} "
            f"secondary (re-protection {first.reprotect_s or 0:.1f} s)"
        )


SUMMARY_KEYS = (
    "guest",
    "vcpus",
    "memory_mb",
    "boot_s",
    "accel",
    "comparator",
    "prerelease",
    "semiactive",
    "colo_reached",
    "checkpoints",
    "checkpoint_pause_ms_p50",
    "checkpoint_pause_ms_p99",
    "prerelease_ratio",
    "requests_ok",
    "requests_failed",
    "connections_reset",
    "writes_acked",
    "writes_lost",
    "read_mismatch",
    "failover_verdict",
    "failover_outage_ms",
    "failover_detect_ms",
    "failover_sequence_ms",
    "reprotected",
    "reprotect_s",
)
#: Only with the Debian guest (colopp.demo.services): its redis and nginx under load.
SERVICE_KEYS = ("redis_benchmark_requests", "redis_benchmark_errors", "wrk_requests", "wrk_errors")


def demo_ok(summary: dict[str, Any]) -> bool:
    """The story held: COLO, re-protected, and the client saw nothing go wrong."""
    return bool(
        summary.get("colo_reached")
        and summary.get("reprotected")
        and summary.get("requests_failed") == 0
        and summary.get("connections_reset") == 0
        and summary.get("writes_lost") == 0
        and not summary.get("read_mismatch")
        and not summary.get("redis_benchmark_errors")
        and not summary.get("wrk_errors")
    )


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """The final table."""
    table = Table(title="demo summary", show_header=False)
    shown_keys = [*SUMMARY_KEYS, *(k for k in SERVICE_KEYS if k in summary)]
    for key in shown_keys:
        value = summary.get(key)
        if key == "prerelease_ratio" and isinstance(value, float):
            shown = f"{value:.1%}"
        elif key in ("reprotect_s", "boot_s") and isinstance(value, float):
            shown = f"{value:.1f}"
        else:
            shown = f"{value:.0f}" if isinstance(value, float) else str(value)
        table.add_row(key, shown)
    console.print(table)
    killed = summary.get("killed_wall")
    for when, error in (summary.get("failures") or [])[:10]:  # what the client saw fail
        at = f"{when - killed:+.2f} s from the kill" if isinstance(killed, float) else "?"
        console.print(f"[red]client request failed[/] ({at}): {error}")
