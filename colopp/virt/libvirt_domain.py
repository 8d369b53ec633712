"""One COLO side as a libvirt domain: connect, check the user's domain, define and start
the side's domain, watch its lifecycle.

:class:`DomainProcess` has the shape of :class:`colopp.qemu.qemu_process.QemuProcess`
(``pid``, ``alive``, ``exited``, ``kill``, ``stop``, ``start_error``) so the agent drives
either backend alike. ``libvirtError`` is converted here, once, into the
:class:`colopp.errors.LibvirtError` family or :class:`QemuStartError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from colopp.domain import SideSpec, VmSpec
from colopp.errors import (
    ConfigError,
    DomainNotFound,
    LibvirtError,
    LibvirtUnavailable,
    QemuStartError,
)
from colopp.vcpu.placement import parse_cpus_fast, thread_ids
from colopp.vcpu.shrink import process_of_thread
from colopp.virt.domain_xml import (
    DomainTemplate,
    check_protectable,
    side_domain_name,
    side_domain_xml,
    vm_from_template,
)
from colopp.virt.libvirt_host import EMULATOR
from colopp.virt.libvirt_monitor import LibvirtMonitor

DEFAULT_URI = "qemu:///system"
QEMU_LOG_DIR = Path("/var/log/libvirt/qemu")
_events_lock = threading.Lock()
_events_thread: list[threading.Thread] = []  # at most one per process


def _start_event_loop() -> None:
    """libvirt's default event loop on a daemon thread (must precede any connection)."""
    with _events_lock:
        if _events_thread:
            return
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors are raised
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
        thread.start()
        _events_thread.append(thread)


def connect(uri: str = DEFAULT_URI) -> Any:
    """Open ``uri`` with libvirt's event loop running.

    Raises:
        LibvirtUnavailable: libvirtd does not answer (says how to start it).
    """
    _start_event_loop()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LibvirtUnavailable(
            f"cannot reach libvirtd at {uri}: {exc.get_error_message()}; start it "
            "(`systemctl start libvirtd`, or `libvirtd -d` without systemd) after "
            "`colopp libvirt setup`, or protect with backend qemu"
        ) from exc


def netns_name(netns_dir: Path = Path("/run/netns")) -> str | None:
    """The named (``ip netns``) network namespace this process runs in, if any: the lab's
    hosts. (Inside one, ``/proc/1/ns/net`` cannot even be stat'ed, so only names count.)"""
    own = os.stat("/proc/self/ns/net")
    if not netns_dir.is_dir():
        return None
    for entry in sorted(netns_dir.iterdir()):
        with contextlib.suppress(OSError):
            st = entry.stat()
            if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
                return entry.name
    return None


