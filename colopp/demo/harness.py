"""Drive a protected pair on the lab from tests and benchmarks.

:class:`ClientWorkload` runs :mod:`colopp.demo.workload` in the client namespace;
:class:`SupervisedPair` is a protected local pair with its controller and supervisor in
one event loop. Both are thin: the behaviour under test lives in the package.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from colopp.controller.agent_client import AgentClient
from colopp.controller.pair import PairController
from colopp.controller.setup import LocalPair, prepare_local_pair
from colopp.controller.supervisor import Incident, PairSupervisor
from colopp.demo.lab_report import TRAFFIC_WINDOW_S, lab_traffic
from colopp.lab import LabPlan, Node, netns_argv
from colopp.qemu.argv import ComparatorKind

#: How long :meth:`ClientWorkload.served` waits for its requests (seconds): TCG guests under
#: a loaded host answer a few per second at worst; a dead service never does.
SERVED_TIMEOUT_S = 120.0


class ClientWorkload:
    """Long-lived keep-alive client connections doing PUT/GET/POST from the client netns."""

    def __init__(
        self,
        plan: LabPlan,
        connections: int = 3,
        read_only: int | None = None,
        writes_out: Path | None = None,
        *,
        ipv6: bool = False,
        target: str | None = None,
        trace_out: Path | None = None,
    ) -> None:
        """``ipv6``: talk to the guest's IPv6 service address instead of its IPv4 one;
        ``writes_out``: where the workload writes every acknowledged key and value;
        ``target``: another guest's ``IP:PORT`` (a fleet's);
        ``trace_out``: where it writes each request's send and answer times."""
        self.plan = plan
        if target is None:
            target = f"[{plan.guest_address6.ip}]:80" if ipv6 else f"{plan.guest_address.ip}:80"
        argv = [
            sys.executable,
            "-m",
            "colopp.demo.workload",
            "--target",
            target,
            "--connections",
            str(connections),
            *(["--read-only", str(read_only)] if read_only is not None else []),
            *(["--writes-out", str(writes_out)] if writes_out is not None else []),
            *(["--trace-out", str(trace_out)] if trace_out is not None else []),
        ]
        self.proc = subprocess.Popen(
            netns_argv(plan.netns(Node.CLIENT), argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stats(self) -> dict[str, Any]:
        """The next periodic stats line (the workload writes one every half second)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the workload exited")
        stats: dict[str, Any] = json.loads(line)
        return stats

    def served(self, requests: int, timeout: float = SERVED_TIMEOUT_S) -> None:
        """Return once ``requests`` more requests have succeeded (watching the stats).

        Raises:
            WorkloadStuck: they did not within ``timeout`` seconds (a service that stopped
                answering fails the caller instead of hanging it).
        """
        started = time.monotonic()
        first = last = self.stats()
        while last["ok"] < first["ok"] + requests:
            if time.monotonic() - started > timeout:
                raise WorkloadStuck(
                    f"{requests} requests not served within {timeout:.0f} s (stats then: "
                    f"{first}, now: {last}); where the lab forwards frames now: "
                    f"{lab_forwarding(self.plan)}; what moved in {TRAFFIC_WINDOW_S:.0f} s:"
                    f" {lab_traffic(self.plan)}"
                )
            last = self.stats()  # one stats line every half second

    def mark(self) -> None:
        """Record a wall-clock mark (the outage around it is reported)."""
        self._send("mark")

    def finish(
        self, timeout: float = 300, on_stuck: Callable[[], str] | None = None
    ) -> dict[str, Any]:
        """Stop, let it read every acknowledged write back, return its summary.

        ``on_stuck``: what else to report when it does not finish in time (the pair's
        status, say); its own failure is reported instead of hiding the stall.
        """
        self._send("stop")
        started = time.monotonic()
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            lines = (exc.output or b"").decode(errors="replace").strip().splitlines()
            # Everything is looked at while the workload still tries: its frames are the
            # ones the counters show.
            where = f"where the lab forwards frames now: {lab_forwarding(self.plan)}"
            moved = f"what moved in {TRAFFIC_WINDOW_S:.0f} s: {lab_traffic(self.plan)}"
            more = ""
            if on_stuck is not None:
                try:
                    more = f"; {on_stuck()}"
                except Exception as err:  # a report must not hide the stall
                    more = f"; (its report failed: {err!r})"
            self.kill()
            raise WorkloadStuck(
                f"the workload did not read its writes back within {timeout:.0f} s of stop"
                f" (the service answers too slowly or not at all); its last lines: {lines[-3:]};"
                f" {where}; {moved}{more}"
            ) from exc
        summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        summary["finish_s"] = round(time.monotonic() - started, 2)
        return summary

    def kill(self) -> None:
        """Make sure it is gone (teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def lab_forwarding(plan: LabPlan, limit: int = 60) -> list[str]:
    """The lab's learned L2 entries (``bridge fdb show dynamic``, every namespace) and the
    client's neighbour table: which host each MAC is sent to, for a report on clients that
    stopped getting answers. At most ``limit`` lines; a namespace that cannot be asked says
    why instead."""
    asks = [(netns, ["bridge", "fdb", "show", "dynamic"]) for netns in plan.namespaces]
    asks.append((plan.netns(Node.CLIENT), ["ip", "neigh", "show"]))
    lines: list[str] = []
    for netns, argv in asks:
        try:
            done = subprocess.run(
                netns_argv(netns, argv), capture_output=True, text=True, timeout=5, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            lines.append(f"{netns} {argv[0]}: {exc}")
            continue
        lines += [f"{netns} {argv[0]}: {line}" for line in done.stdout.splitlines()]
        if done.returncode != 0:
            lines.append(f"{netns} {argv[0]}: exit {done.returncode} {done.stderr.strip()}")
    return lines[:limit]


def pair_report(status: dict[str, Any], limit: int = 12000) -> str:
    """A pair's status (:meth:`PairController.status`: each side's checkpoints, comparator,
    relay and translator counters) as one JSON line of at most ``limit`` characters, for a
    report on clients that stopped getting answers."""
    text = json.dumps(status, default=str, sort_keys=True)
    return f"pair status: {text[:limit]}" + (" ..." if len(text) > limit else "")


class WorkloadStuck(RuntimeError):
    """The workload did not finish (stop its connections, read every write back) in time."""


class Watched:
    """What a driver of a supervised pair needs: the pair, the supervisor's incidents, the
    lab plan, and waits on them. :class:`SupervisedPair` supervises its own pair; the
    demo's ``--dashboard`` mode watches the pair an API runner supervises."""

    pair: PairController

    @property
    def plan(self) -> LabPlan:
        raise NotImplementedError

    @property
    def incidents(self) -> list[Incident]:
        raise NotImplementedError

    async def checkpoints(self) -> int:
        status = await self.pair.agents[self.pair.primary.name].call("status")
        return int(status["checkpoints"])

    async def next_checkpoint(self, timeout: float = 30) -> None:
        """Wait until the primary completes one more checkpoint."""
        first = await self.checkpoints()
        await self.wait_for("a checkpoint", None, timeout, lambda n: n > first)

    async def wait_for(
        self,
        what: str,
        check: Callable[[], bool] | None,
        timeout: float,
        on_checkpoints: Callable[[int], bool] | None = None,
    ) -> None:
        """Wait (polling, with a deadline) until ``check()`` holds.

        Raises:
            TimeoutError: naming ``what`` with the pair's state and incidents.
        """
        deadline = time.monotonic() + timeout
        while True:
            if check is not None and check():
                return
            if on_checkpoints is not None and on_checkpoints(await self.checkpoints()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: {self.pair.state} {self.incidents[-1:]}")
            await asyncio.sleep(0.05)  # state lives in other processes: poll it

    def handled(self, count: int) -> bool:
        """True once ``count`` incidents are fully handled (failed over, or failed)."""
        return len(self.incidents) >= count and (
            self.incidents[count - 1].failover_ms is not None
            or self.incidents[count - 1].error is not None
        )


class SupervisedPair(Watched):
    """A protected local pair, its PairController and a PairSupervisor."""

    def __init__(self, local: LocalPair) -> None:
        self.local = local
        self.pair = PairController(local.config, local.deployment.agents)
        beat = {
            name: AgentClient(f"{name}-hb", a.host, a.port, local.deployment.token)
            for name, a in local.deployment.agents.items()
        }
        self.supervisor = PairSupervisor(self.pair, beat)
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def protect(
        cls,
        state_dir: Path,
        qemu_root: Path | None,
        prefix: str,
        comparator: ComparatorKind = ComparatorKind.COLOPP,
        console: Console | None = None,
        **options: Any,
    ) -> SupervisedPair:
        """Build the lab and agents and protect the VM (not supervised yet).

        ``options``: :func:`prepare_local_pair`'s COLO++ keywords (``prerelease``,
        ``read_prefixes``, ``semiactive``).
        """
        local = await prepare_local_pair(
            state_dir,
            qemu_root,
            comparator,
            console or Console(quiet=True),
            prefix=prefix,
            **options,
        )
        await local.deployment.start()
        made = cls(local)
        try:
            await made.pair.protect()
        except BaseException:
            await made.close()
            raise
        return made

    @property
    def plan(self) -> LabPlan:
        return self.local.deployment.plan

    @property
    def incidents(self) -> list[Incident]:
        return self.supervisor.incidents

    def supervise(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the supervisor loop in the background (on ``loop`` when the caller is
        synchronous code driving its own loop)."""
        self._task = (loop or asyncio.get_running_loop()).create_task(self.supervisor.run())

    async def unsupervise(self) -> None:
        """Stop the supervisor loop and wait for it."""
        self.supervisor.stop()
        if self._task is not None:
            await self._task
            self._task = None

    async def heartbeats(self, rounds: int = 3, timeout: float = 10) -> None:
        """Wait until the supervisor has heartbeaten both sides ``rounds`` more times (the
        agents' leases are armed from the first)."""
        start = self.supervisor.rounds
        await self.wait_for("heartbeats", lambda: self.supervisor.rounds >= start + rounds, timeout)

    async def close(self) -> None:
        """Stop supervising, stop both QEMUs, remove agents and lab.

        Every step runs even if an earlier one fails (a supervisor loop that died with an
        error must not leave QEMU, agents and namespaces behind); the first error is
        raised at the end.
        """
        try:
            await self.unsupervise()
        finally:
            try:
                await self.supervisor.close()
            finally:
                try:
                    await self.pair.stop()
                finally:
                    await self.local.deployment.stop()
