"""Re-adopt a side domain (``colopp-VM-HOST``) after an agent restart.

libvirtd, not the agent, owns a libvirt side's QEMU, so a restarted agent finds it by name,
checks that it runs (and that it is the domain colopp defined: same name, running), and
drives it again through libvirt's QMP passthrough. The agent then checks that the domain's
QEMU is the process it recorded (:func:`colopp.agent.adopt.adopt_libvirt_side`): a domain
destroyed and started again under the same name is not the COLO side it ran.
"""

from __future__ import annotations

import asyncio

import libvirt

from colopp.domain import SideSpec, VmSpec
from colopp.errors import ColoppError, LibvirtError
from colopp.virt.domain_xml import side_domain_name
from colopp.virt.libvirt_domain import DomainProcess, LibvirtSide, connect
from colopp.virt.libvirt_monitor import LibvirtMonitor


def _lookup_running(conn: object, name: str) -> object | None:
    try:
        domain = conn.lookupByName(name)  # type: ignore[attr-defined]
        return domain if domain.isActive() else None
    except libvirt.libvirtError:
        return None


async def adopt_domain(vm: VmSpec, spec: SideSpec, host: str, uri: str) -> LibvirtSide | None:
    """The running side domain of ``vm`` on this host, or None when it does not run.

    Raises:
        LibvirtUnavailable: libvirtd does not answer.
        LibvirtError: the domain runs but its QMP does not answer.
    """
    del spec  # the domain's XML holds it; kept for the caller's one shape
    conn = await asyncio.to_thread(connect, uri)
    name = side_domain_name(vm.name, host)
    domain = await asyncio.to_thread(_lookup_running, conn, name)
    if domain is None:
        return None
    loop = asyncio.get_running_loop()
    process = DomainProcess(conn, domain, loop)
    monitor = LibvirtMonitor(conn, domain, loop)
    try:
        await process.learn_pid(monitor)
    except ColoppError as exc:
        raise LibvirtError(f"libvirt domain {name} runs but does not answer QMP: {exc}") from exc
    return LibvirtSide(vm, process, monitor)
