"""Re-adoption: a restarted agent takes over the QEMU and comparator its predecessor ran.

The agent never stops what it owns when it exits (see ``colopp.agent.__main__``); the
next agent reads :mod:`colopp.agent.state_file`, checks that each recorded process is
still the same one (pid, kernel start time, boot, command line: pids are reused), opens a
pidfd on it (exit noticed at once, signals never reach a recycled pid), reconnects QMP
(colopp's own socket, or libvirt's passthrough for a libvirt domain) and goes on as if it
had started them. A comparator found dead is started again (and forces a checkpoint, as
after any comparator restart); a QEMU found dead leaves nothing to adopt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from colopp.agent import state_file
from colopp.agent.comparator_process import ComparatorProcess, comparator_argv, mirror_batched
from colopp.agent.semiactive import readopt_vcpus
from colopp.agent.side import Side
from colopp.agent.state_file import ProcessIdentity, SideRecord, identity_of
from colopp.domain import Backend, ComparatorKind, Role
from colopp.errors import ColoppError, LibvirtError, QemuStartError
from colopp.qmp.monitor import Monitor
from colopp.vcpu.keep import cap_record
from colopp.vcpu.shrink import VcpuState

log = logging.getLogger(__name__)

QMP_RECONNECT_TIMEOUT = 10.0


class PidWatch:
    """A pidfd on a process that is not our child: exit seen at once, signals safe."""

    def __init__(self, identity: ProcessIdentity, loop: asyncio.AbstractEventLoop) -> None:
        self.pid = identity.pid
        self.exited = asyncio.Event()
        self._fd: int | None = None
        try:
            self._fd = os.pidfd_open(identity.pid)
        except OSError:
            self.exited.set()
            return
        # Opened first, checked second: the pidfd then refers to the process verified.
        if identity_of(identity.pid) != identity:
            self._close()
            self.exited.set()
            return
        loop.add_reader(self._fd, self._on_exit, loop)

    def _on_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._fd is not None:
            loop.remove_reader(self._fd)
        self._close()
        self.exited.set()

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def alive(self) -> bool:
        return not self.exited.is_set()

    def send(self, sig: int) -> None:
        """Send ``sig`` while the process lives (never to a recycled pid)."""
        if self._fd is not None and not self.exited.is_set():
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self._fd, sig)

    async def terminate(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; waits for the exit."""
        self.send(signal.SIGCONT)
        self.send(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.exited.wait(), grace)
        except TimeoutError:
            self.send(signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exited.wait(), 10)


class AdoptedQemu:
    """A QEMU started by an earlier agent (the :class:`colopp.virt.VmProcess` shape)."""

    def __init__(self, identity: ProcessIdentity, run_dir: Path) -> None:
        self._watch = PidWatch(identity, asyncio.get_running_loop())
        self.exited = self._watch.exited
        self.returncode: int | None = None  # not our child: its exit status is init's
        self.stderr_path = run_dir / "qemu.stderr"

    @property
    def pid(self) -> int | None:
        return self._watch.pid

    def alive(self) -> bool:
        return self._watch.alive()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self._watch.send(sig)

    async def stop(self, grace: float = 3.0) -> None:
        await self._watch.terminate(grace)

    def stderr_tail(self, limit: int = 800) -> str:
        try:
            return self.stderr_path.read_bytes()[-limit:].decode(errors="replace").strip()
        except OSError:
            return ""

    def start_error(self, what: str) -> QemuStartError:
        return QemuStartError(f"QEMU {what} (adopted): {self.stderr_tail() or 'no output'}")


