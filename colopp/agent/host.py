"""HostAgent: the operations one host offers the controller, run on local QEMU.

Each public coroutine is an RPC method (see :data:`RPC_METHODS`). The agent keeps at most
one VM side per host in this version.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from pathlib import Path
from typing import Any

from colopp.agent.adopt import persist_side, readopt
from colopp.agent.comparing import start_comparator, stop_comparator, stop_ingress
from colopp.agent.disks import prepare_disks
from colopp.agent.failover import serve_alone
from colopp.agent.heartbeat import heartbeat_reply, lease_view, probe_tcp
from colopp.agent.launch import read_libvirt_domain, start_libvirt_side, start_qemu_side
from colopp.agent.lease import LeaseWatchdog
from colopp.agent.live_protect import live_reprotect, resume_protection
from colopp.agent.replies import (
    BootReply,
    FailoverReply,
    KillReply,
    LaunchReply,
    PidReply,
    PingReply,
    PrepareReply,
    ProbeQemuReply,
    ProbeTcpReply,
    ResumeReply,
    StartedReply,
    StatusReply,
    StopReply,
)
from colopp.agent.semiactive import restore_vcpus, shrink_secondary
from colopp.agent.side import Side, event_stamp
from colopp.agent.status import side_status
from colopp.agent.steps import run_steps, wait_colo_mode
from colopp.agent.takeover import take_over
from colopp.agent.takeover_libvirt import take_over_domain
from colopp.agent.translation import RECORD_FILE as TRANSLATION_RECORD
from colopp.agent.translation import SideTranslation
from colopp.clock import Clock, SystemClock
from colopp.colo.converge import LiveBudget
from colopp.colo.sequence import attach_replication, secondary_prepare
from colopp.domain import Backend, ComparatorKind, Role, VmSpec
from colopp.errors import ConfigError, QmpError, QmpTimeout, StateError
from colopp.qemu.qemu_process import READY_LINE, wait_for_serial
from colopp.qemu.runtime import QemuRuntime, probe
from colopp.qemu.version import require_colo_capable
from colopp.side_request import SideRequest


class HostAgent:
    """Owns this host's QEMU; every method is safe to call remotely."""

    def __init__(
        self,
        host: str,
        state_dir: Path,
        runtime: QemuRuntime,
        lease: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        self.host = host
        self.state_dir = state_dir
        self.runtime = runtime
        self.side: Side | None = None
        self.translation: SideTranslation | None = None  # colopp's seq translation
        self._lock = asyncio.Lock()
        # Self-fencing (see colopp.agent.lease): renewed by the controller's heartbeats.
        self.lease = LeaseWatchdog(
            lease,
            clock or SystemClock(),
            lambda: lease_view(self.side),
            self._peer_reachable,
            self._self_fence,
        )
        # The libvirt backend's daemon (a protection picks the backend at launch).
        self.libvirt_uri = os.environ.get("COLOPP_LIBVIRT_URI", "qemu:///system")
        # Set while the agent exits for a restart: heartbeats then tell the controller to
        # wait this long for the next agent instead of failing over (see colopp.agent.adopt).
        self.restart_grace: float | None = None

    def persist(self) -> None:
        """Save what this agent owns (colopp.agent.state_file) for the next agent."""
        persist_side(self.state_dir, self.host, self.side)

    async def readopt(self) -> bool:
        """Take over the side a previous agent left running; True when there was one."""
        self.side = await readopt(self.state_dir, self.libvirt_uri, self._comparator_restarted)
        if self.side is None:
            return False
        self.side.watcher = asyncio.create_task(self._watch_events(self.side))
        spec = self.side.spec
        if (spec.run_dir / TRANSLATION_RECORD).exists():
            self.translation = SideTranslation(spec.run_dir, self.side.vm.vnet_hdr)
            if spec.role is Role.SECONDARY and not self.side.failed_over:
                await self.translation.readopted_secondary(spec)
                if spec.rewriter_relay:
                    await self.translation.learn_here(self.side)
        self.persist()
        return True

    async def _comparator_restarted(self) -> None:
        self.persist()  # the new comparator's identity
        await self._force_checkpoint()

    # ----- queries -------------------------------------------------------------------
    async def ping(self, qmp_timeout: float = 0.0, heartbeat: bool = False) -> PingReply:
        """Liveness of the agent and of its QEMU (the heartbeat).

        With ``qmp_timeout`` > 0 QEMU must also answer ``query-status`` in that time
        (``qmp_ok``): a stopped or deadlocked QEMU is alive but silent. ``heartbeat`` marks
        the controller's supervision beat, which renews this host's lease.
        """
        if heartbeat:
            self.lease.renew()
        return await heartbeat_reply(
            self.host, self.side, qmp_timeout, self.lease.self_fenced, self.restart_grace
        )

    agent_port = 7400

    async def _peer_reachable(self) -> bool:
        if self.side is None:
            return False
        reply = await probe_tcp(self.side.spec.peer_repl_ip, self.agent_port, timeout=0.2)
        return bool(reply["reachable"])

    def _self_fence(self) -> None:
        if self.side is not None:
            self.side.process.kill()

    async def probe_tcp(self, host: str, port: int, timeout: float = 0.5) -> ProbeTcpReply:
        """Can this host open a TCP connection to ``host:port`` (e.g. the peer's agent on
        the replication network)?"""
        return await probe_tcp(host, port, timeout)

    async def probe_qemu(self, accel: str = "tcg") -> ProbeQemuReply:
        """The QEMU version here; raises QemuUnsupported for a known-broken one."""
        version = await asyncio.to_thread(probe, self.runtime)
        require_colo_capable(version, accel)
        return {"version": str(version), "runtime": self.runtime.describe()}

    async def status(self) -> StatusReply:
        """Role, process, COLO and checkpoint state of this side."""
        return await side_status(self.host, self.side, self.translation)

    # ----- lifecycle -----------------------------------------------------------------
    async def launch(
        self,
        vm: dict[str, Any],
        side: dict[str, Any],
        base_disk: str,
        blank_size: int | None = None,
    ) -> LaunchReply:
        """Prepare disks and start this side's QEMU; returns its pid. With ``blank_size``
        (bytes) the disk is blank instead of a copy of ``base_disk`` (a secondary that
        the primary's live mirror fills).

        Raises:
            StateError: a VM already runs here.
            ConfigError / QemuError / QmpError: bad spec, QEMU failed, QMP never answered.
        """
        async with self._lock:
            if self.side is not None and self.side.process.alive():
                raise StateError(f"{self.host} already runs {self.side.vm.name}")
            vm_spec = VmSpec.from_dict(vm)
            request = SideRequest.from_dict(side)
            run_dir = self.state_dir / vm_spec.name / request.role.value
            spec = request.spec(run_dir)
            spec.validate()
            self.runtime.require_present()
            user = None
            if spec.options.backend is Backend.LIBVIRT:
                user = await read_libvirt_domain(vm_spec, self.host, self.libvirt_uri)
                base_disk = str(user.disk or base_disk)
            base: Path | None = Path(base_disk)
            if blank_size is not None and user is None:
                if blank_size <= 0 or request.role is not Role.SECONDARY:
                    raise ConfigError("a blank disk needs a secondary and a size > 0 bytes")
                base = None
            elif not Path(base_disk).is_file():
                raise ConfigError(
                    f"base disk {base_disk} does not exist on {self.host}"
                    + (": give the libvirt domain a file-backed <disk>" if user else "")
                )
            await asyncio.to_thread(prepare_disks, self.runtime, spec, base, blank_size)
            if user is not None:  # the domain's own disk (if any) is the one replicated
                self.side = await start_libvirt_side(user, spec, self.host)
            else:
                self.side = await start_qemu_side(self.runtime, vm_spec, spec)
            process = self.side.process
            self.side.watcher = asyncio.create_task(self._watch_events(self.side))
            self.persist()
            return {"pid": process.pid, "run_dir": str(run_dir)}

    async def take_over(
        self, name: str, qmp_socket: str | None, side: dict[str, Any], domain: str | None = None
    ) -> dict[str, Any]:
        """Move a VM that runs here in a QEMU colopp did not start (reached through
        ``qmp_socket``, or the running libvirt ``domain``) into a QEMU of this agent's, on
        the same disk file, without a restart (colopp.agent.takeover, takeover_libvirt);
        it then serves alone until protected.

        Raises:
            StateError: a VM already runs here. ConfigError: the VM cannot be taken over
                (what to change is named). QmpError: the migration failed (the VM runs on).
        """
        path = Path(qmp_socket or "")
        if domain is None and not path.is_absolute():
            raise ConfigError(f"QMP socket {qmp_socket!r} must be an absolute path")
        async with self._lock:
            if self.side is not None and self.side.process.alive():
                raise StateError(f"{self.host} already runs {self.side.vm.name}")
            request = SideRequest.from_dict(side)
            self.runtime.require_present()
            if domain is not None:
                self.side, reply = await take_over_domain(
                    self.runtime, self.state_dir, name, domain, request, self.libvirt_uri
                )
            else:
                self.side, reply = await take_over(
                    self.runtime, self.state_dir, name, path, request
                )
            self.side.watcher = asyncio.create_task(self._watch_events(self.side))
            self.persist()
            return reply

    async def _watch_events(self, side: Side) -> None:
        listener = side.monitor.listen(["STOP", "RESUME", "COLO_EXIT"])
        try:
            while True:
                event: dict[str, Any] = dict(await listener.get())
                name = str(event.get("event"))
                if name == "COLO_EXIT":
                    side.checkpoints.colo_exit = dict(event.get("data", {}))
                else:
                    side.checkpoints.on_event(name, event_stamp(event))
        finally:
            side.monitor.unlisten(listener)

    def _require(self, role: Role | None = None) -> Side:
        if self.side is None:
            raise StateError(f"no VM runs on {self.host}")
        if role is not None and self.side.spec.role is not role:
            raise StateError(f"{self.host} runs the {self.side.spec.role}, not the {role}")
        if not self.side.process.alive():
            raise self.side.process.start_error("is not running")
        return self.side

    async def wait_guest(self, timeout: float = 120.0, limit_s: float | None = None) -> BootReply:
        """Wait for the guest's ready line on the serial console (``limit_s`` wins)."""
        side = self._require()
        limit = timeout if limit_s is None else limit_s
        took = await wait_for_serial(side.spec.serial_log, READY_LINE, limit, side.process)
        return {"boot_s": took}

    async def prepare_secondary(self, translation: list[Any] | None = None) -> PrepareReply:
        """Export parent0 over NBD and wait for the incoming migration; ``translation`` is
        the serving side's table of record (docs/rewrite.md). With QEMU's colo-compare the
        agent relays the replication streams and learns the young offsets here."""
        side = self._require(Role.SECONDARY)
        await run_steps(side, secondary_prepare(side.spec.local_repl_ip, side.spec.ports))
        if side.spec.options.comparator is ComparatorKind.COLOPP or side.spec.rewriter_relay:
            if self.translation is not None:
                await self.translation.stop()
            self.translation = SideTranslation(side.spec.run_dir, side.vm.vnet_hdr)
            await self.translation.as_secondary(
                side.spec, translation, functools.partial(run_steps, side)
            )
            if side.spec.rewriter_relay:  # QEMU's colo-compare: learn the offsets here
                await self.translation.learn_here(side)
        return {"nbd": side.spec.ports.nbd, "migration": side.spec.ports.migration}

    async def start_colo(
        self, checkpoint_delay_ms: int = 2000, budget: dict[str, Any] | None = None
    ) -> StartedReply:
        """Copy the disk and RAM to the prepared secondary and enter COLO (primary only).

        The same live path as re-protection (colopp.colo.live): the secondary's disk is
        filled by a mirror of this one, so writes the guest made before protection (its
        boot, its service) are on both disks, not only here. ``budget``: a
        :class:`~colopp.colo.converge.LiveBudget` as a dict (None: the defaults).

        Raises:
            ConfigError: a bad ``budget``. QmpError: a step failed or the copy did not
                finish within the budget (the guest runs on, unprotected).
        """
        live_budget = LiveBudget.from_dict(budget)
        side = self._require(Role.PRIMARY)
        side.checkpoint_delay_ms = checkpoint_delay_ms

        async def comparator() -> None:
            if side.comparator is None:
                await start_comparator(side, self._comparator_restarted)
            self.persist()

        plumbing = attach_replication(side.spec.peer_repl_ip, side.spec.ports)
        result = await live_reprotect(
            side, side.spec.peer_repl_ip, plumbing, checkpoint_delay_ms, live_budget, comparator
        )
        return {"started": True, "fallbacks": result["fallbacks"], "stage": result["stage"]}

    async def resume_replication(
        self,
        peer_repl_ip: str,
        checkpoint_delay_ms: int = 2000,
        budget: dict[str, Any] | None = None,
    ) -> ResumeReply:
        """Re-protect: make this serving side the primary of a new, prepared secondary.

        The disk is mirrored (active mode) to the new secondary's NBD export and the RAM
        pre-copied while the guest runs; the guest pauses only for the switch: the mirror
        ends, the replication child and the primary's filters go in, COLO starts.
        ``budget``: a :class:`~colopp.colo.converge.LiveBudget` as a dict (None: defaults).

        Raises:
            StateError: this side is not serving alone. ConfigError: a bad ``budget``.
            QmpError: a step failed (named); QmpTimeout: the copy did not finish within
                the budget even stopped (either way the guest serves on, unprotected).
        """
        live_budget = LiveBudget.from_dict(budget)
        side = self._require()
        if not side.failed_over:
            raise StateError(f"{self.host} is not serving alone; nothing to re-protect")
        started = time.monotonic()
        translation = self.translation

        async def in_pause() -> None:
            if translation is not None:
                await translation.as_primary(functools.partial(run_steps, side))

        async def comparator() -> None:
            await start_comparator(side, self._comparator_restarted)
            self.persist()

        result = await resume_protection(
            side, peer_repl_ip, checkpoint_delay_ms, live_budget, comparator, in_pause
        )
        side.failed_over = side.going_alone = False  # in COLO again: the lease applies
        self.persist()
        return {
            "resync_s": result["resync_s"],
            "precopy_s": result["precopy_s"],
            "switch_ms": result["switch_ms"],
            "downtime_ms": result["downtime_ms"],
            "linked_wait_s": result["linked_wait_s"],
            "colo_after_continue_ms": result["colo_after_continue_ms"],
            "took_s": time.monotonic() - started,
            "timeline": result["timeline"],
            "fallbacks": result["fallbacks"],
            "stage": result["stage"],
        }

    async def _force_checkpoint(self) -> None:
        # Setting x-checkpoint-delay while in COLO makes QEMU checkpoint at once.
        side = self._require(Role.PRIMARY)
        await side.monitor.execute(
            "migrate-set-parameters", {"x-checkpoint-delay": side.checkpoint_delay_ms}
        )

    async def kill_comparator(self) -> PidReply:
        """Fault injection: SIGKILL the comparator; the supervisor restarts it."""
        side = self._require(Role.PRIMARY)
        if side.comparator is None:
            raise StateError(f"{self.host} runs no colopp comparator")
        pid = side.comparator.pid
        side.comparator.kill()
        return {"pid": pid}

    async def wait_colo(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until query-colo-status reports this side's mode."""
        side = self._require()
        mode = await wait_colo_mode(side, timeout)
        if side.spec.options.semiactive and side.spec.role is Role.SECONDARY:
            await shrink_secondary(side)
            self.persist()
        return mode

    async def failover(self) -> FailoverReply:
        """Serve alone: the secondary takes over, or the primary drops its peer."""
        side = self._require()
        started = time.monotonic()
        promotion = await serve_alone(side, self.translation)
        self.persist()
        return {
            "role": side.spec.role.value,
            "took_ms": (time.monotonic() - started) * 1000,
            "guest_running_ms": promotion.guest_running_ms if promotion else None,
            "tcg_flush": promotion.tcg_flush if promotion else None,
            "timeline_ms": promotion.timeline_ms() if promotion else [],
        }

    async def kill_vm(
        self, signum: int = int(signal.SIGKILL), after_event: str | None = None
    ) -> KillReply:
        """Send a signal to this side's QEMU (fencing, fault injection).

        With ``after_event`` (e.g. ``"STOP"``: a checkpoint begins) the signal goes out the
        moment QEMU emits that event (waits up to 30 s).
        """
        side = self._require()
        if after_event is not None:
            listener = side.monitor.listen([after_event])
            try:
                await asyncio.wait_for(listener.get(), 30.0)
            except TimeoutError as exc:
                raise QmpTimeout(after_event, "event not seen in 30s") from exc
            finally:
                side.monitor.unlisten(listener)
        side.process.kill(signum)
        return {"pid": side.process.pid, "signal": signum}

    async def translation_record(self) -> list[dict[str, Any]]:
        """This side's table of record (what a new secondary must translate)."""
        return [] if self.translation is None else self.translation.record_rows()

    async def stop_vm(self) -> StopReply:
        """Stop QEMU (quit, then signals) and forget the side; idempotent."""
        side, self.side = self.side, None
        self.persist()  # forgets: a stopped side is not re-adopted
        if side is None:
            return {"stopped": False}
        if side.watcher is not None:
            side.watcher.cancel()
        await restore_vcpus(side)
        await stop_comparator(side)
        await stop_ingress(side)
        if self.translation is not None:
            await self.translation.stop()
            self.translation = None
        if side.process.alive():
            try:
                await side.monitor.execute("quit", timeout=2.0)
                await asyncio.wait_for(side.process.exited.wait(), 3.0)
            except (QmpError, TimeoutError):
                pass
        await side.monitor.close()
        await side.process.stop()
        return {"stopped": True, "returncode": side.process.returncode}


RPC_METHODS = (
    "ping",
    "probe_qemu",
    "status",
    "launch",
    "take_over",
    "wait_guest",
    "prepare_secondary",
    "start_colo",
    "wait_colo",
    "failover",
    "kill_vm",
    "kill_comparator",
    "resume_replication",
    "probe_tcp",
    "stop_vm",
    "translation_record",
)
