"""In the comparator: learn young offsets from both guests' frames and forward them, in
order, to the secondary host's agent (its listener: :mod:`colopp.rewrite.young_link`).

Sending never blocks the data path: messages go through a queue drained by one task. A
message the secondary host did not acknowledge is retried until it is, or until the next
completed checkpoint makes it moot.

Release gate: while an offset of the current epoch is not yet acknowledged,
:meth:`YoungForwarder.holding` is true and the comparator holds *all* its output (the
connection's SYN-ACK is in it), so a client never sees a SYN-ACK whose offset the secondary
host does not have: if the primary dies then, the promoted secondary still translates that
connection at the next failover. The hold lasts one replication-network round trip (~1 ms); it
is cut short by a completed checkpoint (the secondary is then the primary's copy and needs no
offset) and bounded by :data:`HOLD_LIMIT_S` per offset (an unreachable secondary host must not
stop the service: the connection then survives one failover, not two; while the last delivery
attempt failed nothing is held). The bound is each offset's own: an older offset whose hold
lapsed unacknowledged does not let a newer one's SYN-ACK out unheld (issue 18: with slow
acknowledgements every later connection of the epoch was released at once and missing from the
promoted secondary's record).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from colopp.compare.framing import DecodedFrame
from colopp.compare.young_tap import YoungMessage, YoungTap, adopted_json
from colopp.errors import AgentError

log = logging.getLogger(__name__)

#: The secondary host's young-offset port, derived from the comparator's port.
YOUNG_PORT_OFFSET = 2000
#: Longest the comparator holds its output for unacknowledged offsets (seconds).
HOLD_LIMIT_S = 0.5


@dataclass(slots=True)
class _Hold:
    """The release gate's hold for one unacknowledged offset."""

    epoch: int
    since: float  # when the offset was learned
    lapsed: bool = False  # passed HOLD_LIMIT_S unacknowledged (counted once)