class AdoptedComparator(ComparatorProcess):
    """A comparator started by an earlier agent; once it exits, supervised as usual."""

    def __init__(
        self,
        identity: ProcessIdentity,
        argv: list[str],
        run_dir: Path,
        on_restart: Callable[[], Awaitable[None]],
        should_run: Callable[[], bool],
        restarts: int,
    ) -> None:
        super().__init__(argv, run_dir, on_restart, should_run)
        self.restarts = restarts
        self._watch: PidWatch | None = PidWatch(identity, asyncio.get_running_loop())

    async def start(self) -> None:
        """Watch the adopted process; when it exits, restart it like any comparator."""
        self._supervisor = asyncio.create_task(self._supervise_adopted())

    async def _supervise_adopted(self) -> None:
        assert self._watch is not None
        await self._watch.exited.wait()
        self._watch = None
        if self._stopping or not self._should_run():
            return
        self.restarts += 1
        log.warning("adopted comparator exited; restart %d", self.restarts)
        await self._spawn()
        with contextlib.suppress(Exception):
            await self._on_restart()
        await self._supervise()

    @property
    def pid(self) -> int | None:
        if self._watch is not None:
            return self._watch.pid
        return super().pid

    def alive(self) -> bool:
        if self._watch is not None:
            return self._watch.alive()
        return super().alive()

    async def stop(self, grace: float = 3.0) -> None:
        self._stopping = True
        if self._watch is not None:
            if self._supervisor is not None:
                self._supervisor.cancel()
            await self._watch.terminate(grace)
            return
        await super().stop(grace)

    def kill(self) -> None:
        if self._watch is not None:
            self._watch.send(signal.SIGKILL)
            return
        super().kill()


def identity_of_pid(pid: int | None) -> ProcessIdentity | None:
    """The identity to record for a process we run (None: none, or already gone)."""
    return identity_of(pid) if pid is not None else None


def record_of(host: str, side: Side) -> SideRecord:
    """What to save for ``side`` now."""
    comparator = side.comparator
    return SideRecord(
        host=host,
        vm=side.vm,
        spec=side.spec,
        qemu=identity_of_pid(side.process.pid),
        comparator=identity_of_pid(comparator.pid) if comparator and comparator.alive() else None,
        comparator_restarts=comparator.restarts if comparator is not None else 0,
        failed_over=side.failed_over,
        checkpoint_delay_ms=side.checkpoint_delay_ms,
        vcpu=_vcpu_record(side.vcpu),
        saved_at=time.time(),
    )


def _vcpu_record(state: VcpuState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "pid": state.pid,
        "thread_ids": list(state.thread_ids),
        "before": {str(t): sorted(c) for t, c in state.before.items()},
        "after": {str(t): sorted(c) for t, c in state.after.items()},
        "quota": state.quota,
        "cap": cap_record(state.cap) if state.cap is not None else None,
    }


