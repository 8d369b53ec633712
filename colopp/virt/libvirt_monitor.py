"""QMP through libvirt: the same ``execute``/``hmp``/``listen`` shape as
:class:`colopp.qmp.monitor.Monitor`, over ``libvirt_qemu.qemuMonitorCommand`` and libvirt's
QEMU monitor events.

``libvirtError`` never leaves this module: a failed command becomes :class:`QmpError` naming
the command, a slow one :class:`QmpTimeout`. Events arrive on libvirt's event-loop thread;
the callbacks only hand them to the asyncio loop (``call_soon_threadsafe``). libvirt has no
out-of-band execution: ``oob`` commands run in band.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable
from typing import Any

import libvirt
import libvirt_qemu
from qemu.qmp import EventListener
from qemu.qmp.message import Message

from colopp.errors import QmpError, QmpTimeout
from colopp.qmp.monitor import check_hmp_output, hmp_command

DEFAULT_TIMEOUT = 10.0
_HMP = 1  # VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP


class LibvirtMonitor:
    """QMP of one running libvirt domain."""

    def __init__(
        self, conn: Any, domain: Any, loop: asyncio.AbstractEventLoop, timeout: float = 10.0
    ) -> None:
        self.conn = conn
        self.domain = domain
        self.name = str(domain.name())
        self.timeout = timeout
        self._loop = loop
        self._listeners: list[EventListener] = []
        self._callback_id: int | None = None
        self._deliveries: set[asyncio.Task[None]] = set()

    def _command(self, payload: str, flags: int) -> str:
        return str(libvirt_qemu.qemuMonitorCommand(self.domain, payload, flags))

    async def _call(self, command: str, payload: str, flags: int, timeout: float | None) -> str:
        wait = timeout if timeout is not None else self.timeout
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._command, payload, flags), wait)
        except TimeoutError as exc:
            raise QmpTimeout(command, f"no answer through libvirt in {wait:.1f}s") from exc
        except libvirt.libvirtError as exc:
            raise QmpError(command, f"libvirt: {exc.get_error_message()}") from exc

    async def execute(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        timeout: float | None = None,
        *,
        oob: bool = False,
    ) -> Any:
        """Run one QMP command through libvirt and return its ``return`` value.

        Raises:
            QmpError: QEMU answered with an error, or libvirt failed.
            QmpTimeout: no answer within the timeout.
        """
        del oob  # libvirt does not negotiate out-of-band execution
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        reply = json.loads(await self._call(command, json.dumps(message), 0, timeout))
        if "error" in reply:
            error = reply["error"]
            raise QmpError(command, str(error.get("desc")), str(error.get("class")))
        return reply.get("return")

    async def hmp(self, line: str, timeout: float | None = None) -> str:
        """Run a human-monitor command (libvirt's HMP flag); errors are text, so check it.

        Raises:
            QmpError: the HMP output reports an error, or libvirt failed.
        """
        text = await self._call(hmp_command(line), line, _HMP, timeout)
        return check_hmp_output(line, text)

    # ----- events (libvirt's event-loop thread → asyncio loop) -----------------------
    def _on_event(
        self,
        _conn: Any,
        _dom: Any,
        event: str,
        seconds: int,
        micros: int,
        details: str | None,
        _opaque: Any,
    ) -> None:
        data = json.loads(details) if details else {}
        message = Message(
            {
                "event": event,
                "data": data,
                "timestamp": {"seconds": seconds, "microseconds": micros},
            }
        )
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            self._loop.call_soon_threadsafe(self._dispatch, message)

    def _dispatch(self, message: Message) -> None:
        for listener in list(self._listeners):
            if listener.accept(message):
                task = self._loop.create_task(listener.put(message))
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)

    def listen(self, names: Iterable[str] | None = None) -> EventListener:
        """Register and return an event listener (all events when names is None).

        Raises:
            QmpError: libvirt refused the event registration.
        """
        if self._callback_id is None:
            try:
                self._callback_id = int(
                    libvirt_qemu.qemuMonitorEventRegister(
                        self.conn, self.domain, None, self._on_event, None, 0
                    )
                )
            except libvirt.libvirtError as exc:
                raise QmpError("events", f"libvirt: {exc.get_error_message()}") from exc
        listener = EventListener(names=list(names) if names is not None else None)
        self._listeners.append(listener)
        return listener

    def unlisten(self, listener: EventListener) -> None:
        """Remove a listener made by :meth:`listen`."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    async def close(self) -> None:
        """Stop receiving events; never raises."""
        self._listeners.clear()
        callback, self._callback_id = self._callback_id, None
        if callback is not None:
            with contextlib.suppress(libvirt.libvirtError):
                libvirt_qemu.qemuMonitorEventDeregister(self.conn, callback)
