"""The request guard: authenticate and bound a request before its body is read.

An ASGI middleware in front of every route. A request that carries a body (a
``Content-Length`` above zero, or chunked) needs a valid bearer token *before* a byte of
it is read (401 at once otherwise), may not announce more than ``max_body`` bytes (413 at
once), and is cut off with a 413 as soon as a chunked body goes past ``max_body``. So no
client can make the API read and parse a large body on the event loop that also runs
the heartbeats. Routes still check the token's rights (403 for the read-only one).
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colopp_api.auth import rights_of
from colopp_api.config import Settings


class BodyTooLarge(HTTPException):
    """A chunked body went past the limit while it was read (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit))


def too_large(limit: int) -> str:
    return f"request body larger than {limit} bytes (COLOPP_API_MAX_BODY)"


def _bearer(headers: dict[bytes, bytes]) -> str | None:
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def _refuse(send: Send, code: int, detail: str, **extra: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    headers.append((b"connection", b"close"))  # the unread body is not worth keeping
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length_text = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        try:
            length = int(length_text) if length_text is not None else 0
        except ValueError:
            await _refuse(send, 400, "Content-Length is not a number")
            return
        if length <= 0 and not chunked:
            await self.app(scope, receive, send)
            return
        token = _bearer(headers)
        if token is None or rights_of(self.settings, token) is None:
            why = "invalid bearer token" if token else "missing bearer token"
            await _refuse(
                send, 401, f"{why} (Authorization: Bearer TOKEN)", **{"www-authenticate": "Bearer"}
            )
            return
        limit = self.settings.max_body
        if length > limit:
            await _refuse(send, 413, too_large(limit))
            return
        await self._bounded(scope, receive, send, limit)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:  # raised where no handler turned it into a response
            if started:
                raise
            await _refuse(send, 413, str(exc.detail))


__all__ = ["RequestGuard"]
