"""Start one side's QEMU with the protection's backend: the agent's own child process
with its QMP socket, or a libvirt domain driven through libvirt (imported only here, so
libvirt-python stays optional for the QEMU-direct backend)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from colopp.agent.comparing import start_ingress
from colopp.agent.side import Side
from colopp.domain import SideSpec, VmSpec
from colopp.errors import QemuStartError, QmpError
from colopp.qemu.argv import mirror_process_wanted, qemu_argv
from colopp.qemu.qemu_process import QemuProcess, keep_previous_serial_log
from colopp.qemu.runtime import QemuRuntime
from colopp.qmp.monitor import Monitor

if TYPE_CHECKING:
    from colopp.virt.libvirt_domain import LibvirtVm

QMP_CONNECT_TIMEOUT = 15.0


async def start_qemu_side(runtime: QemuRuntime, vm: VmSpec, spec: SideSpec) -> Side:
    """QEMU as the agent's child, QMP on colopp's own socket.

    Raises:
        QemuStartError: QEMU exited at start or never answered on QMP.
    """
    argv = qemu_argv(runtime, vm, spec, batched_mirror=mirror_process_wanted())
    keep_previous_serial_log(spec.serial_log)
    process = QemuProcess(argv, runtime.env(), spec.run_dir)
    await process.start()
    monitor = Monitor(f"colopp-{spec.role.value}", spec.qmp_socket)
    try:
        await monitor.connect(QMP_CONNECT_TIMEOUT, alive=process.alive)
    except QmpError as exc:
        if not process.alive():
            raise process.start_error("exited at start") from exc
        await process.stop()
        raise process.start_error(f"never answered on QMP ({exc})") from exc
    side = Side(vm, spec, process, monitor)
    try:
        await start_ingress(side)  # a secondary whose answers may leave early: its relay
    except QemuStartError:
        await monitor.close()
        await process.stop()
        raise
    return side


async def read_libvirt_domain(vm: VmSpec, host: str, uri: str) -> LibvirtVm:
    """The user's libvirt domain ``vm.name``, checked (see
    :func:`colopp.virt.libvirt_domain.read_domain` for what it raises)."""
    from colopp.virt.libvirt_domain import read_domain

    return await read_domain(vm, host, uri)


async def start_libvirt_side(user: LibvirtVm, spec: SideSpec, host: str) -> Side:
    """This side as the libvirt domain ``colopp-VM-HOST`` (see
    :func:`colopp.virt.libvirt_domain.start_side` for what it raises)."""
    from colopp.virt.libvirt_domain import start_side

    launched = await start_side(user, spec, host)
    return Side(launched.vm, spec, launched.process, launched.monitor)
