"""The client copy in eager mode (a client that sends much, an upload): read a moment after
it becomes readable, everything at once, then watched again; a quiet tick ends it, and a
close leaves neither a watch nor a read to come."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any

from compare_frames import CLIENT, GUEST, tcp_frame

from colopp.compare import Comparator, PreReleaseConfig, build_policy
from colopp.compare.framing import encode_frames
from colopp.compare.inputs import EAGER_BYTES, ClientFrames

TIMEOUT = 10.0


class Shell(SimpleNamespace):
    """What :class:`ClientFrames` uses of the comparator shell."""

    def __init__(self) -> None:
        policy = build_policy(PreReleaseConfig(frozenset({"http_read"}), ("/kv/",)))
        super().__init__(
            core=Comparator(policy=policy),
            options=SimpleNamespace(vnet_hdr=False),
            stats={"client_framing_errors": 0},
            clock=lambda: 0.0,
        )
        self.flushed = asyncio.Event()

    def _apply(self, actions: list[Any]) -> None:
        assert actions == []

    def _flush(self) -> None:
        self.flushed.set()


def upload(n: int, seq: int = 1000) -> bytes:
    return encode_frames(
        [
            tcp_frame(seq + i * 1448, 5000, "A", b"\x17" * 1448, src=CLIENT, dst=GUEST)
            for i in range(n)
        ]
    )


async def scenario() -> None:
    ours, qemu = socket.socketpair()
    ours.setblocking(False)
    shell = Shell()
    copy = ClientFrames(shell, ours)  # type: ignore[arg-type]
    frames = EAGER_BYTES // 1400 + 1
    qemu.sendall(upload(frames))
    copy.tick()  # a big flow since the last tick: eager
    assert copy.eager and copy._watching
    assert shell.core.counters.client_frames_in == frames
    qemu.sendall(upload(3, 1000 + frames * 1448))
    await asyncio.wait_for(shell.flushed.wait(), TIMEOUT)  # read on readiness, a bit later
    assert shell.core.counters.client_frames_in == frames + 3
    assert copy._watching and copy._later is None  # watched again
    copy.tick()  # three frames since the last tick: quiet again
    assert not copy.eager and not copy._watching and copy._later is None
    copy.tick()
    qemu.sendall(upload(frames, 5_000_000))
    copy.tick()
    assert copy.eager and copy._watching
    copy.on_readable()  # a read to come ...
    assert copy._later is not None and not copy._watching
    copy.close("test")  # ... that a close cancels
    assert not copy.open and copy._later is None and not copy._watching
    qemu.close()


def test_eager_reads_come_in_batches_and_stop() -> None:
    asyncio.run(asyncio.wait_for(scenario(), 3 * TIMEOUT))
