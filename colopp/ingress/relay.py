"""The secondary host's relay (asyncio): both replication streams through :class:`ClientLog`.

``client``: the primary's ``mirror0`` (it connects, retrying) -> the secondary QEMU's
``red0`` (it listens; QEMU connects): every client frame is logged, then forwarded as is,
unless it acknowledges bytes the secondary guest has not sent yet (``ackgate.py``: it then
goes on with its ACK lowered, the client's own ACK following once the secondary caught up;
or, with ``gate_lowering`` off, it waits for them, at most 0.2 s). Frames are read in
place and forwarded as the bytes they came in (``wire.py``); receipts after client frames
go at most once per ``receipt_interval``.
``output``: the secondary QEMU's ``red1`` (it listens) -> the comparator's ``secondary_in``
(it connects, retrying): every guest frame is logged (its ACKs free the log), forwarded
(a read's runs of one connection's data segments as one segment: ``coalesce.py``), and each
batch is followed by the receipts it made possible (``receipts.py``), in the same
stream. A client segment past the secondary guest's receive window waits (``pacing.py``)
until the guest's ACKs open it. With the read rule (``read_prefixes``/``resp_ports``) a
client's write waits until the secondary guest began answering the reads before it
(``fence.py``). At failover, :meth:`Relay.promote` stops taking the mirror
and hands the log's unacknowledged frames to :class:`~colopp.ingress.replay.Replayer`.

The agent starts it for a secondary whose answers may leave early (pre-release with the
read rule), receipts on (``--no-receipts`` leaves the gate only); :meth:`Relay.checkpoint`
(SIGUSR2) at each checkpoint the secondary loads (``docs/architecture.md``, "Held ACKs").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from colopp.compare.addresses import Endpoint
from colopp.compare.connect import open_endpoint
from colopp.compare.framing import encode_frame
from colopp.compare.packet import ACK, FIN, RST, SYN, TCP, FlowKey, parse_frame
from colopp.compare.receipts import encode_receipts
from colopp.compare.seq import MASK
from colopp.ingress.ackgate import AckGate
from colopp.ingress.coalesce import coalesce
from colopp.ingress.fence import WriteFence
from colopp.ingress.keep import OutputKeep
from colopp.ingress.log import ClientLog
from colopp.ingress.options import RelayOptions
from colopp.ingress.pacing import WindowPacing
from colopp.ingress.side import RelaySide
from colopp.ingress.wire import (
    PlainTcp,
    Span,
    Splitter,
    lower_ack,
    plain_tcp,
    tcp_window,
    window_scale,
    wire_runs,
)

log = logging.getLogger(__name__)

#: Seconds between connection attempts to an upstream that went away.
RECONNECT_S = 0.2
#: Seconds between looks at client frames held by the ACK gate past their wait.
GATE_TICK_S = 0.05


class Relay:
    """Runs both streams until :meth:`stop`."""

    def __init__(self, options: RelayOptions) -> None:
        self.options = options
        self.log = ClientLog(options.max_bytes)
        self.gate = AckGate(lowering=options.gate_lowering)
        self.pacing = WindowPacing() if options.window_pacing else None
        self.keep = OutputKeep()
        self.fence = (
            WriteFence(
                options.read_methods,
                options.read_prefixes,
                options.resp_ports,
                http=bool(options.read_prefixes),
                scope=options.read_scope,
            )
            if options.read_prefixes or options.resp_ports
            else None
        )
        self.stats = dict.fromkeys(
            (
                "client_frames",
                "guest_frames",
                "coalesced_frames",
                "receipt_frames",
                "dropped_frames",
            ),
            0,
        )
        self.promoted = False
        #: Set when the secondary QEMU let go of ``red1`` (after a promotion: no more output
        #: comes that way; what came since the promotion is kept too).
        self.output_closed = asyncio.Event()
        #: At promotion: the write fence's pending reads and fenced connections.
        self.fence_handover: tuple[dict[FlowKey, int], set[FlowKey]] = ({}, set())
        self._sides: dict[str, RelaySide] = {}
        self._servers: list[asyncio.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._gate_timer: asyncio.TimerHandle | None = None
        self._receipt_timer: asyncio.TimerHandle | None = None
        self._receipts_sent_at = float("-inf")

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
        pacing, fence = self.pacing, self.fence
        waiting = (
            self.gate.held_frames
            or (pacing is not None and pacing.held_frames)
            or (fence is not None and fence.held_frames)
        )
        if self._gate_timer is None and waiting:
            loop = asyncio.get_running_loop()
            self._gate_timer = loop.call_later(GATE_TICK_S, self._gate_due)

    def _gate_due(self) -> None:
        self._gate_timer = None
        now = asyncio.get_running_loop().time()
        self._to_guest(self.gate.due(now))
        if self.pacing is not None:
            self._paced_to_guest(self.pacing.due(now))
        if self.fence is not None:
            self._fenced_to_guest(self.fence.release(now))
        self._arm_gate_timer()

    def _factory(self, name: str) -> Callable[[], asyncio.BaseProtocol]:
        return lambda: RelaySide(self, name, self.options.vnet_hdr)

    async def _keep_connected(self, name: str, endpoint: Endpoint) -> None:
        while not (self.promoted and name == "mirror"):
            if name not in self._sides:
                with contextlib.suppress(Exception):
                    await open_endpoint(endpoint, self._factory(name), RECONNECT_S)
            await asyncio.sleep(RECONNECT_S)

    def opened(self, side: RelaySide) -> None:
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

    def closed(self, side: RelaySide) -> None:
        if self._sides.get(side.name) is side:
            del self._sides[side.name]
            if side.name == "red1":
                self.output_closed.set()

    def frames(self, side: RelaySide, buf: bytes, spans: list[Span]) -> None:
        """Log, then forward: client frames to red0, guest frames (and receipts) onward.

        Each frame is read once, for the log and the gate alike, in place (plain IPv4/TCP:
        :func:`~colopp.ingress.wire.plain_tcp`; anything else through ``parse_frame``), and
        forwarded as the bytes it came in (``wire_runs``), never re-encoded; the guest's
        runs of data segments of one connection leave as one (``coalesce.py``).
        """
        if side.name == "mirror":
            self._client_frames(buf, spans)
        elif side.name == "red1":
            self._guest_frames(buf, spans)
        # Nothing is expected from red0 or the comparator: ignored.

    def _client_frames(self, buf: bytes, spans: list[Span], *, fenced: bool = False) -> None:
        """Client frames as they came (``fenced``: frames the write fence held, logged and
        classified already, now let go)."""
        log, pacing, keep = self.log, self.pacing, self.keep
        fence = None if fenced else self.fence
        now = asyncio.get_running_loop().time()
        out: list[bytes | memoryview] = []
        view = memoryview(buf)
        run_from = run_to = -1  # the bytes of the frames passing in a row
        passed = 0
        for span in spans:
            header_start, start, end, vnet = span
            lowered: bytes | None = None
            f = plain_tcp(buf, start, end, vnet)
            if f is not None:
                src, dst, sport, dport, seq, ack, flags, size = f
                key = (TCP, dst, src, dport, sport)
                if not fenced:
                    keep.client(key, flags, ack)
                if (size or flags & (SYN | RST | FIN)) and not fenced:
                    log.client_segment(
                        key, flags, seq, size + (flags & FIN), buf[start + vnet : end]
                    )
                    if fence is not None and fence.offer_plain(key, flags, size, buf, span, now):
                        continue
                held, lowered = self._gated(key, f, buf, start, end, vnet, now)
            else:
                held = self._other_frame(buf, header_start, start, end, vnet, now, fenced=fenced)
            if held:
                continue
            pieces: list[bytes] = []  # empty: the frame goes as it came, in a run
            if pacing is not None and f is not None:
                paced = pacing.pieces(key, flags, seq, size, lowered, buf, header_start, end, now)
                if paced is None:
                    continue  # held for the guest's window
                pieces = paced
            elif lowered is not None:
                pieces = [lowered]
            passed += max(1, len(pieces))
            if pieces:  # not as it came (ACK lowered, or held frames first): a run of its own
                if run_from >= 0:
                    out.append(view[run_from:run_to])
                run_from = run_to = -1
                out += pieces
                continue
            if run_to != header_start:
                if run_from >= 0:
                    out.append(view[run_from:run_to])
                run_from = header_start
            run_to = end
        if run_from >= 0:
            out.append(buf if (run_from, run_to) == (0, len(buf)) else view[run_from:run_to])
        self._client_frames_done(0 if fenced else len(spans), out, passed, now)
        if fence is not None and fence.overflowed:  # past its byte bound: all goes, in order
            self._fenced_to_guest(fence.release(now))

    def _gated(
        self, key: FlowKey, f: PlainTcp, buf: bytes, start: int, end: int, vnet: int, now: float
    ) -> tuple[bool, bytes | None]:
        """Whether the receipt gate holds this client segment, and the copy with its ACK
        lowered that goes instead when it has one."""
        gate = self.gate
        _, _, _, _, seq, ack, flags, size = f
        seq_end = (seq + size + (flags & FIN)) & MASK
        if flags & ACK and gate.must_hold(key, ack):
            lowered = self._ahead(key, ack, flags, seq_end, buf, start, end, vnet, now)
            return lowered is None, lowered
        if gate.owed and key in gate.owed:
            gate.passed(key, ack, buf[start:end], vnet, seq_end)
        return False, None

    def _other_frame(
        self,
        buf: bytes,
        header_start: int,
        start: int,
        end: int,
        vnet: int,
        now: float,
        *,
        fenced: bool,
    ) -> bool:
        """A client frame that is not plain IPv4 TCP: logged (unless ``fenced``: let go by
        the write fence), then True if the fence or the gate holds it."""
        frame = buf[start:end]
        pkt = parse_frame(frame, vnet)
        if not fenced:
            self.log.client_frame(frame, vnet, pkt)
            fence = self.fence
            if fence is not None and fence.offer(frame, vnet, buf[header_start:end], now, pkt):
                return True
        return not self.gate.client_frame(frame, now, vnet, pkt)

    def _fenced_to_guest(self, framed: list[bytes]) -> None:
        """Client frames the write fence let go (framed, in their order): on through the
        gate and the window, as if they came now."""
        if framed:
            buf, spans = Splitter(self.options.vnet_hdr).feed(b"".join(framed))
            self._client_frames(buf, spans, fenced=True)

    def _client_frames_done(
        self, count: int, out: list[bytes | memoryview], passed: int, now: float
    ) -> None:
        self.stats["client_frames"] += count
        if out:
            self._send("red0", out, passed)
        self._arm_gate_timer()
        self._receipts_soon(now)

    def _receipts_soon(self, now: float) -> None:
        """What this host now holds, soon: an uploading client's bytes need not wait for
        the guest's next output (the log's start moves only on guest ACKs already
        forwarded, so a receipt here still follows every frame it relies on)."""
        if self.options.receipts and self.log.has_receipts() and self._receipt_timer is None:
            wait = self._receipts_sent_at + self.options.receipt_interval - now
            if wait <= 0:
                self._send_receipts([], 0)
            else:
                loop = asyncio.get_running_loop()
                self._receipt_timer = loop.call_later(wait, self._receipts_due)

    def _receipts_due(self) -> None:
        self._receipt_timer = None
        self._send_receipts([], 0)

    def _ahead(
        self,
        key: FlowKey,
        ack: int,
        flags: int,
        seq_end: int,
        buf: bytes,
        start: int,
        end: int,
        vnet: int,
        now: float,
    ) -> bytes | None:
        """A client frame that must not reach the secondary as it is (ACK ahead of its
        output): the frame to send instead (ACK lowered, framed), or None: the gate holds
        it."""
        gate = self.gate
        sent = gate.lowered_ack(key)
        if sent is not None and not flags & (SYN | RST):
            frame = buf[start:end]
            gate.lowered(key, ack, frame, vnet, seq_end)
            return encode_frame(lower_ack(frame, vnet, sent), vnet, vnet_hdr=self.options.vnet_hdr)
        gate.hold(key, ack, buf[start:end], vnet, now)
        return None

    def _guest_frames(self, buf: bytes, spans: list[Span]) -> None:
        log, gate, pacing, fence, keep = self.log, self.gate, self.pacing, self.fence, self.keep
        released: list[tuple[bytes, int]] = []
        paced: list[bytes] = []
        answered = False
        coalescing = self.options.coalesce
        fields: list[PlainTcp | None] = []
        for _, start, end, vnet in spans:
            f = plain_tcp(buf, start, end, vnet)
            if coalescing:
                fields.append(f)
            if f is not None:
                src, dst, sport, dport, seq, ack, flags, size = f
                key = (TCP, src, dst, sport, dport)
                log.guest_ack(key, flags, ack)
                if flags & RST:
                    keep.forget(key)
                elif size or flags & FIN:
                    keep.guest(key, seq, size + (flags & FIN), buf[start:end], vnet)
                if pacing is not None:
                    if flags & RST:
                        paced += pacing.client_reset(key)
                    elif flags & SYN:
                        if flags & ACK:
                            paced += pacing.guest_syn_ack(key, window_scale(buf, start, end, vnet))
                    elif flags & ACK:
                        paced += pacing.guest_ack(key, ack, tcp_window(buf, start, vnet))
                more = gate.guest_sent(key, flags, seq, size)
                if fence is not None and fence.pending and fence.guest(key, flags, seq, size):
                    answered = True
            else:
                frame = buf[start:end]
                pkt = parse_frame(frame, vnet)
                log.guest_frame(frame, vnet, pkt)
                more = gate.guest_frame(frame, vnet, pkt)
            if more:
                released += more
        self.stats["guest_frames"] += len(spans)
        self._to_guest(released)
        self._paced_to_guest(paced)
        if answered:
            assert fence is not None
            self._fenced_to_guest(fence.release(asyncio.get_running_loop().time()))
        self._forward_output(buf, spans, fields)

    def _forward_output(self, buf: bytes, spans: list[Span], fields: list[PlainTcp | None]) -> None:
        """The guest's frames to the comparator: coalesced (``fields`` are theirs), or as
        they came (``fields`` empty)."""
        out: list[bytes | memoryview]
        if fields:
            out, count = coalesce(buf, spans, fields, self.options.vnet_hdr)
            self.stats["coalesced_frames"] += len(spans) - count
        else:
            runs = wire_runs(spans)
            count = len(spans)
            if len(runs) == 1 and runs[0] == (0, len(buf)):
                out = [buf]
            else:
                view = memoryview(buf)
                out = [view[a:b] for a, b in runs]
        self._send_receipts(out, count)

    def _send_receipts(self, out: list[bytes | memoryview], count: int) -> None:
        """``out`` (``count`` guest frames as they came), then the receipts they made
        possible, in one write."""
        if self.options.receipts:
            if self._receipt_timer is not None:  # these go now
                self._receipt_timer.cancel()
                self._receipt_timer = None
            receipts = encode_receipts(self.log.receipts())
            if receipts:
                self._receipts_sent_at = asyncio.get_running_loop().time()
                self.stats["receipt_frames"] += len(receipts)
                vnet = self.options.vnet_hdr
                out += [encode_frame(r, 0, vnet_hdr=vnet) for r in receipts]
                count += len(receipts)
        if out:
            self._send("comparator", out, count)

    def checkpoint(self) -> None:
        """The secondary loaded a checkpoint: the gate forgets the old guest's output and
        lets what it held go; the comparator forgot every receipt. The guest's output kept
        for a failover is void: read to its end first (the secondary stopped for the load
        after its last frame before it), so nothing from before stays kept."""
        red1 = self._sides.get("red1")
        if red1 is not None:
            red1.drain()
        self.keep.checkpoint()
        self.log.receipts_forgotten()
        self._to_guest(self.gate.checkpoint())
        if self.pacing is not None:
            self._paced_to_guest(self.pacing.checkpoint())
        if self.fence is not None:
            self._fenced_to_guest(self.fence.checkpoint(asyncio.get_running_loop().time()))
            self._arm_gate_timer()

    def _to_guest(self, frames: list[tuple[bytes, int]]) -> None:
        if frames:
            vnet = self.options.vnet_hdr
            chunks: list[bytes | memoryview] = [
                encode_frame(d, n, vnet_hdr=vnet) for d, n in frames
            ]
            self._send("red0", chunks, len(frames))

    def _paced_to_guest(self, framed: list[bytes]) -> None:
        """Client frames the window held, framed already, in their order."""
        if framed:
            self._send("red0", list(framed), len(framed))

    def _send(self, name: str, chunks: list[bytes | memoryview], count: int) -> None:
        side = self._sides.get(name)
        if side is None or side.transport is None:
            self.stats["dropped_frames"] += count  # as QEMU drops into a closed chardev
            return
        side.transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def promote(self) -> list[bytes]:
        """Failover: the mirror is gone for good; the frames the promoted guest must get.
        The client ACKs the gate lowered and still owes go into the log too
        (:attr:`ClientLog.owed_acks`): the promoted guest, behind the dead primary, gets no
        others until its output reaches what the client acknowledged."""
        red1 = self._sides.get("red1")
        if red1 is not None:
            red1.drain()  # all the guest sent: OutputKeep.take() has it
        self.promoted = True
        if self.pacing is not None:
            self.pacing.clear()  # the replay below hands the log over, held frames included
        self.log.owed_acks = self.gate.handover()
        if self.fence is not None:  # the replay keeps the writes' order (fence.py)
            self.fence_handover = self.fence.handover()
        mirror = self._sides.pop("mirror", None)
        if mirror is not None and mirror.transport is not None:
            mirror.transport.close()
        return self.log.unacked()

    async def stop(self) -> None:
        for timer in (self._gate_timer, self._receipt_timer):
            if timer is not None:
                timer.cancel()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for side in list(self._sides.values()):
            if side.transport is not None:
                side.transport.close()
        for server in self._servers:
            server.close()
