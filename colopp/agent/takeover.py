"""Take over a VM that runs in a QEMU colopp did not start, without restarting it.

The VM is reached through its QMP socket. Its command line (``/proc/PID/cmdline``, PID
from the socket's peer credentials) and ``query-block`` say what it is
(:mod:`colopp.qemu.running`, which also lists what the VM must look like); colopp starts
its own QEMU on this host with the same machine, the same disk *file* (under the quorum
COLO needs) and a new tap on the VM's bridge, and live-migrates the VM into it over a
unix socket: RAM and device state move, the disk stays where it is (both QEMUs open the
same file; the destination activates it only when the source has let go). The old QEMU
then quits. What stays different after an unprotect: the VM runs in colopp's QEMU (not
the original process), on the new tap, its disk under a one-child quorum.

The new side serves alone, like a survivor after a failover: the live protection
(:func:`colopp.agent.live_protect.live_reprotect`) makes it a primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import struct
import time
from pathlib import Path
from typing import Any

from colopp.agent.side import Side
from colopp.domain import Role, SideSpec, VmSpec
from colopp.errors import ConfigError, QmpError, QmpTimeout, StateError
from colopp.lab.netlink import Rtnl
from colopp.qemu.argv import template_values
from colopp.qemu.qemu_process import QemuProcess
from colopp.qemu.render import render_files
from colopp.qemu.running import RunningVm, inspect_argv, pci_slots, qemu_options, with_disk
from colopp.qemu.runtime import QemuRuntime
from colopp.qmp.monitor import Monitor
from colopp.side_request import SideRequest

QMP_TIMEOUT = 10.0
MIGRATION_TIMEOUT = 300.0
# The local migration's stop: what QEMU may leave for the stopped last pass.
DOWNTIME_LIMIT_MS = 50
MIGRATION_DONE = ("completed",)
#: takeover.conf's values beyond :func:`colopp.qemu.argv.template_values`.
TAKEOVER_PLACEHOLDERS = ("disk_format", "nic_addr", "disk_addr")
MIGRATION_FAILED = ("failed", "cancelled")


def peer_pid(qmp_socket: Path) -> int:
    """The pid of the process listening on ``qmp_socket`` (SO_PEERCRED).

    Raises:
        ConfigError: no QEMU listens there.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(qmp_socket))
        except OSError as exc:
            raise ConfigError(f"no QMP server at {qmp_socket}: {exc.strerror}") from exc
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, _, _ = struct.unpack("3i", creds)
    return int(pid)


def read_cmdline(pid: int) -> list[str]:
    """``/proc/PID/cmdline`` as a list (the binary first).

    Raises:
        ConfigError: the process is gone.
    """
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the command line of pid {pid}: {exc.strerror}") from exc
    return [part.decode() for part in raw.split(b"\0") if part]


def takeover_argv(
    runtime: QemuRuntime, vm: VmSpec, spec: SideSpec, running: RunningVm, slots: dict[str, int]
) -> list[str]:
    """colopp's QEMU for the VM (pure): vm.conf, kernel.conf if any, takeover.conf."""
    names = ["vm.conf", "takeover.conf"]
    if vm.kernel is not None:
        names.insert(1, "kernel.conf")
    if vm.vnet_hdr:
        names.append("vnet-hdr.conf")
    values = template_values(vm, spec) | {
        "disk_format": running.disk_format,
        "nic_addr": f"0x{slots['nic']:x}",
        "disk_addr": f"0x{slots['disk']:x}",
    }
    return [*runtime.system_argv(), *render_files(names, values)]


def tap_name(pid: int) -> str:
    """The new tap's name (at most 15 bytes)."""
    return f"colopp{pid}"[:15]


