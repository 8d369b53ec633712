"""VM backends behind one interface: QEMU started by the agent, or a libvirt domain.

The agent drives a side through two objects: a :class:`VmProcess` (is it alive, its pid,
kill/stop it) and a :class:`QmpChannel` (QMP commands, HMP, events). The QEMU-direct
backend is :class:`colopp.qemu.qemu_process.QemuProcess` + :class:`colopp.qmp.monitor.Monitor`;
the libvirt backend is :mod:`colopp.virt.libvirt_domain` + :mod:`colopp.virt.libvirt_monitor`
(imported only when a protection asks for it: libvirt-python stays optional).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol

from qemu.qmp import EventListener

from colopp.domain import Backend
from colopp.errors import QemuStartError

__all__ = ["Backend", "QmpChannel", "VmProcess"]  # Backend: defined in colopp.domain


class VmProcess(Protocol):
    """A side's running QEMU, whoever started it."""

    exited: asyncio.Event
    returncode: int | None

    @property
    def pid(self) -> int | None: ...

    def alive(self) -> bool: ...

    def kill(self, sig: int = ...) -> None: ...

    async def stop(self, grace: float = ...) -> None: ...

    def stderr_tail(self, limit: int = ...) -> str: ...

    def start_error(self, what: str) -> QemuStartError: ...


class QmpChannel(Protocol):
    """QMP of a side's QEMU: a socket of colopp's own, or libvirt's passthrough."""

    async def execute(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        timeout: float | None = None,
        *,
        oob: bool = False,
    ) -> Any: ...

    async def hmp(self, line: str, timeout: float | None = None) -> str: ...

    def listen(self, names: Iterable[str] | None = None) -> EventListener: ...

    def unlisten(self, listener: EventListener) -> None: ...

    async def close(self) -> None: ...
