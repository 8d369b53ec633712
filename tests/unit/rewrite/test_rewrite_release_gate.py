"""The comparator releases a young connection's SYN-ACK only once the secondary host has
acknowledged its offset (docs/rewrite.md, "release gate"), bounded by HOLD_LIMIT_S."""

from __future__ import annotations

import asyncio
from typing import Any

from rewrite_frames import GUEST_KEY, tcp

from colopp.compare.addresses import parse_endpoint
from colopp.compare.framing import DecodedFrame
from colopp.compare.shell import ComparatorShell, ShellOptions
from colopp.compare.young_send import HOLD_LIMIT_S, YoungForwarder
from colopp.errors import AgentError
from colopp.rewrite.young import YoungOffsets
from colopp.rewrite.young_link import handle_young_request

TIMEOUT = 5.0
SYN_ACK_P, SYN_ACK_S = tcp(1000, 77, "SA"), tcp(1500, 77, "SA")


class Outdev:
    """Stands in for the outdev transport; ``written`` fires on each write."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.written = asyncio.Event()
        self.seen_by_secondary: list[bool] = []
        self.young: YoungOffsets | None = None

    def write(self, data: bytes) -> None:
        self.data.append(data)
        if self.young is not None:
            self.seen_by_secondary.append(GUEST_KEY in self.young)
        self.written.set()


class SecondaryHost:
    """The secondary host's young-offset listener; replies only when ``release`` is set."""

    def __init__(self) -> None:
        self.young = YoungOffsets()
        self.release = asyncio.Event()
        self.received = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                self.received.set()
                await self.release.wait()
                writer.write(handle_young_request(self.young, line, 1.0))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def _shell(host: SecondaryHost) -> tuple[ComparatorShell, Outdev]:
    port = await host.start()
    ep = parse_endpoint("unix:/nonexistent")
    shell = ComparatorShell(ShellOptions(ep, ep, ep, young_to=("127.0.0.1", port)))
    out = Outdev()
    out.young = host.young
    shell._out = out  # type: ignore[assignment]
    return shell, out


def _open(shell: ComparatorShell) -> None:
    shell.frames_received("primary", [DecodedFrame(SYN_ACK_P, 0)])
    shell.frames_received("secondary", [DecodedFrame(SYN_ACK_S, 0)])


async def _acked_first() -> None:
    host = SecondaryHost()
    shell, out = await _shell(host)
    try:
        _open(shell)
        await asyncio.wait_for(host.received.wait(), TIMEOUT)
        assert out.data == [], "SYN-ACK released before the secondary host had its offset"
        assert shell.stats["young_held_flushes"] >= 1
        host.release.set()
        await asyncio.wait_for(out.written.wait(), TIMEOUT)
        assert SYN_ACK_P in b"".join(out.data)
        assert out.seen_by_secondary == [True]
        assert shell.young is not None and shell.young.hold_expired == 0
    finally:
        host.release.set()
        assert shell.young is not None
        await shell.young.close()
        await host.close()


def test_syn_ack_waits_for_the_offsets_acknowledgement() -> None:
    asyncio.run(_acked_first())


async def _never_acked() -> None:
    host = SecondaryHost()  # never releases: an unreachable or hung secondary host
    shell, out = await _shell(host)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        _open(shell)
        await asyncio.wait_for(out.written.wait(), TIMEOUT)
        assert loop.time() - started >= HOLD_LIMIT_S * 0.9
        assert SYN_ACK_P in b"".join(out.data)
        assert shell.young is not None and shell.young.hold_expired == 1
    finally:
        host.release.set()
        assert shell.young is not None
        await shell.young.close()
        await host.close()


def test_an_unacknowledged_offset_holds_output_at_most_the_hold_limit() -> None:
    asyncio.run(_never_acked())


async def _checkpoint_voids() -> None:
    host = SecondaryHost()
    shell, out = await _shell(host)
    try:
        _open(shell)
        await asyncio.wait_for(host.received.wait(), TIMEOUT)
        assert out.data == []
        # The secondary is the primary's copy after a checkpoint: no offset is needed.
        shell.signal_checkpoint_done()
        assert SYN_ACK_P in b"".join(out.data)
        assert shell.young is not None and shell.young.hold_expired == 0
    finally:
        host.release.set()
        assert shell.young is not None
        await shell.young.close()
        await host.close()


def test_a_completed_checkpoint_opens_the_gate() -> None:
    asyncio.run(_checkpoint_voids())


async def _newer_offset_after_a_lapsed_hold() -> None:
    host = SecondaryHost()  # acknowledges nothing yet: a slow secondary host
    port = await host.start()
    forwarder = YoungForwarder("127.0.0.1", port)
    try:
        forwarder.frames("primary", [DecodedFrame(SYN_ACK_P, 0)], now=0.0)
        forwarder.frames("secondary", [DecodedFrame(SYN_ACK_S, 0)], now=0.0)
        assert forwarder.holding(0.1)
        assert not forwarder.holding(HOLD_LIMIT_S + 0.1)  # that offset's hold lapsed
        assert forwarder.hold_expired == 1
        # A newer connection of the same epoch: its SYN-ACK is held for its own bound
        # (issue 18: it went out unheld while the older offset stayed unacknowledged).
        later = HOLD_LIMIT_S + 0.2
        other = 4242
        forwarder.frames(
            "primary", [DecodedFrame(tcp(5000, 78, "SA", port_client=other), 0)], now=later
        )
        forwarder.frames(
            "secondary", [DecodedFrame(tcp(9000, 78, "SA", port_client=other), 0)], now=later
        )
        assert forwarder.holding(later + 0.1)
        assert forwarder.hold_left(later + 0.1) > 0.0
        assert not forwarder.holding(later + HOLD_LIMIT_S)
        assert forwarder.hold_expired == 2
    finally:
        host.release.set()
        await forwarder.close()
        await host.close()


def test_a_lapsed_hold_does_not_release_newer_offsets_unheld() -> None:
    asyncio.run(_newer_offset_after_a_lapsed_hold())


async def _link_down() -> None:
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = int(closed.sockets[0].getsockname()[1])
    closed.close()
    await closed.wait_closed()  # nothing listens there now: every delivery fails
    forwarder = YoungForwarder("127.0.0.1", port)
    try:
        failed = asyncio.Event()
        send = forwarder.sender.send

        async def watched(message: dict[str, Any]) -> None:
            try:
                await send(message)
            except AgentError:
                failed.set()
                raise

        forwarder.sender.send = watched  # type: ignore[method-assign,assignment]
        forwarder.frames("primary", [DecodedFrame(SYN_ACK_P, 0)], now=0.0)
        forwarder.frames("secondary", [DecodedFrame(SYN_ACK_S, 0)], now=0.0)
        await asyncio.wait_for(failed.wait(), TIMEOUT)
        # An unreachable secondary host must not hold every new connection's output.
        assert not forwarder.holding(0.1)
    finally:
        await forwarder.close()


def test_nothing_is_held_while_the_secondary_host_is_unreachable() -> None:
    asyncio.run(_link_down())
