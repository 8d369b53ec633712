"""The secondary host's relay (asyncio): both replication streams through :class:`ClientLog`.

``client``: the primary's ``mirror0`` (it connects, retrying) -> the secondary QEMU's
``red0`` (it listens; QEMU connects): every client frame is logged, then forwarded as is,
unless it acknowledges bytes the secondary guest has not sent yet (``ackgate.py``: it then
waits for them, at most 0.2 s).
``output``: the secondary QEMU's ``red1`` (it listens) -> the comparator's ``secondary_in``
(it connects, retrying): every guest frame is logged (its ACKs free the log), forwarded,
and each batch is followed by the receipts it made possible (``receipts.py``), in the same
stream. At failover, :meth:`Relay.promote` stops taking the mirror and hands the log's
unacknowledged frames to :class:`~colopp.ingress.replay.Replayer`.

The agent starts it for a secondary whose answers may leave early (pre-release with the
read rule), receipts on (``--no-receipts`` leaves the gate only); :meth:`Relay.checkpoint`
(SIGUSR2) at each checkpoint the secondary loads (``docs/architecture.md``, "Held ACKs").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from colopp.compare.addresses import Endpoint
from colopp.compare.connect import open_endpoint
from colopp.compare.framing import DecodedFrame, FrameDecoder, encode_frame
from colopp.compare.packet import parse_frame
from colopp.compare.receipts import encode_receipts
from colopp.ingress.ackgate import AckGate
from colopp.ingress.log import DEFAULT_MAX_BYTES, ClientLog

log = logging.getLogger(__name__)

#: Seconds between connection attempts to an upstream that went away.
RECONNECT_S = 0.2
#: Seconds between looks at client frames held by the ACK gate past their wait.
GATE_TICK_S = 0.05


@dataclass(frozen=True, slots=True)
class RelayOptions:
    """The four ends of the two streams (:mod:`colopp.compare.addresses` syntax)."""

    mirror_from: Endpoint
    mirror_to: Endpoint
    output_from: Endpoint
    output_to: Endpoint
    vnet_hdr: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    #: Follow guest frames with the receipts they made possible (False: the gate only).
    receipts: bool = True


class _Side(asyncio.Protocol):
    """One connection of a stream; frames read go to ``on_frames``."""

    def __init__(self, relay: Relay, name: str, vnet_hdr: bool) -> None:
        self.relay, self.name = relay, name
        self.decoder = FrameDecoder(vnet_hdr)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.relay.opened(self)

    def data_received(self, data: bytes) -> None:
        self.relay.frames(self, self.decoder.feed(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.closed(self)


class Relay:
    """Runs both streams until :meth:`stop`."""

    def __init__(self, options: RelayOptions) -> None:
        self.options = options
        self.log = ClientLog(options.max_bytes)
        self.gate = AckGate()
        self.stats = dict.fromkeys(
            ("client_frames", "guest_frames", "receipt_frames", "dropped_frames"), 0
        )
        self.promoted = False
        self._sides: dict[str, _Side] = {}
        self._servers: list[asyncio.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._gate_timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Listen for the secondary QEMU; keep connecting to the primary and comparator."""
        for name, endpoint in (
            ("red0", self.options.mirror_to),
            ("red1", self.options.output_from),
        ):
            server = await open_endpoint(endpoint, self._factory(name), 0)
            if server is not None:
                self._servers.append(server)
        for name, endpoint in (
            ("mirror", self.options.mirror_from),
            ("comparator", self.options.output_to),
        ):
            self._tasks.append(asyncio.create_task(self._keep_connected(name, endpoint)))

    def _arm_gate_timer(self) -> None:
        """Look at held client frames again in :data:`GATE_TICK_S`, while the gate holds
        some (a timer only then: no wake-up of this host's CPU when nothing waits)."""
        if self._gate_timer is None and self.gate.held_frames:
            loop = asyncio.get_running_loop()
            self._gate_timer = loop.call_later(GATE_TICK_S, self._gate_due)

    def _gate_due(self) -> None:
        self._gate_timer = None
        self._to_guest(self.gate.due(asyncio.get_running_loop().time()))
        self._arm_gate_timer()

    def _factory(self, name: str) -> Callable[[], asyncio.Protocol]:
        return lambda: _Side(self, name, self.options.vnet_hdr)

    async def _keep_connected(self, name: str, endpoint: Endpoint) -> None:
        while not (self.promoted and name == "mirror"):
            if name not in self._sides:
                with contextlib.suppress(Exception):
                    await open_endpoint(endpoint, self._factory(name), RECONNECT_S)
            await asyncio.sleep(RECONNECT_S)

    def opened(self, side: _Side) -> None:
        old = self._sides.get(side.name)
        if old is not None and old.transport is not None:
            old.transport.close()  # a reconnect: the newest connection wins
        if side.name == "mirror" and self.promoted:
            assert side.transport is not None
            side.transport.close()
            return
        self._sides[side.name] = side
        if side.name == "comparator":
            self.log.receipts_forgotten()  # a new stream promises nothing (forget_receipts)

    def closed(self, side: _Side) -> None:
        if self._sides.get(side.name) is side:
            del self._sides[side.name]

    def frames(self, side: _Side, frames: list[DecodedFrame]) -> None:
        """Log, then forward: client frames to red0, guest frames (and receipts) onward.

        Each frame is parsed once, for the log and the gate alike.
        """
        vnet = self.options.vnet_hdr
        log, gate = self.log, self.gate
        if side.name == "mirror":
            now = asyncio.get_running_loop().time()
            passing: list[tuple[bytes, int]] = []
            for data, vnet_hdr_len in frames:
                pkt = parse_frame(data, vnet_hdr_len)
                log.client_frame(data, vnet_hdr_len, pkt)
                passing += gate.client_frame(data, now, vnet_hdr_len, pkt)
            self.stats["client_frames"] += len(frames)
            self._to_guest(passing)
            self._arm_gate_timer()
            # What this host now holds, at once: an uploading client's bytes need not wait
            # for the guest's next output (the log's start moves only on guest ACKs already
            # forwarded, so a receipt here still follows every frame it relies on).
            self._send_receipts([])
        elif side.name == "red1":
            released: list[tuple[bytes, int]] = []
            for data, vnet_hdr_len in frames:
                pkt = parse_frame(data, vnet_hdr_len)
                log.guest_frame(data, vnet_hdr_len, pkt)
                released += gate.guest_frame(data, vnet_hdr_len, pkt)
            self.stats["guest_frames"] += len(frames)
            self._to_guest(released)
            self._send_receipts([encode_frame(d, n, vnet_hdr=vnet) for d, n in frames])
        # Nothing is expected from red0 or the comparator: ignored.

    def _send_receipts(self, out: list[bytes]) -> None:
        """``out`` (encoded guest frames), then the receipts they made possible."""
        if self.options.receipts:
            receipts = encode_receipts(self.log.receipts())
            self.stats["receipt_frames"] += len(receipts)
            out += [encode_frame(r, 0, vnet_hdr=self.options.vnet_hdr) for r in receipts]
        if out:
            self._send("comparator", out, len(out))

    def checkpoint(self) -> None:
        """The secondary loaded a checkpoint: the gate forgets the old guest's output and
        lets what it held go; the comparator forgot every receipt."""
        self.log.receipts_forgotten()
        self._to_guest(self.gate.checkpoint())

    def _to_guest(self, frames: list[tuple[bytes, int]]) -> None:
        if frames:
            vnet = self.options.vnet_hdr
            self._send("red0", [encode_frame(d, n, vnet_hdr=vnet) for d, n in frames], len(frames))

    def _send(self, name: str, chunks: list[bytes], count: int) -> None:
        side = self._sides.get(name)
        if side is None or side.transport is None:
            self.stats["dropped_frames"] += count  # as QEMU drops into a closed chardev
            return
        side.transport.write(b"".join(chunks))

    def promote(self) -> list[bytes]:
        """Failover: the mirror is gone for good; the frames the promoted guest must get."""
        self.promoted = True
        mirror = self._sides.pop("mirror", None)
        if mirror is not None and mirror.transport is not None:
            mirror.transport.close()
        return self.log.unacked()

    async def stop(self) -> None:
        if self._gate_timer is not None:
            self._gate_timer.cancel()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for side in list(self._sides.values()):
            if side.transport is not None:
                side.transport.close()
        for server in self._servers:
            server.close()
