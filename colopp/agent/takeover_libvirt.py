"""Take over a running libvirt domain without restarting it (the libvirt side of
:mod:`colopp.agent.takeover`).

The domain is found by name on the host's libvirtd; its live XML says what it is and
whether colopp can copy it (:func:`colopp.virt.libvirt_running.inspect_domain`, each
refusal naming the element to change). colopp's QEMU is started on this host with the
same machine, the domain's own disk file and a new tap (``vnet_hdr=on``, as libvirt opened
the domain's) on the bridge of the domain's tap, and the VM is live-migrated into it
through libvirt's QMP passthrough over a unix socket. libvirt then destroys the domain's
old QEMU (paused after the migration; its disk already handed over). The domain stays
defined in libvirt, shut off: the VM runs on in colopp's QEMU, on the domain's disk file.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import libvirt

from colopp.agent.side import Side
from colopp.agent.takeover import take_over_from
from colopp.errors import ColoppError, DomainNotFound, LibvirtError, StateError
from colopp.qemu.runtime import QemuRuntime
from colopp.side_request import SideRequest
from colopp.virt.libvirt_domain import DomainProcess, connect
from colopp.virt.libvirt_monitor import LibvirtMonitor
from colopp.virt.libvirt_running import inspect_domain


def _running_domain(conn: Any, domain: str) -> tuple[Any, str]:
    """The domain and its live XML (blocking libvirt calls).

    Raises:
        DomainNotFound: no such domain. StateError: it does not run.
    """
    try:
        dom = conn.lookupByName(domain)
    except libvirt.libvirtError as exc:
        raise DomainNotFound(f"no libvirt domain {domain!r}: define and start it") from exc
    if not dom.isActive():
        raise StateError(
            f"libvirt domain {domain!r} is not running: start it (virsh start), or protect "
            "it stopped with backend libvirt"
        )
    return dom, str(dom.XMLDesc(0))


def _destroy(dom: Any) -> None:
    with contextlib.suppress(libvirt.libvirtError):  # gone already is fine
        dom.destroy()


async def take_over_domain(
    runtime: QemuRuntime,
    state_dir: Path,
    name: str,
    domain: str,
    request: SideRequest,
    uri: str,
) -> tuple[Side, dict[str, Any]]:
    """Move the running libvirt ``domain`` into a QEMU of colopp's, on this host.

    Returns the new side (serving alone) and what happened (pids, disk, downtime).

    Raises:
        LibvirtUnavailable: libvirtd does not answer. DomainNotFound / StateError: no such
            running domain. ConfigError: it cannot be taken over (what to change is named;
            nothing was changed on it). QmpError / QmpTimeout: the migration failed (the
            domain runs on).
    """
    started = time.monotonic()
    conn = await asyncio.to_thread(connect, uri)
    try:
        dom, xml = await asyncio.to_thread(_running_domain, conn, domain)
        running = inspect_domain(xml)
        loop = asyncio.get_running_loop()
        monitor = LibvirtMonitor(conn, dom, loop)
        process = DomainProcess(conn, dom, loop)
        try:
            await process.learn_pid(monitor)
        except ColoppError as exc:
            raise LibvirtError(f"domain {domain} does not answer QMP: {exc}") from exc
        assert process.pid is not None
        side, reply = await take_over_from(
            runtime, state_dir, name, request, monitor, running, process.pid, started
        )
        await asyncio.to_thread(_destroy, dom)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            await asyncio.to_thread(conn.close)
    return side, reply | {"domain": domain}
