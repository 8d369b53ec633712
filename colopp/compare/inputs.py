"""One socket carrying QEMU-framed primary or secondary output into the comparator shell."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from colopp.compare.framing import FrameDecoder

if TYPE_CHECKING:
    from colopp.compare.shell import ComparatorShell

#: Bytes read per call, and the outdev write buffer's high-water mark.
READ_LIMIT_HIGH = 4 * 1024 * 1024


class FrameInput(asyncio.Protocol):
    """One connection carrying primary or secondary frames."""

    def __init__(self, shell: ComparatorShell, side: str) -> None:
        self.shell = shell
        self.side = side
        self.decoder = FrameDecoder(shell.options.vnet_hdr)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
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
                data = os.read(sock.fileno(), READ_LIMIT_HIGH)
            except (BlockingIOError, InterruptedError, OSError):
                return total
            if not data:
                return total  # EOF: the transport sees it too and closes
            total += len(data)
            self.data_received(data)
