"""Drive one protected pair through its lifecycle by talking to the two host agents.

This is where COLO is started (``protect``) and where a manual failover happens
(``failover``); the QMP sequences themselves run on the agents.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from colopp.colo.converge import LiveBudget
from colopp.colo.state import PairLifecycle, PairState, Transition
from colopp.controller.rights import RIGHT_PARAM, PairRights
from colopp.controller.seam import Agent, Clock, SystemClock, fence
from colopp.domain import HostSlot, PairConfig, Role, VmSpec
from colopp.errors import ColoppError, StateError
from colopp.side_request import SideRequest

Progress = Callable[[str], None]
#: How long a status call may take to connect (a live agent's kernel accepts at once).
STATUS_CONNECT_S = 1.0


class PairController:
    """Start COLO on two agents, report status, fail over, stop."""

    def __init__(
        self,
        config: PairConfig,
        agents: Mapping[str, Agent],
        progress: Progress = lambda _msg: None,
        on_change: Callable[[Transition], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.agents = agents
        self.clock: Clock = clock or SystemClock()
        self.progress = progress
        self.lifecycle = PairLifecycle(on_change=on_change, clock=self.clock.time)
        self.primary = config.primary
        self.secondary: HostSlot | None = config.secondary
        self.boot_s: float | None = None  # the guest's boot on the primary, at protect()
        self.standby: HostSlot | None = None  # the host lost at the last failover
        self.onto: HostSlot | None = None  # the new secondary's host while re-protecting
        self.events: list[dict[str, Any]] = []
        # Bounds of the live copy (colopp.colo.converge); tests narrow them.
        self.live_budget = LiveBudget()
        # Fleet etcd mode: the serving side holds the right to serve (controller.rights).
        self.rights: PairRights | None = None

    @property
    def state(self) -> PairState:
        return self.lifecycle.state

    def _event(self, kind: str, **data: Any) -> None:
        self.events.append({"at": self.clock.time(), "kind": kind, **data})

    def _side(
        self, role: Role, slot: HostSlot, peer: HostSlot, standalone: bool = False
    ) -> dict[str, Any]:
        return SideRequest.for_slot(self.config, role, slot, peer, standalone).to_dict()

    async def launch_alone(self) -> None:
        """Run the VM unreplicated on the primary host (a baseline; no COLO, no failover).

        The pair stays LAUNCHING until :meth:`stop`.

        Raises:
            ColoppError: QEMU failed or the guest did not boot (pair → ERROR).
        """
        cfg = self.config
        agent = self.agents[cfg.primary.name]
        self.lifecycle.move(PairState.LAUNCHING, "unreplicated")
        try:
            side = self._side(Role.PRIMARY, cfg.primary, cfg.primary, standalone=True)
            vm, base = cfg.vm.to_dict(), str(cfg.base_disk)
            launched = await agent.call("launch", vm=vm, side=side, base_disk=base, timeout=60)
            self.progress(f"unreplicated QEMU started on {agent.name} (pid {launched['pid']})")
            await agent.call("wait_guest", timeout=cfg.boot_timeout + 5, limit_s=cfg.boot_timeout)
        except ColoppError as exc:
            self.lifecycle.move(PairState.ERROR, str(exc))
            raise

    async def protect(self) -> None:
        """Launch both QEMUs, start replication and wait for COLO on both sides.

        Raises:
            ColoppError: any step failed; the pair is left in ERROR (call :meth:`stop`).
        """
        cfg = self.config
        secondary = self.secondary
        if secondary is None:
            raise StateError("no secondary host to protect onto")
        pa, sa = self.agents[cfg.primary.name], self.agents[secondary.name]
        self.lifecycle.move(PairState.LAUNCHING, "protect")
        try:
            for agent in (pa, sa):
                info = await agent.call("probe_qemu", accel=cfg.vm.accel)
                self.progress(f"{agent.name}: QEMU {info['version']} ({info['runtime']})")
            vm = cfg.vm.to_dict()
            base = str(cfg.base_disk)
            side_p = self._side(Role.PRIMARY, cfg.primary, secondary)
            side_s = self._side(Role.SECONDARY, secondary, cfg.primary)
            launched = await pa.call("launch", vm=vm, side=side_p, base_disk=base, timeout=60)
            self.progress(f"primary QEMU started on {pa.name} (pid {launched['pid']})")
            launched = await sa.call("launch", vm=vm, side=side_s, base_disk=base, timeout=60)
            self.progress(f"secondary QEMU started on {sa.name} (pid {launched['pid']})")
            boot = await pa.call(
                "wait_guest", timeout=cfg.boot_timeout + 5, limit_s=cfg.boot_timeout
            )
            self.boot_s = float(boot["boot_s"])
            self.progress(f"guest booted on the primary in {boot['boot_s']:.1f}s")
            await sa.call("prepare_secondary")
            self.lifecycle.move(PairState.SYNCING, "replication started")
            started = await pa.call(
                "start_colo",
                timeout=self._live_timeout(),
                checkpoint_delay_ms=cfg.options.checkpoint_delay_ms,
                budget=self.live_budget.to_dict(),
            )
            self._report_fallbacks(started)
            self.progress("migrating into COLO (RAM and disk)")
            await pa.call("wait_colo", timeout=cfg.colo_timeout + 5)
            await sa.call("wait_colo", timeout=cfg.colo_timeout + 5)
            if self.rights is not None:
                await self.rights.hold(pa, self.clock)
        except ColoppError as exc:
            self.lifecycle.move(PairState.ERROR, str(exc))
            self._event("error", message=str(exc))
            raise
        self.lifecycle.move(PairState.PROTECTED, "COLO on both sides")
        self._event("protected", primary=cfg.primary.name, secondary=secondary.name)
        self.progress("COLO state reached on both sides")

    async def protect_running(
        self, qmp_socket: str | None = None, *, domain: str | None = None
    ) -> dict[str, Any]:
        """Protect a VM that already runs on the primary host, in a QEMU colopp did not
        start (reached through ``qmp_socket``, or a running libvirt ``domain`` on the
        primary host), without restarting it: the primary's agent
        takes it over by a local live migration onto the same disk file
        (colopp.agent.takeover), the secondary starts on a blank disk, and the live
        protection (colopp.colo.live) mirrors the disk and pre-copies the RAM to it while
        the guest serves.

        Raises:
            ColoppError: a step failed; the pair is left in ERROR. A ConfigError from the
                take-over names what to change on the VM (nothing was changed on it).
        """
        cfg, secondary = self.config, self.secondary
        if secondary is None:
            raise StateError("no secondary host to protect onto")
        pa, sa = self.agents[cfg.primary.name], self.agents[secondary.name]
        what = f"libvirt domain {domain}" if domain else f"the VM behind {qmp_socket}"
        self.lifecycle.move(PairState.LAUNCHING, f"take over {what}")
        try:
            side_p = self._side(Role.PRIMARY, cfg.primary, secondary)
            taken: dict[str, Any] = await pa.call(
                "take_over",
                name=cfg.vm.name,
                qmp_socket=qmp_socket,
                side=side_p,
                domain=domain,
                timeout=330,
            )
            self.progress(f"{pa.name}: VM taken over by pid {taken['pid']} on {taken['disk']}")
            self.config = cfg = replace(
                cfg, vm=VmSpec.from_dict(taken["vm"]), base_disk=Path(taken["disk"])
            )
            side_s = self._side(Role.SECONDARY, secondary, cfg.primary)
            await sa.call(
                "launch",
                vm=cfg.vm.to_dict(),
                side=side_s,
                base_disk=str(cfg.base_disk),
                blank_size=int(taken["disk_size"]),
                timeout=60,
            )
            await sa.call("prepare_secondary")
            self.lifecycle.move(PairState.SYNCING, "disk mirror and RAM pre-copy")
            result = await self._replicate_to(pa, sa, secondary.repl_ip)
            if self.rights is not None:  # fleet etcd mode: as protect() does
                await self.rights.hold(pa, self.clock)
        except ColoppError as exc:
            self.lifecycle.move(PairState.ERROR, str(exc))
            self._event("error", message=str(exc))
            raise
        self.lifecycle.move(PairState.PROTECTED, "COLO on both sides (taken over)")
        self._event("protected", primary=cfg.primary.name, secondary=secondary.name)
        return {"take_over": taken, **result}

    async def _replicate_to(self, pa: Any, sa: Any, peer_repl_ip: str) -> dict[str, Any]:
        """The live copy onto the prepared secondary at ``peer_repl_ip``, then COLO on both
        sides (``pa``/``sa``: the primary's and the secondary's agents)."""
        cfg = self.config
        result: dict[str, Any] = await pa.call(
            "resume_replication",
            peer_repl_ip=peer_repl_ip,
            checkpoint_delay_ms=cfg.options.checkpoint_delay_ms,
            budget=self.live_budget.to_dict(),
            timeout=self._live_timeout(),
        )
        self._report_fallbacks(result)
        await pa.call("wait_colo", timeout=cfg.colo_timeout + 5)
        await sa.call("wait_colo", timeout=cfg.colo_timeout + 5)
        return result

    def _live_timeout(self) -> float:
        """The RPC timeout of a live copy: the agent ends it (done or failed) sooner."""
        return self.live_budget.bound_s(self.config.vm.memory_mb) + self.config.colo_timeout

    def _report_fallbacks(self, result: dict[str, Any]) -> None:
        for stage, at_s in result.get("fallbacks") or []:
            self.progress(f"live copy not converging after {at_s:.0f}s: {stage}")

    async def unprotect(self) -> dict[str, Any]:
        """Stop protecting: the secondary stops, the primary drops its replication child,
        filters and comparator and serves alone on its disk (the pair ends FAILED_OVER,
        with no host to re-protect onto).

        Raises:
            StateError: the pair is not protected. ColoppError: the primary's sequence
                failed (pair → ERROR).
        """
        self.lifecycle.require(PairState.PROTECTED)
        assert self.secondary is not None
        with contextlib.suppress(ColoppError):
            await self.agents[self.secondary.name].call("stop_vm", timeout=30)
        result = await self.failover(Role.SECONDARY)
        self.standby = None
        self._event("unprotected", primary=self.primary.name)
        return result

    async def failover(self, lost: Role = Role.PRIMARY) -> dict[str, Any]:
        """Make the surviving side serve alone; ``lost`` names the side that is gone.

        Raises:
            StateError: the pair is not protected.
            ColoppError: the survivor's failover sequence failed (pair → ERROR).
        """
        self.lifecycle.require(PairState.PROTECTED)
        assert self.secondary is not None
        survivor = self.secondary if lost is Role.PRIMARY else self.primary
        self.lifecycle.move(PairState.FAILING_OVER, f"{lost.value} lost")
        try:
            params = await self._serving_token(lost, survivor)
            result: dict[str, Any] = await self.agents[survivor.name].call("failover", **params)
        except ColoppError as exc:
            self.lifecycle.move(PairState.ERROR, f"failover failed: {exc}")
            raise
        lost_slot = self.primary if lost is Role.PRIMARY else self.secondary
        self.primary, self.secondary, self.standby = survivor, None, lost_slot
        self.lifecycle.move(PairState.FAILED_OVER, f"{survivor.name} serves alone")
        self._event(
            "failover",
            lost=lost.value,
            survivor=survivor.name,
            took_ms=result["took_ms"],
            guest_running_ms=result.get("guest_running_ms"),
        )
        return result

    async def _serving_token(self, lost: Role, survivor: HostSlot) -> dict[str, Any]:
        """Fleet etcd mode: the survivor's right to serve, taken before it serves (the old
        primary gives it up first when it still can); the ``failover`` parameter carrying
        its token. Single-controller mode: nothing."""
        if self.rights is None:
            return {}
        agent = self.agents[survivor.name]
        if lost is Role.PRIMARY:
            await self.rights.give_up(self.agents[self.primary.name])
            token = await self.rights.hold(agent, self.clock)
        else:
            token = await self.rights.current(agent)
        return {RIGHT_PARAM: token}

    async def reprotect(self, onto: HostSlot | None = None) -> dict[str, Any]:
        """Start a new secondary (default: on the host lost last) and return to COLO.

        The serving side keeps serving through the disk mirror and the RAM pre-copy; it
        pauses only for the switch into COLO (colopp.colo.live).

        Raises:
            StateError: the pair is not failed over, or no host is named.
            ColoppError: a step failed (pair → ERROR).
        """
        self.lifecycle.require(PairState.FAILED_OVER)
        target = onto or self.standby
        if target is None:
            raise StateError("no host to re-protect onto")
        cfg, serving = self.config, self.primary
        pa, ta = self.agents[serving.name], self.agents[target.name]
        started = self.clock.monotonic()
        self.lifecycle.move(PairState.LAUNCHING, f"new secondary on {target.name}")
        self.onto = target
        try:
            await ta.call("stop_vm", timeout=20)
            side = self._side(Role.SECONDARY, target, serving)
            vm, base = cfg.vm.to_dict(), str(cfg.base_disk)
            await ta.call("launch", vm=vm, side=side, base_disk=base, timeout=60)
            # The serving guest's translated connections move to the new secondary.
            record = await pa.call("translation_record")
            await ta.call("prepare_secondary", translation=record)
            self.lifecycle.move(PairState.SYNCING, "disk resync and RAM migration")
            result = await self._replicate_to(pa, ta, target.repl_ip)
        except ColoppError as exc:
            self.lifecycle.move(PairState.ERROR, f"re-protect failed: {exc}")
            raise
        finally:
            self.onto = None
        self.secondary, self.standby = target, None
        result["reprotect_s"] = self.clock.monotonic() - started
        self.lifecycle.move(PairState.PROTECTED, f"{serving.name} primary, {target.name} secondary")
        self._event("reprotected", primary=serving.name, secondary=target.name, **result)
        return result

    async def switchover(self, settle: float = 2.0) -> dict[str, Any]:
        """Planned handover for host maintenance: the secondary serves, then re-protect.

        The primary is fenced first (never two serving sides), the secondary takes over
        exactly as in a failover (clients keep their connections), and a new secondary is
        started on the old primary's host.

        Raises:
            StateError: the pair is not protected.
        """
        self.lifecycle.require(PairState.PROTECTED)
        old = self.primary
        await fence(self.agents[old.name], self.clock, timeout=10.0, call_timeout=30.0)
        result = await self.failover(Role.PRIMARY)
        # As after an unplanned failover: let clients' retransmissions reach the new
        # primary before re-protection pauses the guest for the switch into COLO.
        await self.clock.sleep(settle)
        result |= await self.reprotect(old)
        self._event("switchover", primary=self.primary.name, secondary=old.name)
        return result

    async def verify(self) -> dict[str, Any]:
        """Check a re-attached pair against what its agents report.

        A pair recorded as protected is still protected when the primary's QEMU runs in
        COLO primary mode and the secondary's in secondary mode; anything else is left to
        the supervisor (a dead side is detected on its first heartbeat).
        """
        status = await self.status()
        sides = status["sides"]
        if self.state is PairState.PROTECTED and self.secondary is not None:
            modes = (
                sides.get(self.primary.name, {}).get("colo", {}).get("mode"),
                sides.get(self.secondary.name, {}).get("colo", {}).get("mode"),
            )
            status["consistent"] = modes == ("primary", "secondary")
        else:
            status["consistent"] = bool(sides.get(self.primary.name, {}).get("vm_alive"))
        return status

    async def status(self) -> dict[str, Any]:
        """State plus each agent's view; unreachable agents are reported, not raised.

        Asks the pair's hosts only (primary, secondary, standby; a fleet pair's agents are
        every host of the pool), all at once: a dead host costs one timeout, not one each.
        """
        slots = (self.primary, self.secondary, self.standby)
        names = [n for n in dict.fromkeys(s.name for s in slots if s) if n in self.agents]
        replies = await asyncio.gather(*(self._status_of(self.agents[n]) for n in names))
        return {
            "state": self.state.value,
            "primary": self.primary.name,
            "secondary": self.secondary.name if self.secondary else None,
            "sides": dict(zip(names, replies, strict=True)),
        }

    @staticmethod
    async def _status_of(agent: Agent) -> dict[str, Any]:
        try:
            # A dead host's SYN is dropped: it costs the short connect budget, not the
            # whole timeout (a new leader's re-attach waited 5 s on the host just lost).
            reply: dict[str, Any] = await agent.call(
                "status", timeout=5, connect_within=STATUS_CONNECT_S
            )
        except ColoppError as exc:
            return {"error": str(exc)}
        return reply

    async def stop(self) -> None:
        """Stop both QEMUs; never raises (teardown must always run to the end)."""
        if self.state is PairState.STOPPED:
            return
        if self.state is not PairState.STOPPING:
            self.lifecycle.move(PairState.STOPPING, "stop")
        await asyncio.gather(
            *(self._stop_one(agent) for agent in self.agents.values()), return_exceptions=True
        )
        self.lifecycle.move(PairState.STOPPED, "stopped")

    async def _stop_one(self, agent: Agent) -> None:
        with contextlib.suppress(ColoppError):
            await agent.call("stop_vm", timeout=20)
