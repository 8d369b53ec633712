"""In the comparator: learn young offsets from both guests' frames and forward them, in
order, to the secondary host's agent (its listener: :mod:`colopp.rewrite.young_link`).

Sending never blocks the data path: messages go through a queue drained by one task. A
message the secondary host did not acknowledge is retried until it is, or until the next
completed checkpoint makes it moot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from typing import Any

from colopp.compare.framing import DecodedFrame
from colopp.compare.young_tap import YoungMessage, YoungTap
from colopp.errors import AgentError

log = logging.getLogger(__name__)

#: The secondary host's young-offset port, derived from the comparator's port.
YOUNG_PORT_OFFSET = 2000


class YoungForwarder:
    """Feeds a :class:`YoungTap` and ships what it learns."""

    def __init__(self, host: str, port: int) -> None:
        self.tap = YoungTap()
        # A restarted comparator starts a new run: the secondary host forgets older runs.
        self.run = secrets.token_hex(4)
        self.sender = YoungSender(host, port)
        self.sent = 0
        self.failures = 0
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def frames(self, side: str, frames: list[DecodedFrame]) -> None:
        """Every frame one guest sent, before the comparator's core sees it."""
        learn = self.tap.primary if side == "primary" else self.tap.secondary
        for data, vnet_hdr_len in frames:
            message = learn(data, vnet_hdr_len)
            if message is not None:
                self._put(message.to_json())

    def checkpoint_completed(self) -> None:
        self.tap.checkpoint_completed()
        self._put({"op": "completed", "epoch": self.tap.epoch})

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
                    break
                except AgentError as exc:
                    self.failures += 1
                    log.warning("young offset: %s", exc)
                    if body["op"] == "young" and body["epoch"] < self.tap.epoch:
                        break  # a later checkpoint made it moot
                    await asyncio.sleep(0.2)  # the secondary host is restarting: retry

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