async def take_over(
    runtime: QemuRuntime, state_dir: Path, name: str, qmp_socket: Path, request: SideRequest
) -> tuple[Side, dict[str, Any]]:
    """Move the VM behind ``qmp_socket`` into a QEMU of colopp's, on this host.

    Returns the new side (serving alone, role primary) and what happened (pids, disk,
    the migration's downtime).

    Raises:
        ConfigError: the VM cannot be taken over (what to change is named); nothing was
            changed on it. QmpError / QmpTimeout: the migration failed; the VM runs on in
            its own QEMU.
    """
    started = time.monotonic()
    pid = await asyncio.to_thread(peer_pid, qmp_socket)
    running = inspect_argv(qemu_options(await asyncio.to_thread(read_cmdline, pid)))
    source = Monitor("colopp-takeover", qmp_socket)
    await source.connect(QMP_TIMEOUT)
    try:
        side, reply = await take_over_from(
            runtime, state_dir, name, request, source, running, pid, started
        )
        with contextlib.suppress(QmpError):
            await source.execute("quit", timeout=QMP_TIMEOUT)
    finally:
        await source.close()
    return side, reply


async def take_over_from(
    runtime: QemuRuntime,
    state_dir: Path,
    name: str,
    request: SideRequest,
    source: Any,
    running: RunningVm,
    pid: int,
    started: float,
) -> tuple[Side, dict[str, Any]]:
    """The take-over through ``source`` (the running VM's QMP: a :class:`Monitor`, or
    libvirt's passthrough), ``running`` read from its command line or domain XML; the
    caller ends the old QEMU (``quit``, or libvirt's destroy) once this returned.

    Raises:
        ConfigError / StateError: the VM cannot be taken over (nothing changed on it).
        QmpError / QmpTimeout: the migration failed; the VM runs on in its own QEMU.
    """
    status = await source.execute("query-status", timeout=QMP_TIMEOUT)
    if status.get("status") != "running":
        raise StateError(f"the VM {name} is {status.get('status')}, not running")
    running = with_disk(running, await source.execute("query-block", timeout=QMP_TIMEOUT))
    slots = pci_slots(await source.execute("query-pci", timeout=QMP_TIMEOUT))
    version = await source.execute("query-version", timeout=QMP_TIMEOUT)
    vm = running.vm_spec(name)
    assert running.disk is not None
    run_dir = state_dir / name / Role.PRIMARY.value
    spec = SideSpec(
        Role.PRIMARY,
        run_dir,
        tap_name(pid),
        running.disk,
        request.local_repl_ip,
        request.peer_repl_ip,
        request.ports,
        request.options,
    )
    spec.validate()
    side = await _start_copy(runtime, vm, spec, running, slots, version)
    try:
        downtime = await _migrate(source, side, run_dir / "takeover.sock")
    except BaseException:
        await _discard(side, spec.tap)
        raise
    side.failed_over = True  # serving alone: the live protection makes it a primary
    return side, {
        "source_pid": pid,
        "pid": side.process.pid,
        "disk": str(running.disk),
        "disk_format": running.disk_format,
        "disk_size": running.disk_size,
        "tap": spec.tap,
        "vm": vm.to_dict(),
        "downtime_ms": downtime,
        "took_s": time.monotonic() - started,
    }


async def _start_copy(
    runtime: QemuRuntime,
    vm: VmSpec,
    spec: SideSpec,
    running: RunningVm,
    slots: dict[str, int],
    version: Any,
) -> Side:
    """colopp's QEMU, waiting for the incoming migration, on a new tap on the VM's bridge.

    Raises:
        ConfigError: another QEMU version, or the VM's tap has no bridge.
        QemuStartError: QEMU did not start.
    """
    argv = takeover_argv(runtime, vm, spec, running, slots)
    # pyroute2's IPRoute runs an event loop of its own: never on the agent's loop.
    await asyncio.to_thread(add_tap_beside, running.tap, spec.tap)
    if spec.run_dir.exists():
        shutil.rmtree(spec.run_dir)
    spec.run_dir.mkdir(parents=True, mode=0o700)
    process = QemuProcess(argv, runtime.env(), spec.run_dir)
    try:
        await process.start()
    except BaseException:
        await asyncio.to_thread(delete_tap, spec.tap)
        raise
    monitor = Monitor("colopp-primary", spec.qmp_socket)
    side = Side(vm, spec, process, monitor)
    try:
        await monitor.connect(QMP_TIMEOUT, alive=process.alive)
        _same_qemu(version, await monitor.execute("query-version", timeout=QMP_TIMEOUT))
    except BaseException:
        await _discard(side, spec.tap)
        raise
    return side


