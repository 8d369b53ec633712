"""One local QEMU process: start it, watch it exit, read its serial console."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from colopp.errors import GuestError, QemuStartError
from colopp.process import die_with_parent

if TYPE_CHECKING:
    from colopp.virt import VmProcess

READY_LINE = b"COLOPP-GUEST-READY"


class QemuProcess:
    """A QEMU child of the agent, with its stderr kept in ``run_dir/qemu.stderr``."""

    def __init__(
        self, argv: list[str], env: dict[str, str], run_dir: Path, *, probe: bool = False
    ) -> None:
        self.argv = argv
        self.probe = probe  # a short-lived probe dies with its parent; a VM's QEMU never does
        self.env = env
        self.run_dir = run_dir
        self.stderr_path = run_dir / "qemu.stderr"
        self._proc: asyncio.subprocess.Process | None = None
        self.exited = asyncio.Event()
        self.returncode: int | None = None
        self._waiter: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self._proc is not None and not self.exited.is_set()

    async def start(self) -> None:
        """Spawn QEMU (sockets it creates are 0600: the agent runs with umask 077).

        Raises:
            QemuStartError: the binary cannot be executed.
        """
        stderr = self.stderr_path.open("wb")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                env={**os.environ, **self.env},
                start_new_session=True,
                preexec_fn=die_with_parent if self.probe else None,
            )
        except OSError as exc:
            raise QemuStartError(f"cannot execute {self.argv[0]}: {exc.strerror}") from exc
        finally:
            stderr.close()
        self._waiter = asyncio.create_task(self._wait())

    async def _wait(self) -> None:
        assert self._proc is not None
        self.returncode = await self._proc.wait()
        self.exited.set()

    def stderr_tail(self, limit: int = 800) -> str:
        """The end of QEMU's stderr, for error messages."""
        try:
            return self.stderr_path.read_bytes()[-limit:].decode(errors="replace").strip()
        except OSError:
            return ""

    def start_error(self, what: str) -> QemuStartError:
        """An error that says why QEMU is gone, with its own words."""
        code = self.returncode
        tail = self.stderr_tail()
        return QemuStartError(f"QEMU {what} (exit {code}): {tail or 'no output'}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` if the process still runs."""
        if self._proc is not None and not self.exited.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, sig)

    async def stop(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; waits for the exit."""
        if self._proc is None or self.exited.is_set():
            return
        self.kill(signal.SIGCONT)
        self.kill(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.exited.wait(), grace)
        except TimeoutError:
            self.kill(signal.SIGKILL)
            await asyncio.wait_for(self.exited.wait(), 10)


#: Earlier launches' serial logs a side keeps (``serial.log.1`` the newest of them).
KEPT_SERIAL_LOGS = 4


def keep_previous_serial_log(serial_log: Path, keep: int = KEPT_SERIAL_LOGS) -> None:
    """Before a launch that writes ``serial_log`` afresh: the previous launch's log becomes
    ``serial.log.1`` (older ones shift up, the oldest beyond ``keep`` is dropped), so a
    guest's console from before a re-launch on the same host survives it (a promoted
    guest's oops, then a re-protection, session 23). Never raises."""
    with contextlib.suppress(OSError):
        if not serial_log.exists():
            return
        name = serial_log.name
        serial_log.with_name(f"{name}.{keep}").unlink(missing_ok=True)
        for index in range(keep - 1, 0, -1):
            older = serial_log.with_name(f"{name}.{index}")
            if older.exists():
                older.rename(serial_log.with_name(f"{name}.{index + 1}"))
        serial_log.rename(serial_log.with_name(f"{name}.1"))


async def wait_for_serial(
    serial_log: Path, marker: bytes, timeout: float, process: VmProcess | None = None
) -> float:
    """Wait until ``marker`` appears in the serial log; returns seconds waited.

    Raises:
        GuestError: not seen in time (the log's tail is quoted), or QEMU exited.
    """
    start = time.monotonic()
    offset = 0
    window = b""
    while True:
        try:
            with serial_log.open("rb") as log:
                log.seek(offset)
                chunk = log.read()
        except FileNotFoundError:
            chunk = b""
        offset += len(chunk)
        window = (window + chunk)[-4096:]
        if marker in window:
            return time.monotonic() - start
        if process is not None and process.exited.is_set():
            raise process.start_error("exited while the guest was booting")
        if time.monotonic() - start > timeout:
            tail = window[-400:].decode(errors="replace").strip()
            raise GuestError(
                f"guest did not print {marker.decode()} within {timeout:.0f}s; "
                f"serial log {serial_log} ends: {tail or '(empty)'}"
            )
        await asyncio.sleep(0.1)  # the serial log is a plain file: poll it
