"""Forcing checkpoints and seeing them finish, over the comparator's own QMP monitor.

Setting ``x-checkpoint-delay`` (``migrate-set-parameters``) while the primary is in COLO state
makes QEMU checkpoint at once; the comparator re-sets the configured periodic delay so the
period is unchanged. A checkpoint shows on the primary's QMP as ``STOP`` then ``RESUME``; at
``RESUME`` the SVM is a copy of the PVM and the core is told so (``checkpoint_done``).

QMP goes through :class:`colopp.qmp.monitor.Monitor`, the project's one QMP boundary (its
errors become :class:`~colopp.errors.QmpError` / :class:`~colopp.errors.QmpTimeout`).
Losing the monitor is reported (``on_lost``), never raised out of :meth:`close`: a comparator
that cannot checkpoint must say so, and the shell exits with a code of its own for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from qemu.qmp import EventListener

from colopp.qmp.monitor import Monitor

log = logging.getLogger(__name__)


class CheckpointTrigger(Protocol):
    """Something that can ask QEMU for a checkpoint."""

    async def request(self, reason: str) -> None:
        """Ask for a checkpoint now. Raises QmpError / QmpTimeout when QEMU refuses or hangs."""
        ...


class LoggingTrigger:
    """No QEMU (tests, dry runs): checkpoint requests are only logged and counted."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def request(self, reason: str) -> None:
        """Record the request."""
        self.requests.append(reason)
        log.info("checkpoint requested (no QMP): %s", reason)


class QmpCheckpointLink:
    """The comparator's QMP client on the primary QEMU.

    ``on_checkpoint_done`` is called (on the event loop) at every STOP -> RESUME pair,
    ``on_stop`` (if given) at every STOP: the VM is stopped, its output so far is written, and
    ``on_lost`` (if given) once when the monitor connection ends without :meth:`close`.
    """

    def __init__(
        self,
        socket_path: str,
        on_checkpoint_done: Callable[[], None],
        *,
        timeout: float = 5.0,
        delay_ms: int | None = None,
        on_stop: Callable[[], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.delay_ms = delay_ms
        self._on_done = on_checkpoint_done
        self._on_stop = on_stop
        self._on_lost = on_lost
        self._monitor = Monitor("colopp-compare", Path(socket_path), timeout)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def connected(self) -> bool:
        """True while the monitor connection is up."""
        return self._monitor.connected

    async def start(self, connect_timeout: float) -> None:
        """Connect (retrying until ``connect_timeout``), learn the delay, watch STOP/RESUME.

        Raises QmpTimeout when the monitor never answers, QmpError when QEMU refuses.
        """
        await self._monitor.connect(within=connect_timeout)
        listener = self._monitor.listen(("STOP", "RESUME"))
        if self.delay_ms is None:
            params = await self._monitor.execute("query-migrate-parameters")
            self.delay_ms = int(params.get("x-checkpoint-delay", 20000))
        self._tasks = [
            asyncio.create_task(self._watch_checkpoints(listener)),
            asyncio.create_task(self._watch_connection()),
        ]

    async def request(self, reason: str) -> None:
        """Force a checkpoint by re-setting ``x-checkpoint-delay``.

        Raises QmpError (refused, or the monitor is gone) or QmpTimeout (no answer).
        """
        log.info("forcing checkpoint: %s", reason)
        await self._monitor.execute("migrate-set-parameters", {"x-checkpoint-delay": self.delay_ms})

    async def close(self) -> None:
        """Stop watching events and disconnect. Never raises: a monitor that hung up
        (``EOFError`` from the reader) or broke is gone either way."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._monitor.close()

    async def _watch_connection(self) -> None:
        await self._monitor.wait_disconnected()
        if not self._closing:
            log.error("QMP monitor %s lost", self.socket_path)
            if self._on_lost is not None:
                self._on_lost()

    async def _watch_checkpoints(self, listener: EventListener) -> None:
        stopped = False
        async for event in listener:
            name = event["event"]
            if name == "STOP":
                stopped = True
                if self._on_stop is not None:
                    self._on_stop()
            elif name == "RESUME" and stopped:
                stopped = False
                self._on_done()