async def _migrate(source: Any, side: Side, path: Path) -> float:
    """Migrate the VM from ``source`` into ``side`` over the unix socket ``path``; returns
    QEMU's downtime (ms). On failure the migration is cancelled (the VM runs on)."""
    uri = f"unix:{path}"
    await side.monitor.execute("migrate-incoming", {"uri": uri}, timeout=QMP_TIMEOUT)
    await source.execute(
        "migrate-set-parameters", {"downtime-limit": DOWNTIME_LIMIT_MS}, timeout=QMP_TIMEOUT
    )
    await source.execute("migrate", {"uri": uri}, timeout=QMP_TIMEOUT)
    try:
        return await _finished(source, side, time.monotonic() + MIGRATION_TIMEOUT)
    except BaseException:
        # The VM goes on in its own QEMU (cont also works after a completed migration).
        with contextlib.suppress(QmpError):
            await source.execute("migrate_cancel", timeout=QMP_TIMEOUT)
        with contextlib.suppress(QmpError):
            await source.execute("cont", timeout=QMP_TIMEOUT)
        raise


async def _finished(source: Any, side: Side, deadline: float) -> float:
    """Wait until the migration completed and colopp's QEMU runs; QEMU's downtime (ms).

    Raises:
        QmpError: the migration failed; QmpTimeout: not done by ``deadline``.
    """
    while True:
        info = await source.execute("query-migrate", timeout=QMP_TIMEOUT)
        state = info.get("status")
        if state in MIGRATION_DONE:
            break
        if state in MIGRATION_FAILED:
            raise QmpError("migrate", f"the VM's migration {state}: {info.get('error-desc')}")
        if time.monotonic() > deadline:
            raise QmpTimeout("migrate", f"not done in time: {info}")
        await asyncio.sleep(0.05)  # the VM's own QEMU: poll, its events are not ours
    while True:
        status = await side.monitor.execute("query-status", timeout=QMP_TIMEOUT)
        if status.get("status") == "running":
            return float(info.get("downtime", -1))
        if time.monotonic() > deadline:
            raise QmpTimeout("migrate", f"colopp's QEMU did not resume: {status}")
        await asyncio.sleep(0.01)  # the destination resumes right after the last byte


def _same_qemu(theirs: Any, ours: Any) -> None:
    """Raises ConfigError unless both ``query-version`` answers are equal."""
    if theirs != ours:
        raise ConfigError(
            f"the VM runs QEMU {dict(theirs).get('qemu')}, colopp's runtime is "
            f"{dict(ours).get('qemu')}: start the VM with colopp's QEMU"
        )


def add_tap_beside(theirs: str, tap: str) -> None:
    """Create ``tap`` (up) on the bridge of the VM's tap ``theirs`` (blocking netlink).

    Raises:
        ConfigError: ``theirs`` is on no bridge.
    """
    with Rtnl(None) as rtnl:
        bridge = rtnl.master_of(theirs)
        if bridge is None:
            raise ConfigError(f"the VM's tap {theirs} is on no bridge: colopp needs one")
        rtnl.delete_link(tap)
        rtnl.add_tap(tap)
        rtnl.set_master(tap, bridge)
        rtnl.set_up(tap)


def delete_tap(tap: str) -> None:
    """Remove ``tap`` (blocking netlink; gone already is fine)."""
    with Rtnl(None) as rtnl:
        rtnl.delete_link(tap)


async def _discard(side: Side, tap: str) -> None:
    """Stop colopp's copy and remove its tap (the VM itself is untouched)."""
    with contextlib.suppress(QmpError):
        await side.monitor.close()
    await side.process.stop()
    await asyncio.to_thread(delete_tap, tap)
