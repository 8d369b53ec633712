"""The dashboard: its static page (``/dashboard``) and its live stream (server-sent events).

The page itself is public (it holds no data); everything it shows comes with the API's bearer
token, which the page keeps in ``sessionStorage`` and sends as an ``Authorization`` header,
also for the stream: the page reads ``/dashboard/stream`` with ``fetch()`` rather than
``EventSource`` (which cannot send headers), so the token never appears in a URL.

The stream (``text/event-stream``) carries, as JSON ``data:`` lines:

``hello``        ``{"now", "protection", "failovers", "switchovers", "counted_through"}``:
                 the server's clock, and the protection's failover/switchover counts over its
                 whole history up to event id ``counted_through``
``protections``  ``{"protections": [...]}`` (the ``GET /v1/protections`` shape) when it changed
``samples``      ``{"samples": [...]}`` (the ``/metrics`` shape), oldest first
``events``       ``{"events": [...]}`` (the ``/events`` shape), oldest first

It starts with the samples newer than ``since`` (or the last ``window`` seconds) and the
events as new (or with an id above ``after``, to resume), then follows the database. A
stream ends after :data:`STREAM_LIFETIME` seconds; the page reconnects from where it was.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select

from colopp_api.auth import Reader
from colopp_api.db.models import Event
from colopp_api.db.store import Store
from colopp_api.live.manager import ProtectionManager
from colopp_api.routes import present
from colopp_api.schemas import ID_PATTERN

#: Seconds between two looks at the database while streaming (samples come about every 1 s).
POLL_PERIOD = 0.5
#: Seconds between keep-alive comments on an idle stream.
KEEPALIVE = 15.0
#: A stream ends after this long (the page resumes it), so none outlives a server shutdown
#: by more than this, whatever the server's graceful-shutdown timeout.
STREAM_LIFETIME = 300.0
#: At most this many samples or events per message.
BATCH = 500

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _assets() -> dict[str, tuple[bytes, str]]:
    """Every servable file of the dashboard folder by its relative path (read once)."""
    root = resources.files("colopp_api") / "dashboard"
    found: dict[str, tuple[bytes, str]] = {}
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        for entry in folder.iterdir():
            name = f"{prefix}{entry.name}"
            if entry.is_dir():
                pending.append((entry, f"{name}/"))
                continue
            suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
            if entry.name == "LICENSE":
                found[name] = (entry.read_bytes(), "text/plain; charset=utf-8")
            elif suffix in MEDIA_TYPES:
                found[name] = (entry.read_bytes(), MEDIA_TYPES[suffix])
    return found


ASSETS = _assets()


@router.get("/dashboard")
async def dashboard_page() -> Response:
    """The dashboard's page (no data in it: the page asks for a token)."""
    body, media_type = ASSETS["index.html"]
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/dashboard/static/{asset:path}")
async def dashboard_asset(asset: str) -> Response:
    """A file of the dashboard (script, style sheet, the vendored uPlot and its licence)."""
    if asset not in ASSETS or asset == "index.html":
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dashboard file {asset}")
    body, media_type = ASSETS[asset]
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


def _sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class StreamCursor:
    """Where one stream stands: the newest sample time and event id it has sent."""

    def __init__(self, store: Store, protection_id: str | None, since: float, after: int):
        self.store = store
        self.protection_id = protection_id
        self.sample_since = since
        # Events: above ``after`` when resuming, else newer than ``since`` (the backlog).
        self.event_since = since if after == 0 else 0.0
        self.after = after
        self.listing = ""

    def hello(self) -> dict[str, Any]:
        counts = {"failover": 0, "switchover": 0}
        last = 0
        if self.protection_id is not None:
            with self.store.session() as s:
                query = (
                    select(Event.type, func.count(), func.max(Event.id))
                    .where(Event.protection_id == self.protection_id)
                    .group_by(Event.type)
                )
                for kind, count, highest in s.execute(query):
                    last = max(last, int(highest or 0))
                    if kind in counts:
                        counts[kind] = int(count)
        return {
            "now": time.time(),
            "protection": self.protection_id,
            "failovers": counts["failover"],
            "switchovers": counts["switchover"],
            "counted_through": last,
        }

    def protections(self, manager: ProtectionManager) -> dict[str, Any] | None:
        """The protection list when it differs from the one last sent."""
        listing = [
            present(r, manager.runner(r["id"])).model_dump(mode="json")
            for r in self.store.protections()
        ]
        text = json.dumps(listing, sort_keys=True)
        if text == self.listing:
            return None
        self.listing = text
        return {"protections": listing}

    def samples(self) -> list[dict[str, Any]]:
        if self.protection_id is None:
            return []
        got = self.store.samples(self.protection_id, self.sample_since, BATCH)
        if got:
            self.sample_since = float(got[-1]["t"])
        return got

    def events(self) -> list[dict[str, Any]]:
        if self.protection_id is None:
            return []
        query = select(Event).where(
            Event.protection_id == self.protection_id, Event.id > self.after
        )
        if self.event_since:
            query = query.where(Event.t > self.event_since)
        with self.store.session() as s:
            rows = list(s.scalars(query.order_by(Event.id).limit(BATCH)))
        if rows:
            self.after = rows[-1].id
        return [{"id": r.id, "t": r.t, "type": r.type, "data": r.data} for r in rows]


async def _follow(
    cursor: StreamCursor, manager: ProtectionManager, lifetime: float
) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    yield _sse("hello", cursor.hello())
    started = quiet_since = time.monotonic()
    while time.monotonic() - started < lifetime:
        sent = False
        listing = cursor.protections(manager)
        if listing is not None:
            yield _sse("protections", listing)
            sent = True
        while batch := cursor.samples():
            yield _sse("samples", {"samples": batch})
            sent = True
            if len(batch) < BATCH:
                break
        while batch := cursor.events():
            yield _sse("events", {"events": batch})
            sent = True
            if len(batch) < BATCH:
                break
        if sent:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE:
            yield f": keep-alive {time.time():.0f}\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(POLL_PERIOD)


@router.get("/dashboard/stream")
async def dashboard_stream(
    request: Request,
    _: Reader,
    protection: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    since: Annotated[float, Query(ge=0, le=1e11, allow_inf_nan=False)] = 0.0,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    window: Annotated[float, Query(ge=0, le=1e6, allow_inf_nan=False)] = 0.0,
) -> StreamingResponse:
    """Server-sent events for the dashboard (read with a bearer token; see the module doc)."""
    store: Store = request.app.state.store
    manager: ProtectionManager = request.app.state.manager
    if protection is not None and store.protection(protection) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no protection {protection}")
    if window and not since and not after:  # the server's clock, not the browser's
        since = time.time() - window
    cursor = StreamCursor(store, protection, since, after)
    return StreamingResponse(
        _follow(cursor, manager, STREAM_LIFETIME),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