def vcpu_from_record(data: dict[str, Any] | None) -> VcpuState | None:
    """The shrink in force, as recorded (its affinities and quota; the cgroup cap itself is
    found and checked by :func:`colopp.agent.semiactive.readopt_vcpus`)."""
    if not data:
        return None
    try:
        return VcpuState(
            pid=int(data["pid"]),
            thread_ids=tuple(int(t) for t in data["thread_ids"]),
            before={int(t): frozenset(int(c) for c in cs) for t, cs in data["before"].items()},
            after={int(t): frozenset(int(c) for c in cs) for t, cs in data["after"].items()},
            quota=float(data["quota"]) if data.get("quota") is not None else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


async def adopt_qemu_side(record: SideRecord) -> Side | None:
    """The side of a QEMU-direct record, its QEMU verified and QMP reconnected; None when
    that QEMU is gone.

    Raises:
        QmpError: QEMU runs but its QMP socket does not accept within 10 s.
    """
    assert record.qemu is not None
    process = AdoptedQemu(record.qemu, record.spec.run_dir)
    if not process.alive():
        return None
    monitor = Monitor(f"colopp-{record.spec.role.value}", record.spec.qmp_socket)
    await monitor.connect(QMP_RECONNECT_TIMEOUT, alive=process.alive)
    return Side(record.vm, record.spec, process, monitor)


async def adopt_libvirt_side(record: SideRecord, uri: str) -> Side | None:
    """The side of a libvirt record: its domain looked up by name; None when it is not
    running (see :func:`colopp.virt.libvirt_adopt.adopt_domain` for what it raises).

    Raises:
        LibvirtError: the domain runs another QEMU than the one recorded (it was destroyed
            and started again meanwhile: not the COLO side this agent ran).
    """
    from colopp.virt.libvirt_adopt import adopt_domain

    launched = await adopt_domain(record.vm, record.spec, record.host, uri)
    if launched is None:
        return None
    pid = launched.process.pid
    if record.qemu is not None and identity_of_pid(pid) != record.qemu:
        await launched.monitor.close()
        raise LibvirtError(
            f"libvirt domain {launched.process.name} runs QEMU pid {pid}, not the one "
            f"recorded (pid {record.qemu.pid}): not adopted"
        )
    return Side(launched.vm, record.spec, launched.process, launched.monitor)


async def adopt_side(
    record: SideRecord,
    libvirt_uri: str,
    force_checkpoint: Callable[[], Awaitable[None]],
) -> Side | None:
    """Re-adopt everything ``record`` names; None when its VM no longer runs.

    Raises:
        QmpError / LibvirtError: the VM runs but cannot be driven (left running).
    """
    if record.spec.options.backend is Backend.LIBVIRT:
        side = await adopt_libvirt_side(record, libvirt_uri)
    else:
        side = await adopt_qemu_side(record)
    if side is None:
        if record.comparator is not None:  # nothing left to compare for
            PidWatch(record.comparator, asyncio.get_running_loop()).send(signal.SIGTERM)
        return None
    side.failed_over = record.failed_over
    side.checkpoint_delay_ms = record.checkpoint_delay_ms
    side.vcpu = vcpu_from_record(record.vcpu)
    readopt_vcpus(side, record.vcpu)
    spec = side.spec
    if spec.options.comparator is ComparatorKind.COLOPP and spec.role is Role.PRIMARY:
        argv = comparator_argv(
            spec,
            side.checkpoint_delay_ms,
            vnet_hdr=side.vm.vnet_hdr,
            mirror_batched=mirror_batched(spec),
        )
        # A comparator recorded but gone is started again by its supervisor at once.
        if record.comparator is not None:
            side.comparator = AdoptedComparator(
                record.comparator,
                argv,
                spec.run_dir,
                force_checkpoint,
                side.process.alive,
                record.comparator_restarts,
            )
            await side.comparator.start()
    return side


def persist_side(state_dir: Path, host: str, side: Side | None) -> None:
    """Save what the agent owns now (or forget it when nothing runs); never raises: a
    state directory that cannot be written is logged (the VM keeps running)."""
    if side is None:
        state_file.forget(state_dir)
        return
    try:
        state_file.save(state_dir, record_of(host, side))
    except OSError:
        log.exception("cannot save the agent state in %s", state_dir)


async def readopt(
    state_dir: Path,
    libvirt_uri: str,
    force_checkpoint: Callable[[], Awaitable[None]],
) -> Side | None:
    """The side the previous agent left running, re-adopted; None when there is none.

    A record that cannot be used (unreadable, another version) or whose VM cannot be driven
    is set aside under another name and logged: nothing is stopped.
    """
    try:
        record = state_file.load(state_dir)
    except ColoppError:
        kept = state_file.set_aside(state_dir)
        log.exception("agent state unusable; kept as %s", kept)
        return None
    if record is None:
        return None
    try:
        side = await adopt_side(record, libvirt_uri, force_checkpoint)
    except ColoppError:
        kept = state_file.set_aside(state_dir)
        log.exception("cannot re-adopt %s (left running); record kept as %s", record.vm.name, kept)
        return None
    if side is None:
        log.warning("the %s of %s recorded here no longer runs", record.spec.role, record.vm.name)
        state_file.forget(state_dir)
        return None
    log.info(
        "re-adopted the %s of %s: QEMU pid %s, comparator pid %s",
        side.spec.role,
        side.vm.name,
        side.process.pid,
        side.comparator.pid if side.comparator else None,
    )
    return side
