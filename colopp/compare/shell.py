"""The comparator's asyncio socket shell: QEMU framing in, core decisions out. Kept thin.

Data paths (see :mod:`~colopp.compare.addresses` for the address syntax):

- ``primary_in``: the primary QEMU's filter-redirector (queue=rx, outdev=compare0) writes the
  primary guest's output to a chardev *server*; the shell connects to it (retrying until it
  exists, up to ``connect_timeout``).
- ``outdev``: the primary QEMU's filter-redirector (indev=compare_out) reads released frames
  from a chardev *server*; the shell connects to it and writes QEMU-framed frames.
- ``secondary_in``: the secondary host's filter-redirector connects to the comparator
  (chardev client with ``reconnect-ms``); the shell listens. A reconnect starts a fresh stream.
- ``client_in`` (optional; the read pre-release rule): the primary QEMU's filter-mirror
  (queue=tx, outdev=client0) copies the guest's input to a chardev server; the shell
  connects. QEMU writes each copy before the guest sees the frame, so the shell drains this
  socket before it decides on any primary output: every request that output can answer
  has been seen. It is read only when the shell is awake anyway (any frames read), at each
  tick and at a checkpoint's STOP, not on readiness
  (:class:`~colopp.compare.inputs.ClientFrames`).

Checkpoints go through a :class:`~colopp.compare.checkpoint.CheckpointTrigger` (QMP
``x-checkpoint-delay``, or only counted without ``--qmp``). The core learns that a checkpoint
finished from the QMP link (STOP -> RESUME) or, for tests and manual use, from SIGUSR1.
SIGTERM / SIGINT stop the shell cleanly; the status file is written a last time.

Exit codes (:func:`ComparatorShell.run`): :data:`EXIT_OK` on SIGTERM/SIGINT or :meth:`stop`,
:data:`EXIT_PATH_LOST` when primary_in or outdev closed, :data:`EXIT_QMP_LOST` when the QMP
monitor was lost. Without its monitor the comparator can neither force a checkpoint nor see
one end, so it can no longer tell the secondary's epochs apart: from that moment it releases
nothing (frames read are dropped and counted in ``qmp_lost_dropped_frames``, so QEMU never
blocks on a full socket), says so in its status (``shell.qmp`` false) and exits
:data:`EXIT_QMP_LOST` :data:`QMP_LOST_GRACE_S` later, unless SIGTERM (0) or a lost path (3)
ends it first; its supervisor restarts it and forces a checkpoint. Every exit writes the
final status and removes the listen sockets, whatever failed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colopp.compare.addresses import Endpoint
from colopp.compare.checkpoint import CheckpointTrigger, LoggingTrigger, QmpCheckpointLink
from colopp.compare.config import CompareConfig, PreReleaseConfig
from colopp.compare.connect import connect_unix, open_endpoint
from colopp.compare.core import Comparator
from colopp.compare.framing import (
    LENGTH_HEADER,
    VNET_LENGTH_HEADER,
    DecodedFrame,
    encode_frames,
)
from colopp.compare.inputs import ClientFrames, FrameInput, OutdevConnection
from colopp.compare.prerelease import build_policy
from colopp.compare.receipts import decode_receipts, is_receipt_frame
from colopp.compare.status import write_status
from colopp.compare.verdict import Action, Checkpoint, PreRelease, Release
from colopp.compare.young_send import YoungForwarder
from colopp.errors import ColoppError

log = logging.getLogger(__name__)

EXIT_OK = 0
#: primary_in or outdev closed: the primary QEMU (or its filters) went away.
EXIT_PATH_LOST = 3
#: The QMP monitor closed: no checkpoint can be forced or seen any more.
EXIT_QMP_LOST = 4
#: Seconds between losing the QMP monitor and exiting EXIT_QMP_LOST (a SIGTERM or a lost path
#: within it gives its own exit code).
QMP_LOST_GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class ShellOptions:
    """Everything the shell needs; built by ``python -m colopp.compare``."""

    primary_in: Endpoint
    secondary_in: Endpoint
    outdev: Endpoint
    client_in: Endpoint | None = None
    vnet_hdr: bool = False
    qmp: str | None = None
    qmp_timeout: float = 5.0
    checkpoint_delay_ms: int | None = None
    status: Path | None = None
    status_interval: float = 0.5
    tick_interval: float = 0.1
    connect_timeout: float = 30.0
    config: CompareConfig = field(default_factory=CompareConfig)
    prerelease: PreReleaseConfig = field(default_factory=PreReleaseConfig)
    young_to: tuple[str, int] | None = None  # secondary host's young-offset listener
    host_receipts: bool = False  # the secondary host's receipts on secondary_in (receipts.py)


class ComparatorShell:
    """Runs one comparator: sockets, timers, checkpoint requests, status file."""

    def __init__(
        self,
        options: ShellOptions,
        trigger: CheckpointTrigger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.core = Comparator(options.config, build_policy(options.prerelease))
        self.clock = clock
        self.trigger: CheckpointTrigger = trigger or LoggingTrigger()
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "primary_framing_errors",
                "secondary_framing_errors",
                "outdev_frames",
                "outdev_bytes",
                "outdev_dropped_writes",
                "checkpoint_requests_sent",
                "checkpoint_request_errors",
                "checkpoints_started",
                "checkpoints_observed",
                "secondary_connections",
                "client_framing_errors",
                "stop_drained_bytes",
                "qmp_lost_dropped_frames",
                "young_held_flushes",
                "bad_receipt_frames",
                "primary_reads",
                "secondary_reads",
                "client_drains",
            ),
            0,
        )
        self._client: ClientFrames | None = None
        self._inputs: set[FrameInput] = set()
        self._out: asyncio.Transport | None = None
        self._pending: list[bytes] = []
        self._stopped = asyncio.Event()
        self._exit_code = EXIT_OK
        self._request_task: asyncio.Task[None] | None = None
        self._servers: list[asyncio.Server] = []
        self._qmp: QmpCheckpointLink | None = None
        self.young = YoungForwarder(*options.young_to) if options.young_to else None
        if self.young is not None:
            self.young.on_settled = self._flush  # the release gate opened
        self._hold_timer: asyncio.TimerHandle | None = None
        # The QMP monitor was lost: no checkpoint can be seen, so nothing may leave.
        self._blind = False

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT, :meth:`stop`, or a lost primary path; return exit code.

        Raises ColoppError when a socket or the QMP monitor cannot be reached in time.
        """
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        timers: list[asyncio.Task[None]] = []
        try:
            # SIGTERM while QEMU's sockets are still awaited ends the wait at once.
            startup = asyncio.create_task(self._start())
            stopping = asyncio.create_task(self._stopped.wait())
            await asyncio.wait((startup, stopping), return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not startup.done():
                startup.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await startup
                return self._exit_code
            startup.result()  # raises what startup raised
            timers = [asyncio.create_task(self._ticker()), asyncio.create_task(self._reporter())]
            await self._stopped.wait()
        finally:
            await self._shutdown(timers)
        return self._exit_code

    async def _start(self) -> None:
        """Open every socket and the QMP monitor. Raises ColoppError when one cannot be
        reached in time."""
        await self._open(self.options.secondary_in, lambda: FrameInput(self, "secondary"))
        await self._open(self.options.outdev, lambda: OutdevConnection(self))
        if self.options.client_in is not None:
            await self._open_client(self.options.client_in)
        await self._open(self.options.primary_in, lambda: FrameInput(self, "primary"))
        if self.options.qmp:
            self._qmp = QmpCheckpointLink(
                self.options.qmp,
                self.signal_checkpoint_done,
                timeout=self.options.qmp_timeout,
                delay_ms=self.options.checkpoint_delay_ms,
                on_stop=self.checkpoint_started,
                on_lost=self._qmp_lost,
            )
            await self._qmp.start(self.options.connect_timeout)
            self.trigger = self._qmp

    def stop(self, exit_code: int = EXIT_OK, why: str = "stop requested") -> None:
        """Ask :meth:`run` to finish (first exit code wins)."""
        if not self._stopped.is_set():
            log.info("comparator stopping: %s", why)
            self._exit_code = exit_code
            self._stopped.set()

    def _qmp_lost(self) -> None:
        log.error(
            "QMP monitor lost: nothing is released any more; exiting in %.1f s", QMP_LOST_GRACE_S
        )
        self._blind = True
        self._pending.clear()
        asyncio.get_running_loop().call_later(
            QMP_LOST_GRACE_S, self.stop, EXIT_QMP_LOST, "QMP monitor lost: cannot checkpoint"
        )

    def checkpoint_started(self) -> None:
        """The primary VM stopped for a checkpoint: everything it sent before is in our
        sockets now. Read it all before the checkpoint completes, so output produced before
        the checkpoint is flushed with it instead of waiting for secondary bytes that the
        checkpointed secondary will never send again (its state says they were sent).

        The secondary stopped before the primary did: what it sent so far is the old epoch's
        output, what it sends from now on the new epoch's (the core keeps them apart)."""
        if self._client is not None:
            self._client.drain()
        for inp in sorted(self._inputs, key=lambda i: i.side != "secondary"):
            self.stats["stop_drained_bytes"] += inp.drain()
        if self.young is not None:
            self.young.checkpoint_started()  # the young tap's epoch boundary, as the core's
        self.core.checkpoint_started(self.clock())
        self.stats["checkpoints_started"] += 1
        self._flush()

    def signal_checkpoint_done(self) -> None:
        """A checkpoint finished: release held primary output, reset comparison."""
        if self._blind:
            return
        self.stats["checkpoints_observed"] += 1
        if self.young is not None:
            self.young.checkpoint_completed()
        self._apply(self.core.checkpoint_done(self.clock()))
        self._flush()

    def status(self) -> dict[str, Any]:
        """The status document: core counters at top level plus ``shell`` socket counters."""
        snap = self.core.snapshot()
        snap["shell"] = {
            **self.stats,
            "primary_connected": any(i.side == "primary" for i in self._inputs),
            "secondary_connected": any(i.side == "secondary" for i in self._inputs),
            "outdev_connected": self._out is not None,
            "client_connected": self._client is not None and self._client.open,
            "qmp": self._qmp is not None and self._qmp.connected,
        }
        if self.young is not None:
            snap["shell"]["young"] = self.young.status()
        snap["pid"] = os.getpid()
        snap["updated_at"] = time.time()
        return snap

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, EXIT_OK, f"signal {sig.name}")
        loop.add_signal_handler(signal.SIGUSR1, self.signal_checkpoint_done)

    async def _shutdown(self, timers: list[asyncio.Task[None]]) -> None:
        # Whatever fails here, the sockets are closed and the final status is written.
        try:
            for task in [*timers, self._request_task]:
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if self._qmp is not None:
                await self._qmp.close()
            if self.young is not None:
                await self.young.close()
        finally:
            self._close_sockets()

    def _close_sockets(self) -> None:
        if self._client is not None:
            self._client.close("stopping")
        for inp in list(self._inputs):
            if inp.transport is not None:
                inp.transport.close()
        for server in self._servers:
            server.close()
        for endpoint in (self.options.primary_in, self.options.secondary_in, self.options.outdev):
            if endpoint.listen and endpoint.path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(endpoint.path)
        if self._out is not None:
            self._out.close()
        self._write_status()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                loop.remove_signal_handler(sig)

    async def _open(self, endpoint: Endpoint, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        server = await open_endpoint(endpoint, factory, self.options.connect_timeout)
        if server is not None:
            self._servers.append(server)

    async def _open_client(self, endpoint: Endpoint) -> None:
        """Connect to QEMU's client-copy chardev (a server), retrying until it exists."""
        sock = await connect_unix(endpoint, self.options.connect_timeout)
        self._client = ClientFrames(self, sock)  # drained on demand and at every tick

    # ---- data path -----------------------------------------------------------------------

    def input_opened(self, inp: FrameInput) -> None:
        self._inputs.add(inp)
        if inp.side == "secondary":
            self.stats["secondary_connections"] += 1
            self.core.forget_receipts()  # receipts of an older stream promise nothing now

    def input_closed(self, inp: FrameInput) -> None:
        self._inputs.discard(inp)
        if inp.side == "secondary":
            self.core.forget_receipts()
        if inp.side == "primary" and not self.options.primary_in.listen:
            self.stop(EXIT_PATH_LOST, "primary_in closed")

    def output_opened(self, transport: asyncio.Transport) -> None:
        self._out = transport

    def output_closed(self) -> None:
        self._out = None
        if not self.options.outdev.listen:
            self.stop(EXIT_PATH_LOST, "outdev closed")

    def pause_inputs(self, pause: bool) -> None:
        for inp in self._inputs:
            if inp.transport is not None:
                if pause:
                    inp.transport.pause_reading()
                else:
                    inp.transport.resume_reading()

    def frames_received(self, side: str, frames: list[DecodedFrame]) -> None:
        if self._blind:
            self.stats["qmp_lost_dropped_frames"] += len(frames)
            return
        if self.young is not None:
            self.young.frames(side, frames, self.clock())  # learn young offsets (gate)
        self.stats[side + "_reads"] += 1
        if side == "primary" and self._client is not None and not self.core.client_view_idle():
            # Before primary output: every request it may answer, first (safety). Not before
            # secondary output and receipts: a request seen later is offered early as soon
            # as it is seen, and a drain that finds nothing is a system call per read (a
            # bulk download reads the secondary's stream thousands of times a second). Not
            # while a write disarmed every read until the next checkpoint (an upload): the
            # copy then grants nothing, and ticks, eager reads and STOP still read it.
            self._client.drain()
        now = self.clock()
        feed = self.core.feed_primary if side == "primary" else self.core.feed_secondary
        if side == "secondary" and self.options.host_receipts:
            feed = self._secondary_or_receipts
        pending = self._pending
        append = pending.append
        vnet = self.options.vnet_hdr
        pack = LENGTH_HEADER.pack
        pack_vnet = VNET_LENGTH_HEADER.pack
        released = 0
        for data, vnet_hdr_len in frames:
            actions = feed(data, now, vnet_hdr_len)
            if not actions:
                continue
            for action in actions:
                # Hot path: frames to send (compared or early), encoded straight into the
                # write buffer.
                if type(action) is Release or type(action) is PreRelease:
                    out_frames = action.frames
                    for out in out_frames:
                        # Header and frame separately: the flush's join copies them once.
                        append(pack_vnet(len(out), action.vnet_hdr_len) if vnet else pack(len(out)))
                        append(out)
                    released += len(out_frames)
                else:
                    self._apply([action])
        self.stats["outdev_frames"] += released
        self._flush()

    def _secondary_or_receipts(
        self, frame: bytes, now: float, vnet_hdr_len: int = 0
    ) -> list[Action]:
        """With ``host_receipts``: the secondary host's receipts ride on its output stream
        (:mod:`~colopp.compare.receipts`); a malformed one is counted and ignored."""
        if not is_receipt_frame(frame, vnet_hdr_len):
            return self.core.feed_secondary(frame, now, vnet_hdr_len)
        receipts = decode_receipts(frame, vnet_hdr_len)
        if receipts is None:
            self.stats["bad_receipt_frames"] += 1
            return []
        return self.core.feed_receipts(receipts, now)

    def _apply(self, actions: list[Action]) -> None:
        vnet = self.options.vnet_hdr
        for action in actions:
            if isinstance(action, Release | PreRelease):
                self._pending.append(
                    encode_frames(action.frames, action.vnet_hdr_len, vnet_hdr=vnet)
                )
                self.stats["outdev_frames"] += len(action.frames)
            elif isinstance(action, Checkpoint):
                self._start_request(action.reason)

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._blind:
            self._pending.clear()
            return
        if self.young is not None and self.young.holding(self.clock()):
            self._hold_until_settled()
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if self._out is None:
            self.stats["outdev_dropped_writes"] += 1
            return
        self._out.write(data)
        self.stats["outdev_bytes"] += len(data)

    def _hold_until_settled(self) -> None:
        """Output waits for young offsets' acknowledgements (young_send's release gate):
        flushed by ``on_settled``, or by this timer once the hold limit passes."""
        assert self.young is not None
        self.stats["young_held_flushes"] += 1
        if self._hold_timer is None or self._hold_timer.when() < asyncio.get_running_loop().time():
            left = self.young.hold_left(self.clock()) + 0.001
            self._hold_timer = asyncio.get_running_loop().call_later(left, self._flush)

    def _start_request(self, reason: str) -> None:
        if self._request_task is not None and not self._request_task.done():
            return
        self._request_task = asyncio.create_task(self._request(reason))

    async def _request(self, reason: str) -> None:
        try:
            await self.trigger.request(reason)
            self.stats["checkpoint_requests_sent"] += 1
        except ColoppError as exc:
            # The core re-asks after checkpoint_retry; never let QMP trouble stop the data path.
            self.stats["checkpoint_request_errors"] += 1
            log.warning("checkpoint request failed: %s", exc)

    # ---- timers --------------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.options.tick_interval)
            if not self._blind:
                if self._client is not None:
                    self._client.tick()
                self._apply(self.core.tick(self.clock()))
                self._flush()

    async def _reporter(self) -> None:
        while True:
            self._write_status()
            await asyncio.sleep(self.options.status_interval)

    def _write_status(self) -> None:
        if self.options.status is None:
            return
        try:
            write_status(self.options.status, self.status())
        except ColoppError as exc:
            log.warning("%s", exc)