class YoungForwarder:
    """Feeds a :class:`YoungTap` and ships what it learns."""

    def __init__(self, host: str, port: int) -> None:
        self.tap = YoungTap()
        # A restarted comparator starts a new run: the secondary host forgets older runs.
        self.run = secrets.token_hex(4)
        self.sender = YoungSender(host, port)
        self.sent = 0
        self.failures = 0
        self.hold_expired = 0  # holds cut by HOLD_LIMIT_S (offsets not acknowledged in time)
        self.adopted = 0  # offsets proven taken by their client (see young_tap)
        #: Called when the gate opens (every offset of the epoch acknowledged).
        self.on_settled: Callable[[], None] | None = None
        # The tap's epoch at the last completed checkpoint: offsets of older epochs are void
        # (the secondary loaded a newer state) and gate nothing; those of the epoch that a
        # STOP has just closed still gate until the checkpoint completes.
        self._completed = 0
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._unacked: Counter[int] = Counter()  # epoch -> offsets not acknowledged yet
        # One hold per unacknowledged offset, in sending (= acknowledgement) order.
        self._holds: deque[_Hold] = deque()
        self._was_holding = False
        # The last delivery attempt failed (the secondary host is unreachable or restarting):
        # hold nothing until one succeeds, so the service does not stall on every new
        # connection's hold while the link is down.
        self._link_down = False

    def frames(self, side: str, frames: list[DecodedFrame], now: float = 0.0) -> None:
        """Every frame one guest sent, before the comparator's core sees it (``now``: the
        comparator's clock, which starts a hold)."""
        learn = self.tap.primary if side == "primary" else self.tap.secondary
        tap = self.tap
        for data, vnet_hdr_len in frames:
            message = learn(data, vnet_hdr_len)
            if message is not None:
                self._unacked[message.epoch] += 1
                self._holds.append(_Hold(message.epoch, now))
                self._was_holding = True
                self._put(message.to_json())
            elif tap.awaiting:
                adopted = tap.adoption(data, vnet_hdr_len)
                if adopted is not None:  # not gated: the offset itself is already there
                    self.adopted += 1
                    self._put(adopted_json(*adopted))

    def holding(self, now: float) -> bool:
        """Must the comparator hold its output now (see the module doc)?"""
        if self._link_down:
            return False
        held = False
        for hold in self._holds:
            if hold.epoch < self._completed:
                continue
            if now - hold.since < HOLD_LIMIT_S:
                held = True
            elif not hold.lapsed:
                hold.lapsed = True
                self.hold_expired += 1
                log.warning(
                    "young offset not acknowledged in %.1f s: output released", HOLD_LIMIT_S
                )
        return held

    def hold_left(self, now: float) -> float:
        """Seconds until every current hold has expired (0 when not holding)."""
        ends = [h.since + HOLD_LIMIT_S - now for h in self._holds if h.epoch >= self._completed]
        return max([0.0, *ends])

    def status(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "failures": self.failures,
            "hold_expired": self.hold_expired,
            "adopted": self.adopted,
            "straddled": self.tap.learner.straddled,
            "reopened": self.tap.learner.reopened,
        }

    def checkpoint_started(self) -> None:
        """The primary's STOP, once every frame sent before it was read (young_tap)."""
        self.tap.checkpoint_started()

    def checkpoint_completed(self) -> None:
        self.tap.checkpoint_completed()
        self._completed = self.tap.epoch
        self._settle()
        self._put({"op": "completed", "epoch": self.tap.epoch})

    def _acked(self, epoch: int) -> None:
        self._unacked[epoch] -= 1
        if self._unacked[epoch] <= 0:
            del self._unacked[epoch]
        for index, hold in enumerate(self._holds):  # the oldest of that epoch: sending order
            if hold.epoch == epoch:
                del self._holds[index]
                break
        self._settle()

    def _settle(self) -> None:
        # Older epochs' offsets no longer gate anything: a completed checkpoint voided them.
        if any(n > 0 for epoch, n in self._unacked.items() if epoch >= self._completed):
            return
        was_holding, self._was_holding = self._was_holding, False
        if was_holding and self.on_settled is not None:
            self.on_settled()

    def _put(self, body: dict[str, Any]) -> None:
        self._queue.put_nowait(body | {"run": self.run})
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while not self._queue.empty():
            body = self._queue.get_nowait()
            while True:
                try:
                    await self.sender.send(body)
                    self.sent += 1
                    self._link_down = False
                    break
                except AgentError as exc:
                    self.failures += 1
                    self._link_down = True
                    log.warning("young offset: %s", exc)
                    if body["op"] in ("young", "adopted") and body["epoch"] < self._completed:
                        break  # a later checkpoint made it moot
                    await asyncio.sleep(0.2)  # the secondary host is restarting: retry
            if body["op"] == "young":
                self._acked(body["epoch"])

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.sender.close()


class YoungSender:
    """The comparator's client: send one message and wait for its acknowledgement."""

    def __init__(self, host: str, port: int, timeout: float = 1.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()

    async def send(self, message: YoungMessage | dict[str, Any]) -> None:
        """Deliver ``message``; raises AgentError when the secondary host did not ack it."""
        body = message.to_json() if isinstance(message, YoungMessage) else message
        async with self._lock:
            try:
                if self._streams is None:
                    self._streams = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port), self.timeout
                    )
                reader, writer = self._streams
                writer.write(json.dumps(body).encode() + b"\n")
                await writer.drain()
                reply = json.loads(await asyncio.wait_for(reader.readline(), self.timeout))
            except (OSError, TimeoutError, ValueError) as exc:
                await self.close()
                raise AgentError(f"young offset not delivered to {self.host}: {exc}") from exc
        if not reply.get("ok"):
            raise AgentError(f"young offset refused by {self.host}: {reply.get('error')}")

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
