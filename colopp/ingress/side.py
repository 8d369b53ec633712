"""One connection of the relay's streams (:mod:`colopp.ingress.relay`): frames as read."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Protocol, cast

from colopp.compare.reads import READ_SIZE, SmallReadProtocol
from colopp.ingress.wire import Span, Splitter


class Sink(Protocol):
    """What a side tells its relay."""

    def opened(self, side: RelaySide) -> None: ...
    def closed(self, side: RelaySide) -> None: ...
    def frames(self, side: RelaySide, buf: bytes, spans: list[Span]) -> None: ...


class RelaySide(SmallReadProtocol):
    """One connection of a stream; the frames read go to the relay's ``frames``."""

    def __init__(self, relay: Sink, name: str, vnet_hdr: bool) -> None:
        super().__init__()
        self.relay, self.name = relay, name
        self.splitter = Splitter(vnet_hdr)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast("asyncio.Transport", transport)  # uvloop's are not subclasses
        self.transport = transport
        self.relay.opened(self)

    def data_received(self, data: bytes) -> None:
        buf, spans = self.splitter.feed(data)
        if spans:
            self.relay.frames(self, buf, spans)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.closed(self)

    def drain(self) -> None:
        """Read, now, what waits on this connection's socket (the frames handled as if
        the loop had read them)."""
        drain(self.transport, self.data_received)


def drain(transport: asyncio.BaseTransport | None, feed: Callable[[bytes], None]) -> None:
    """Read what waits on ``transport``'s socket now, each read to ``feed``, until it would
    block (on the loop's thread: its own reads then find less). A transport without a
    socket reads nothing; an error or the end is left for the transport to see."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    while sock is not None:
        try:
            data = os.read(sock.fileno(), READ_SIZE)
        except OSError:  # nothing more now (BlockingIOError), or the transport will see
            return
        if not data:
            return
        feed(data)
