"""The secondary host's relay for a pair on QEMU's ``colo-compare`` (thin I/O around
:class:`~colopp.rewrite.rewriter_learn.RewriterLearner`; docs/rewrite.md, "Comparators").

With ``--comparator builtin`` no colopp comparator sees both guests' SYN-ACKs, so the young
offsets are learned where the secondary's ``filter-rewriter`` learns them, from the same
segments. The secondary QEMU's two replication chardevs point at this relay (unix sockets
in its run directory, ``secondary-relay.conf``), in the agent's own event loop:

- ``mirror`` (the primary's ``mirror0``; connected, retrying) -> ``red0`` (QEMU connects):
  the client's frames, learned from *before* QEMU gets them;
- ``red1`` (QEMU connects) -> ``comparator`` (the primary's ``colo-compare`` input
  ``compare1``; connected, retrying): the secondary guest's output, after
  ``filter-rewriter``.

Frames pass unchanged and in order (whole frames: a reconnect never splits one). The
upstream connection of a stream is opened only while QEMU holds its end, so the primary's
``query-chardev`` shows the secondary linked only once frames can really flow (the live
re-protection waits for that). Each learned offset goes to the agent's
:class:`~colopp.rewrite.young.YoungOffsets` with the time its client ACK was read; each
checkpoint the secondary loads (:meth:`RewriterRelay.checkpoint_loaded`, QEMU's RESUME
stamp, same clock) voids what came before. Promotion stops the relay (the primary is gone).

It also keeps the secondary guest's output the client has not acknowledged since the last
checkpoint load (:class:`~colopp.ingress.keep.OutputKeep`): at promotion
:meth:`RewriterRelay.take_output` gives it, to be sent to the client (what colo-compare
held died with the primary's host).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import cast

from colopp.compare.addresses import Endpoint
from colopp.compare.connect import open_endpoint
from colopp.compare.framing import FrameDecoder, encode_frame
from colopp.compare.packet import FIN, RST, TCP
from colopp.domain import SideSpec
from colopp.ingress.keep import OutputKeep
from colopp.ingress.side import drain
from colopp.ingress.wire import plain_tcp
from colopp.rewrite.rewriter_learn import RewriterLearner
from colopp.rewrite.young import YoungOffsets

log = logging.getLogger(__name__)

#: Seconds between connection attempts to the primary's chardev servers.
RECONNECT_S = 0.2
#: The primary's end of each stream -> the secondary QEMU's end it is opened for.
_PARTNER = {"mirror": "red0", "comparator": "red1"}
#: Where the frames read from an end go.
_TARGET = {"mirror": "red0", "red1": "comparator"}


class _End(asyncio.Protocol):
    """One connection of a stream; frames read go to the relay."""

    def __init__(self, relay: RewriterRelay, name: str) -> None:
        self.relay, self.name = relay, name
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast("asyncio.Transport", transport)  # uvloop's are not subclasses
        self.transport = transport
        self.relay.opened(self)

    def data_received(self, data: bytes) -> None:
        self.relay.received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.closed(self)


class RewriterRelay:
    """Both replication streams of one builtin secondary, learning as they pass."""

    def __init__(
        self, spec: SideSpec, young: YoungOffsets, clock: Callable[[], float] = time.time
    ) -> None:
        self.young = young
        self.learner = RewriterLearner()
        self.keep = OutputKeep()
        self.clock = clock
        self.stats = dict.fromkeys(("client_frames", "guest_frames", "dropped_frames"), 0)
        self._listen = {
            "red0": Endpoint(True, path=str(spec.red0_socket)),
            "red1": Endpoint(True, path=str(spec.red1_socket)),
        }
        self._upstream = {
            "mirror": Endpoint(False, host=spec.peer_repl_ip, port=spec.ports.mirror),
            "comparator": Endpoint(False, host=spec.peer_repl_ip, port=spec.ports.compare),
        }
        self._ends: dict[str, _End] = {}
        self._servers: list[asyncio.Server] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Listen for the secondary QEMU's chardevs; keep the primary's ends connected.

        Raises:
            ColoppError: a socket cannot be listened on.
        """
        for name, endpoint in self._listen.items():
            server = await open_endpoint(endpoint, self._factory(name), 0)
            if server is not None:
                self._servers.append(server)
        for name, endpoint in self._upstream.items():
            self._tasks.append(asyncio.create_task(self._keep_connected(name, endpoint)))

    def _factory(self, name: str) -> Callable[[], asyncio.Protocol]:
        return lambda: _End(self, name)

    async def _keep_connected(self, name: str, endpoint: Endpoint) -> None:
        while True:
            if name not in self._ends and _PARTNER[name] in self._ends:
                with contextlib.suppress(Exception):
                    await open_endpoint(endpoint, self._factory(name), RECONNECT_S)
            await asyncio.sleep(RECONNECT_S)

    def opened(self, end: _End) -> None:
        old = self._ends.get(end.name)
        if old is not None and old.transport is not None:
            old.transport.close()  # a reconnect: the newest connection wins
        self._ends[end.name] = end

    def closed(self, end: _End) -> None:
        if self._ends.get(end.name) is end:
            del self._ends[end.name]
            # QEMU let go of its end: drop the primary's, so the primary sees it unlinked.
            for upstream, partner in _PARTNER.items():
                other = self._ends.get(upstream)
                if partner == end.name and other is not None and other.transport is not None:
                    other.transport.close()

    def received(self, end: _End, data: bytes) -> None:
        """Learn from the frames ``data`` completes, then pass them on unchanged."""
        target = _TARGET.get(end.name)
        if target is None:
            return  # nothing is expected from red0 or the comparator
        now = self.clock()
        frames = end.decoder.feed(data)
        learner = self.learner
        keep = self.keep
        if end.name == "mirror":
            for frame, vnet in frames:
                # The client's ACKs matter only while output is kept (an upload keeps none:
                # its many client frames are not parsed twice on the agent's loop).
                f = plain_tcp(frame, 0, len(frame), vnet) if keep.bytes else None
                if f is not None:
                    keep.client((TCP, f[1], f[0], f[3], f[2]), f[6], f[5])
                got = learner.client_frame(frame, vnet, now)
                if got is not None:
                    learned = got.learned
                    self.young.learned(learned.key, learned.delta, 0, got.at)
            self.stats["client_frames"] += len(frames)
        else:
            for frame, vnet in frames:
                learner.guest_frame(frame, vnet, now)
                f = plain_tcp(frame, 0, len(frame), vnet)
                if f is not None:
                    src, dst, sport, dport, seq, _, flags, size = f
                    if flags & RST:
                        keep.forget((TCP, src, dst, sport, dport))
                    elif size or flags & FIN:
                        keep.guest(
                            (TCP, src, dst, sport, dport), seq, size + (flags & FIN), frame, vnet
                        )
            self.stats["guest_frames"] += len(frames)
        out = self._ends.get(target)
        if out is None or out.transport is None:
            self.stats["dropped_frames"] += len(frames)  # as QEMU drops into a closed chardev
            return
        if frames:
            out.transport.write(b"".join(encode_frame(f) for f, _ in frames))

    def checkpoint_loaded(self, stamp: float | None) -> None:
        """The secondary loaded a checkpoint; ``stamp``: QEMU's RESUME time. The guest's
        output kept before is void: ``red1`` is read to its end first."""
        self._drain_output()
        self.keep.checkpoint()
        if stamp is not None:
            self.learner.checkpoint_loaded(stamp)
            self.young.loaded_at(stamp)

    def _drain_output(self) -> None:
        end = self._ends.get("red1")
        if end is not None:
            drain(end.transport, end.data_received)

    def take_output(self) -> list[tuple[bytes, int]]:
        """At promotion: the guest's kept output the client has not acknowledged
        (:meth:`OutputKeep.take`), ``red1`` read to its end first."""
        self._drain_output()
        return self.keep.take()

    def describe(self) -> dict[str, int]:
        return {
            **self.stats,
            "learned": self.learner.learned,
            "zeroed": self.learner.zeroed,
            "garbage": self.learner.garbage,
            "handshakes": len(self.learner),
            **self.keep.counters(),
        }

    async def stop(self) -> None:
        """Close every end and stop listening; never raises."""
        log.info("rewriter relay stops: %s", self.describe())
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for end in list(self._ends.values()):
            if end.transport is not None:
                end.transport.close()
        self._ends.clear()
        for server in self._servers:
            server.close()
        self._servers = []
