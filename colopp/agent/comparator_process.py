"""colopp's comparator as a child of the primary's agent: argv, start, supervise, stop.
(The secondary's ingress relay, :mod:`colopp.agent.comparing`, is supervised the same way.)

If the comparator dies, the primary's output has nowhere to go (QEMU drops frames written
to an unconnected chardev), so the agent restarts it at once and forces a checkpoint: the
secondary becomes a copy of the primary again and the new comparator starts from a clean
epoch. Each restart is counted and reported in the agent's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from colopp.agent.replies import ComparatorStatus
from colopp.compare.young_send import YOUNG_PORT_OFFSET
from colopp.domain import SideSpec
from colopp.errors import QemuStartError

log = logging.getLogger(__name__)


def comparator_argv(
    side: SideSpec,
    checkpoint_delay_ms: int,
    python: str = sys.executable,
    *,
    vnet_hdr: bool = False,
    mirror_batched: bool = True,
) -> list[str]:
    """The comparator's command line for one primary side (pure); ``vnet_hdr``: its frames
    carry the tap's virtio-net header (:attr:`colopp.domain.VmSpec.vnet_hdr`);
    ``mirror_batched``: QEMU's ``mirror0`` is the unix socket of ``mirror-batched.conf``
    (False for a QEMU started before colopp had the mirror process: its ``mirror0`` is
    still its own TCP server, see :func:`mirror_batched`)."""
    argv = [
        python,
        "-m",
        "colopp.compare",
        "--primary-in",
        f"unix:{side.compare0_socket}",
        "--outdev",
        f"unix:{side.compare_out_socket}",
        "--secondary-in",
        f"listen:tcp:{side.local_repl_ip}:{side.ports.compare}",
        "--qmp",
        str(side.qmp_compare_socket),
        "--checkpoint-delay",
        str(checkpoint_delay_ms),
        "--status",
        str(side.run_dir / "compare.json"),
        # Young connections' offsets go to the secondary host (docs/rewrite.md).
        "--young-to",
        f"{side.peer_repl_ip}:{side.ports.compare + YOUNG_PORT_OFFSET}",
    ]
    if mirror_batched:
        # QEMU's mirror0 is a unix socket (mirror-batched.conf); the comparator's child
        # sends it on to the secondary host in batches (python -m colopp.mirror).
        argv += ["--mirror-from", f"unix:{side.mirror_socket}"]
        argv += ["--mirror-to", f"listen:tcp:{side.local_repl_ip}:{side.ports.mirror}"]
        argv += ["--mirror-status", str(side.mirror_status), "--mirror-allow", side.peer_repl_ip]
    if vnet_hdr:
        argv.append("--vnet-hdr")
    options = side.options
    if options.semiactive and options.prerelease is not None:
        # Early answers are off the clients' path: the secondary may lag far behind them,
        # while an answer that must wait (a write's) gets a checkpoint soon.
        argv += ["--max-lag-ms", str(SEMIACTIVE_PRERELEASE_MAX_LAG_MS)]
        argv += ["--max-lag-early-ms", str(SEMIACTIVE_MAX_LAG_EARLY_MS)]
    elif options.semiactive:
        argv += ["--max-lag-ms", str(SEMIACTIVE_MAX_LAG_MS)]
    if options.prerelease is not None:
        argv.append(f"--prerelease={options.prerelease}")
        for prefix in options.read_prefixes:
            argv += ["--prerelease-read-prefix", prefix]
        for port in options.resp_ports:
            argv += ["--prerelease-resp-port", str(port)]
        if options.prerelease_scope != "global":
            argv += ["--prerelease-scope", options.prerelease_scope]
        if options.prerelease_rearm_ms is not None and options.client_frames:
            argv += ["--prerelease-rearm-ms", str(options.prerelease_rearm_ms)]
        if options.client_frames:
            argv += ["--client-in", f"unix:{side.client_socket}"]
        if options.host_receipts:  # the secondary host's receipts ride on its output
            argv.append("--host-receipts")
    return argv


def mirror_batched(side: SideSpec) -> bool:
    """Does this primary QEMU's ``mirror0`` listen on the unix socket the mirror process
    reads? QEMU creates it as it starts (or at ``chardev-add``); a QEMU that an agent
    upgraded since started has its own TCP server there instead, and keeps it."""
    return side.mirror_socket.is_socket()


#: A semi-active secondary may lag (it has less CPU); when a primary frame has waited this
#: long for it, a checkpoint lets it skip its backlog (issue 15: bound the lag).
SEMIACTIVE_MAX_LAG_MS = 250
#: With pre-release: an answer that did not leave early (a write's) waits at most this long
#: for a lagging secondary before a checkpoint lets it skip its backlog...
SEMIACTIVE_PRERELEASE_MAX_LAG_MS = 40
#: ...while answers that left early wait for it up to this long (below the comparator's
#: compare timeout, 3 s; the periodic checkpoint usually comes first).
SEMIACTIVE_MAX_LAG_EARLY_MS = 1500


class ComparatorProcess:
    """Runs and supervises one comparator process."""

    def __init__(
        self,
        argv: list[str],
        run_dir: Path,
        on_restart: Callable[[], Awaitable[None]],
        should_run: Callable[[], bool] = lambda: True,
        name: str = "compare",
    ) -> None:
        self.argv = argv
        self.run_dir = run_dir
        self.name = name
        self.status_path = run_dir / f"{name}.json"
        self.log_path = run_dir / f"{name}.log"
        self.restarts = 0
        self._on_restart = on_restart
        self._should_run = should_run
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Start the process and its supervisor.

        Raises:
            QemuStartError: the comparator cannot be executed.
        """
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise())

    async def _spawn(self) -> None:
        logfile = self.log_path.open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
                start_new_session=True,
            )
        except OSError as exc:
            raise QemuStartError(f"cannot start the {self.name} process: {exc.strerror}") from exc
        finally:
            logfile.close()

    async def _supervise(self) -> None:
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._stopping or not self._should_run():
                return  # QEMU is gone too: nothing to compare
            self.restarts += 1
            log.warning("%s process exited (%s); restart %d", self.name, code, self.restarts)
            await self._spawn()
            with contextlib.suppress(Exception):
                await self._on_restart()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def status(self) -> ComparatorStatus:
        """For the agent's status: pid, alive, restarts and the last counters."""
        return {
            "pid": self.pid,
            "alive": self.alive(),
            "restarts": self.restarts,
            "counters": self.counters(),
        }

    def counters(self) -> dict[str, Any]:
        """The comparator's last status snapshot (empty when none was written yet)."""
        try:
            data = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    async def stop(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL; never raises."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()

    def finish(self, signum: int) -> None:
        """Ask the process to finish by itself (``signum``), without a restart after."""
        self._stopping = True
        self.signal(signum)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process if it runs; never raises."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signum)

    def kill(self) -> None:
        """Fault injection: SIGKILL the comparator (the supervisor restarts it)."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGKILL)
