"""One QMP monitor connection: timeouts everywhere, ``ExecuteError`` converted once.

qemu.qmp's errors never leave this module: a failed command becomes
:class:`colopp.errors.QmpError` naming the command, a slow one :class:`QmpTimeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from qemu.qmp import EventListener, ExecuteError, QMPClient, QMPError, Runstate

from colopp.errors import HMP_ERROR_CLASS, QmpError, QmpTimeout
from colopp.retry import RetryExhausted, connect_with_retry

DEFAULT_TIMEOUT = 10.0


def hmp_command(line: str) -> str:
    """How a QmpError names the HMP command ``line`` (its first word)."""
    return f"human-monitor-command {line.split(maxsplit=1)[0]}"


def check_hmp_output(line: str, text: str) -> str:
    """HMP reports errors only as text: return ``text``, or raise when it reads as one.

    Raises:
        QmpError: with ``error_class`` :data:`~colopp.errors.HMP_ERROR_CLASS`.
    """
    lowered = text.lower()
    if text.strip() and ("error" in lowered or "could not" in lowered or "failed" in lowered):
        raise QmpError(hmp_command(line), text.strip(), HMP_ERROR_CLASS)
    return text


Event = dict[str, Any]


class Monitor:
    """A connected QMP client for one unix socket."""

    def __init__(self, name: str, socket_path: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.name = name
        self.socket_path = socket_path
        self.timeout = timeout
        self._client = QMPClient(name)

    async def connect(self, within: float = 10.0, alive: Callable[[], bool] | None = None) -> None:
        """Connect, retrying until the socket accepts or ``within`` seconds pass.

        Raises:
            QmpTimeout: the socket never accepted (``alive`` returning False stops early).
        """

        def exited() -> None:
            if alive is not None and not alive():
                raise QmpError("connect", f"QEMU exited before {self.socket_path} accepted")

        async def attempt() -> None:
            try:
                await asyncio.wait_for(self._client.connect(str(self.socket_path)), self.timeout)
            except (QMPError, OSError, TimeoutError):
                self._client = QMPClient(self.name)  # a failed client cannot connect again
                raise

        try:
            await connect_with_retry(
                attempt,
                within,
                retry_on=(QMPError, OSError, TimeoutError),
                pause=0.05,
                give_up=exited,
            )
        except RetryExhausted as exc:
            raise QmpTimeout(
                "connect", f"{self.socket_path} did not accept in {within:.0f}s: {exc.last}"
            ) from exc.last

    async def execute(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        timeout: float | None = None,
        *,
        oob: bool = False,
    ) -> Any:
        """Run one QMP command and return its ``return`` value.

        Raises:
            QmpError: QEMU answered with an error, or the connection broke.
            QmpTimeout: no answer within the timeout.
        """
        wait = timeout if timeout is not None else self.timeout
        try:
            return await asyncio.wait_for(self._client.execute(command, arguments, oob=oob), wait)
        except ExecuteError as exc:
            raise QmpError(command, str(exc), exc.error_class) from exc
        except TimeoutError as exc:
            raise QmpTimeout(command, f"no answer in {wait:.1f}s") from exc
        except (QMPError, OSError, EOFError) as exc:
            raise QmpError(command, f"connection: {exc!r}") from exc

    async def hmp(self, line: str, timeout: float | None = None) -> str:
        """Run a human-monitor command; HMP reports errors as text, so check it.

        Raises:
            QmpError: the HMP output reports an error.
        """
        out = await self.execute("human-monitor-command", {"command-line": line}, timeout)
        return check_hmp_output(line, str(out or ""))

    def listen(self, names: Iterable[str] | None = None) -> EventListener:
        """Register and return an event listener (all events when names is None)."""
        listener = EventListener(names=list(names) if names is not None else None)
        self._client.register_listener(listener)
        return listener

    def unlisten(self, listener: EventListener) -> None:
        """Remove a listener made by :meth:`listen`."""
        self._client.remove_listener(listener)

    @property
    def connected(self) -> bool:
        """True while the connection is up."""
        return self._client.runstate == Runstate.RUNNING

    async def wait_disconnected(self) -> None:
        """Return once the connection is no longer up (QEMU hung up, or it broke)."""
        while self._client.runstate == Runstate.RUNNING:
            await self._client.runstate_changed()

    async def close(self) -> None:
        """Disconnect; never raises."""
        with contextlib.suppress(QMPError, OSError, TimeoutError, EOFError):
            await asyncio.wait_for(self._client.disconnect(), 2.0)


async def next_event(listener: EventListener, timeout: float, what: str) -> Event:
    """The next event from ``listener``.

    Raises:
        QmpTimeout: none arrived in time (``what`` names the wait).
    """
    try:
        message = await asyncio.wait_for(listener.get(), timeout)
    except TimeoutError as exc:
        raise QmpTimeout(what, f"no event in {timeout:.1f}s") from exc
    return dict(message)
