"""The comparator shell's sockets: QEMU-framed primary or secondary output in, the copy of
the client's frames in, released frames out (the outdev)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, cast

from colopp.compare.framing import FrameDecoder
from colopp.compare.reads import READ_SIZE, SmallReadProtocol
from colopp.compare.spans import Splitter

if TYPE_CHECKING:
    from colopp.compare.shell import ComparatorShell

log = logging.getLogger("colopp.compare.shell")

#: The outdev write buffer's high-water mark.
WRITE_LIMIT_HIGH = 4 * 1024 * 1024


class FrameInput(SmallReadProtocol):
    """One connection carrying primary or secondary frames."""

    def __init__(self, shell: ComparatorShell, side: str) -> None:
        super().__init__()
        self.shell = shell
        self.side = side
        self.decoder = FrameDecoder(shell.options.vnet_hdr)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast("asyncio.Transport", transport)  # uvloop's are not subclasses
        self.transport = transport
        self.shell.input_opened(self)

    def data_received(self, data: bytes) -> None:
        before = self.decoder.malformed
        frames = self.decoder.feed(data)
        if self.decoder.malformed != before:
            self.shell.stats[f"{self.side}_framing_errors"] += self.decoder.malformed - before
        self.shell.frames_received(self.side, frames)

    def connection_lost(self, exc: Exception | None) -> None:
        self.shell.input_closed(self)

    def drain(self) -> int:
        """Read what already waits in the socket, now (never blocks); returns bytes read.

        Safe beside the transport: it keeps no read buffer of its own, so the bytes reach
        :meth:`data_received` in order either way.
        """
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is None:
            return 0
        total = 0
        while True:
            try:
                data = os.read(sock.fileno(), READ_SIZE)
            except (BlockingIOError, InterruptedError, OSError):
                return total
            if not data:
                return total  # EOF: the transport sees it too and closes
            total += len(data)
            self.data_received(data)


#: Client-copy bytes read between two ticks above which the shell also reads it on
#: readiness (see :class:`ClientFrames`).
EAGER_BYTES = 64 * 1024


class ClientFrames:
    """The copy of the guest's input, drained on demand.

    Read only when the shell is awake anyway, not on readiness: before it decides on primary
    output (every request that output may answer is then in the socket: QEMU writes the copy
    before the guest sees the frame), at a checkpoint's STOP and at every tick. That spares
    the primary host a wake-up of the comparator per client frame, taken while the primary
    guest needs the CPU to answer.
    Reading later never lets anything leave that reading at once would not: the read rule
    only grants more as it sees more requests. A client that sends much while the guest
    answers little (more than :data:`EAGER_BYTES` between two ticks)
    would fill the socket and block QEMU's filter-mirror: then the copy is also read on
    readiness, until a tick finds the flow small again.
    """

    def __init__(self, shell: ComparatorShell, sock: socket.socket) -> None:
        self.shell = shell
        self.sock = sock
        self.splitter = Splitter(shell.options.vnet_hdr)
        self.open = True
        self.eager = False
        self._since_tick = 0  # bytes read since the last tick

    def drain(self) -> None:
        """Feed every client frame already queued to the core (never blocks)."""
        shell = self.shell
        shell.stats["client_drains"] += 1
        while self.open:
            try:
                data = self.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.close(f"client_in failed: {exc}")
                return
            if not data:
                self.close("client_in closed")
                return
            self._since_tick += len(data)
            before = self.splitter.malformed
            buf, spans = self.splitter.feed(data)
            shell.stats["client_framing_errors"] += self.splitter.malformed - before
            shell._apply(shell.core.feed_clients(buf, spans, shell.clock()))
            if len(data) < READ_SIZE:
                # A unix stream socket's recv returns everything queued, up to the limit:
                # the next one would only say EAGAIN (one system call per drain, not two).
                return

    def tick(self) -> None:
        """Drain; read on readiness too while the flow between two ticks is large."""
        self.drain()
        eager = self._since_tick >= EAGER_BYTES
        self._since_tick = 0
        if eager != self.eager and self.open:
            self.eager = eager
            loop = asyncio.get_running_loop()
            if eager:
                loop.add_reader(self.sock.fileno(), self.on_readable)
            else:
                loop.remove_reader(self.sock.fileno())

    def on_readable(self) -> None:
        self.drain()
        self.shell._flush()

    def close(self, why: str) -> None:
        # Not fatal: without requests the read rule just grants nothing more.
        if self.open:
            self.open = False
            log.warning("%s; reads are no longer pre-released", why)
            self.shell.core.client_lost()
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()


class OutdevConnection(asyncio.Protocol):
    """The outdev connection: write-only; its flow control pauses the inputs."""

    def __init__(self, shell: ComparatorShell) -> None:
        self.shell = shell

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast("asyncio.Transport", transport)  # uvloop's are not subclasses
        transport.set_write_buffer_limits(high=WRITE_LIMIT_HIGH)
        self.shell.output_opened(transport)

    def pause_writing(self) -> None:
        self.shell.pause_inputs(True)

    def resume_writing(self) -> None:
        self.shell.pause_inputs(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.shell.output_closed()
