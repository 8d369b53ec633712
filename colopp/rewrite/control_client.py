"""The agent's side of the translator's control socket (:mod:`colopp.rewrite.control`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

from colopp.errors import ConfigError
from colopp.rewrite.control import MAX_REQUEST_BYTES, READY_REQUEST

#: How often :func:`wait_ready` asks.
READY_POLL_S = 0.05


async def request(path: Path, line: bytes, timeout: float) -> dict[str, Any]:
    """Send one request line to the translator listening on ``path``; its reply.

    Raises:
        ConfigError: no translator answers there in ``timeout`` seconds, or it refused.
    """
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_REQUEST_BYTES)
            try:
                writer.write(line)
                await writer.drain()
                raw = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"translator control {path}: {exc or 'timed out'}") from exc
    try:
        reply = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"translator control {path}: bad reply {raw[:80]!r}") from exc
    if not isinstance(reply, dict) or reply.get("ok") is not True:
        raise ConfigError(f"translator control {path} refused: {reply!r}")
    return reply


async def load_table(path: Path, rows: list[dict[str, Any]], timeout: float) -> None:
    """Replace the running translator's table with ``rows`` (raises as :func:`request`)."""
    line = json.dumps({"op": "load", "rows": rows}, separators=(",", ":")).encode() + b"\n"
    await request(path, line, timeout)


async def wait_ready(path: Path, timeout: float) -> None:
    """Until the translator on ``path`` is connected to QEMU's four chardevs.

    Raises:
        ConfigError: it was not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            reply = await request(path, READY_REQUEST, max(0.01, deadline - time.monotonic()))
            if reply.get("ready") is True:
                return
        except ConfigError as exc:  # not listening yet
            last = exc
        await asyncio.sleep(READY_POLL_S)
    raise ConfigError(f"translator not connected within {timeout} s ({last})")
