"""Forcing checkpoints and seeing them finish, over the comparator's own QMP monitor.

Setting ``x-checkpoint-delay`` (``migrate-set-parameters``) while the primary is in COLO state
makes QEMU checkpoint at once; the comparator re-sets the configured periodic delay so the
period is unchanged. A checkpoint shows on the primary's QMP as ``STOP`` then ``RESUME``; at
``RESUME`` the SVM is a copy of the PVM and the core is told so (``checkpoint_done``).

Losing the monitor is reported (``on_lost``), never raised out of :meth:`close`: a comparator
that cannot checkpoint must say so, and the shell exits with a code of its own for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from qemu.qmp import EventListener, ExecuteError, QMPClient, QMPError, Runstate

from colopp.errors import QmpError, QmpTimeout

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
        self._on_stop = on_stop
        self.timeout = timeout
        self.delay_ms = delay_ms
        self._on_done = on_checkpoint_done
        self._qmp = QMPClient("colopp-compare")
        self._listener = EventListener(("STOP", "RESUME"))
        self._events: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._on_lost = on_lost
        self._closing = False

    @property
    def connected(self) -> bool:
        """True while the monitor connection is up."""
        return self._qmp.runstate == Runstate.RUNNING

    async def start(self, connect_timeout: float) -> None:
        """Connect (retrying until ``connect_timeout``), learn the delay, watch STOP/RESUME.

        Raises QmpTimeout when the monitor never answers, QmpError when QEMU refuses.
        """
        deadline = asyncio.get_running_loop().time() + connect_timeout
        while True:
            try:
                await asyncio.wait_for(self._qmp.connect(self.socket_path), self.timeout)
                break
            except (QMPError, OSError, EOFError, TimeoutError) as exc:
                if asyncio.get_running_loop().time() >= deadline:
                    raise QmpTimeout("qmp_capabilities", f"{self.socket_path}: {exc}") from exc
                await asyncio.sleep(0.1)
        self._qmp.register_listener(self._listener)
        if self.delay_ms is None:
            params = await self._execute("query-migrate-parameters", None)
            self.delay_ms = int(params.get("x-checkpoint-delay", 20000))
        self._events = asyncio.create_task(self._watch_checkpoints())
        self._watch = asyncio.create_task(self._watch_connection())

    async def request(self, reason: str) -> None:
        """Force a checkpoint by re-setting ``x-checkpoint-delay``."""
        log.info("forcing checkpoint: %s", reason)
        await self._execute("migrate-set-parameters", {"x-checkpoint-delay": self.delay_ms})

    async def close(self) -> None:
        """Stop watching events and disconnect. Never raises: a monitor that hung up
        (``EOFError`` from the reader) or broke is gone either way."""
        self._closing = True
        for task in (self._watch, self._events):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(QMPError, OSError, EOFError, TimeoutError):
            await asyncio.wait_for(self._qmp.disconnect(), self.timeout)

    async def _execute(self, command: str, args: dict[str, Any] | None) -> dict[str, Any]:
        try:
            reply = await asyncio.wait_for(self._qmp.execute(command, args), self.timeout)
        except TimeoutError as exc:
            raise QmpTimeout(command, f"no reply in {self.timeout} s") from exc
        except ExecuteError as exc:
            raise QmpError(command, str(exc)) from exc
        except (QMPError, OSError, EOFError) as exc:
            raise QmpError(command, f"{type(exc).__name__}: {exc}") from exc
        return reply if isinstance(reply, dict) else {}

    async def _watch_connection(self) -> None:
        while self._qmp.runstate == Runstate.RUNNING:
            await self._qmp.runstate_changed()
        if not self._closing:
            log.error("QMP monitor %s lost", self.socket_path)
            if self._on_lost is not None:
                self._on_lost()

    async def _watch_checkpoints(self) -> None:
        stopped = False
        async for event in self._listener:
            name = event["event"]
            if name == "STOP":
                stopped = True
                if self._on_stop is not None:
                    self._on_stop()
            elif name == "RESUME" and stopped:
                stopped = False
                self._on_done()
