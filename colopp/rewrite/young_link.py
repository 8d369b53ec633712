"""Young offsets from the comparator (host A) to the secondary host's agent (host B).

JSON lines over TCP on the replication network; one reply line per request:

- ``{"op": "young", "guest": [a, p], "peer": [a, p], "delta": D, "epoch": E}`` → ``{"ok": true}``
  once stored (the comparator releases that connection's SYN-ACK only then);
- ``{"op": "adopted", "guest": [a, p], "peer": [a, p], "epoch": E}``: the client took the
  primary's ISN for that young connection (without it the offset stays out of the record;
  a ``young`` request with ``"adoption": true`` announces one);
- ``{"op": "completed", "epoch": N}``: N checkpoints completed; older entries are dropped.

:func:`handle_young_request` is the pure part; :func:`serve_young` the listener (in the
secondary's agent); the comparator's client is :class:`colopp.compare.young_send.YoungSender`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from colopp.errors import ConfigError
from colopp.rewrite.table import MASK, OffsetTable
from colopp.rewrite.young import YoungOffsets

MAX_LINE = 64 * 1024


def handle_young_request(young: YoungOffsets, line: bytes, now: float) -> bytes:
    """Apply one request line to ``young`` (``now``: the wall clock, when it arrived); the
    reply line. Bad input changes nothing.

    A request naming another comparator ``run`` than the last one starts over: a restarted
    comparator counts epochs from 0 again (and its agent forces a checkpoint).
    """
    try:
        request = json.loads(line)
        run = request.get("run") if isinstance(request, dict) else None
        if run is not None and run != young.run:
            young.start_run(str(run))
        reply = _apply(young, request, now)
    except (ValueError, ConfigError) as exc:
        reply = {"ok": False, "error": str(exc)}
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"


def _apply(young: YoungOffsets, request: Any, now: float) -> dict[str, Any]:
    if not isinstance(request, dict):
        raise ConfigError("a request is a JSON object")
    op = request.get("op")
    epoch = request.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ConfigError("epoch must be a non-negative integer")
    if op == "young":
        row = {k: request.get(k) for k in ("guest", "peer", "delta")} | {"last_seen": 0.0}
        table = OffsetTable.from_snapshot([row])
        key = next(iter(table))
        awaits = request.get("adoption", False)
        isn = request.get("isn")
        if not isinstance(awaits, bool):
            raise ConfigError("adoption must be true or false")
        if isn is not None and (
            not isinstance(isn, int) or isinstance(isn, bool) or not 0 <= isn <= MASK
        ):
            raise ConfigError("isn must be a 32-bit unsigned integer")
        young.learned(key, table.delta(key), epoch, now, awaits_adoption=awaits, isn=isn)
        return {"ok": True}
    if op == "adopted":
        row = {k: request.get(k) for k in ("guest", "peer")} | {"delta": 1, "last_seen": 0.0}
        young.adopted(next(iter(OffsetTable.from_snapshot([row]))), epoch)
        return {"ok": True}
    if op == "completed":
        young.completed(epoch)
        return {"ok": True}
    raise ConfigError(f"unknown op {op!r}: expected young, adopted or completed")


async def serve_young(young: YoungOffsets, host: str, port: int) -> asyncio.Server:
    """Listen for the comparator's young offsets (in the secondary host's agent)."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(handle_young_request(young, line, time.time()))
                await writer.drain()
        except (ValueError, ConnectionError):
            pass  # an over-long line or a vanished comparator: it reconnects
        finally:
            writer.close()

    return await asyncio.start_server(session, host, port, limit=MAX_LINE)