def read_template(conn: Any, vm: VmSpec, uri: str, host: str) -> tuple[VmSpec, DomainTemplate]:
    """The VM to protect and what else its domain says, from the user's domain ``vm.name``.

    Raises:
        DomainNotFound: no such domain (names what to define).
        ConfigError: it runs, or COLO cannot protect its configuration (names what to change).
    """
    try:
        domain = conn.lookupByName(vm.name)
    except libvirt.libvirtError as exc:
        raise DomainNotFound(
            f"no libvirt domain {vm.name!r} on {uri}: define it (`virsh define`) with one "
            "<interface type='ethernet'> NIC using <driver name='qemu'/>, or protect with "
            "backend qemu"
        ) from exc
    if domain.isActive():
        raise ConfigError(
            f"libvirt domain {vm.name!r} is running: shut it down (`virsh shutdown "
            f"{vm.name}`); colopp runs it as {side_domain_name(vm.name, host)} here and as "
            "a domain of the same kind on the peer host. Or protect it without a restart: "
            f"backend qemu with running_domain={vm.name} (`colopp protect --running-domain "
            f"{vm.name}`), which takes it over live into colopp's QEMU on its own disk file "
            "(README 'Protecting a running libvirt domain' says what it must look like)"
        )
    template = check_protectable(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    return vm_from_template(vm, template), template


def _discard_leftover(conn: Any, name: str) -> None:
    """A side domain colopp left behind (an agent died): destroy and undefine it."""
    try:
        old = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    with contextlib.suppress(libvirt.libvirtError):
        if old.isActive():
            old.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        old.undefine()


def _pid_gone(pid: int, proc: Path = Path("/proc")) -> bool:
    """No such process, or only its zombie is left."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


class DomainProcess:
    """A side's QEMU as libvirt runs it."""

    def __init__(self, conn: Any, domain: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.conn = conn
        self.domain = domain
        self.name = str(domain.name())
        self.exited = asyncio.Event()
        self.returncode: int | None = None
        self.stop_reason: str | None = None
        self._pid: int | None = None
        self._loop = loop
        self._callback = conn.domainEventRegisterAny(
            domain, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
        )

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def log_path(self) -> Path:
        return QEMU_LOG_DIR / f"{self.name}.log"

    def _on_lifecycle(self, _conn: Any, _dom: Any, event: int, detail: int, _op: Any) -> None:
        # libvirt's event thread: only hand over to the asyncio loop.
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._mark_exited, detail)

    def _mark_exited(self, detail: int) -> None:
        reasons = {
            libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: "shutdown",
            libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: "destroyed",
            libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: "crashed",
            libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: "failed",
        }
        self.stop_reason = reasons.get(detail, f"stopped ({detail})")
        self.returncode = 0 if detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN else -9
        self.exited.set()

    async def learn_pid(self, monitor: LibvirtMonitor) -> None:
        """QEMU's pid, from its vCPU threads (libvirt has no call for it)."""
        threads = parse_cpus_fast(await monitor.execute("query-cpus-fast"))
        self._pid = process_of_thread(thread_ids(threads)[0])

    def alive(self) -> bool:
        """True until libvirt reports the domain stopped, or QEMU's process is gone (a
        killed QEMU is dead at once; libvirt's STOPPED event follows its cleanup, which
        took up to ~2 s here)."""
        return not self.exited.is_set() and not (self._pid is not None and _pid_gone(self._pid))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to QEMU (fault injection, fencing); libvirt sees the crash."""
        if self._pid is not None and not self.exited.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, sig)

    async def stop(self, grace: float = 3.0) -> None:
        """Destroy (libvirt: SIGTERM, then SIGKILL) and undefine the side's domain."""
        del grace  # libvirt's destroy has its own escalation
        self.kill(signal.SIGCONT)
        await asyncio.to_thread(self._destroy_and_undefine)
        self.exited.set()

    def _destroy_and_undefine(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            if self.domain.isActive():
                self.domain.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.domainEventDeregisterAny(self._callback)
        with contextlib.suppress(libvirt.libvirtError):
            self.domain.undefine()
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.close()

    def stderr_tail(self, limit: int = 800) -> str:
        """The end of libvirt's QEMU log for this domain."""
        try:
            return self.log_path.read_bytes()[-limit:].decode(errors="replace").strip()
        except OSError:
            return ""

    def start_error(self, what: str) -> QemuStartError:
        """An error that says why the domain is gone, with QEMU's own words."""
        why = self.stop_reason or "running"
        return QemuStartError(
            f"libvirt domain {self.name} {what} ({why}); {self.log_path} ends: "
            f"{self.stderr_tail() or 'no output'}"
        )


@dataclass
class LibvirtSide:
    """What the libvirt backend hands the agent."""

    vm: VmSpec
    process: DomainProcess
    monitor: LibvirtMonitor


@dataclass
class LibvirtVm:
    """The user's domain, read and checked: the VM to protect and its disk."""

    conn: Any
    vm: VmSpec
    template: DomainTemplate

    @property
    def disk(self) -> Path | None:
        """The domain's own file disk (None: the controller's base disk)."""
        return self.template.disk


async def read_domain(vm: VmSpec, host: str, uri: str = DEFAULT_URI) -> LibvirtVm:
    """Connect and check the user's domain ``vm.name``.

    Raises:
        LibvirtUnavailable / DomainNotFound / ConfigError: see :func:`connect`,
            :func:`read_template`.
    """
    conn = await asyncio.to_thread(connect, uri)
    protected, template = await asyncio.to_thread(read_template, conn, vm, uri, host)
    return LibvirtVm(conn, protected, template)


async def start_side(
    user: LibvirtVm, side: SideSpec, host: str, emulator: Path = EMULATOR
) -> LibvirtSide:
    """Define and start this side's domain (``colopp-VM-HOST``).

    Raises:
        ConfigError: the emulator wrapper is missing.
        LibvirtError: libvirt refused the XML.
        QemuStartError: libvirt could not start the domain (QEMU's log quoted).
    """
    if not emulator.exists():
        raise ConfigError(f"no libvirt emulator wrapper {emulator}: run `colopp libvirt setup`")
    loop = asyncio.get_running_loop()
    conn, vm = user.conn, user.vm
    name = side_domain_name(vm.name, host)
    direct_boot = user.template.kernel is not None
    xml = side_domain_xml(vm, side, host, emulator, netns_name(), direct_boot=direct_boot)
    await asyncio.to_thread(_discard_leftover, conn, name)
    try:
        domain = await asyncio.to_thread(conn.defineXML, xml)
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"libvirt refused {name}'s XML: {exc.get_error_message()}") from exc
    process = DomainProcess(conn, domain, loop)
    try:
        await asyncio.to_thread(domain.create)
    except libvirt.libvirtError as exc:
        await process.stop()
        raise QemuStartError(f"libvirt could not start {name}: {exc.get_error_message()}") from exc
    monitor = LibvirtMonitor(conn, domain, loop)
    await process.learn_pid(monitor)
    return LibvirtSide(vm, process, monitor)
