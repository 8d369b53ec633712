"""The agent's TCP server: authenticate, decode, dispatch to an allow-listed method."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from colopp.agent.protocol import MAX_LINE, decode_request, encode, error_payload
from colopp.errors import AgentError, ColoppError

log = logging.getLogger(__name__)
Handler = Callable[..., Awaitable[Any]]


class AgentServer:
    """Serves ``methods`` to clients holding ``token``."""

    def __init__(self, token: str, methods: Mapping[str, Handler]) -> None:
        self._token = token.encode()
        self._methods = dict(methods)
        self._servers: list[asyncio.Server] = []

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port``.

        Raises:
            AgentError: the address cannot be bound (e.g. port in use).
        """
        try:
            server = await asyncio.start_server(self._serve, host, port, limit=MAX_LINE)
        except OSError as exc:
            raise AgentError(f"agent cannot listen on {host}:{port}: {exc.strerror}") from exc
        self._servers.append(server)

    @property
    def ports(self) -> list[int]:
        """The bound ports (useful when started on port 0)."""
        return [s.sockets[0].getsockname()[1] for s in self._servers]

    async def close(self) -> None:
        """Stop listening."""
        for server in self._servers:
            server.close()
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(encode(await self._answer(line)))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = decode_request(line)
        except AgentError as exc:
            return {"id": None, "error": error_payload(exc)}
        if not hmac.compare_digest(request.token.encode(), self._token):
            return {"id": request.id, "error": error_payload(AgentError("bad token"))}
        handler = self._methods.get(request.method)
        if handler is None:
            return {
                "id": request.id,
                "error": error_payload(AgentError(f"no method {request.method!r}")),
            }
        try:
            return {"id": request.id, "result": await handler(**request.params)}
        except ColoppError as exc:
            return {"id": request.id, "error": error_payload(exc)}
        except TypeError as exc:
            return {
                "id": request.id,
                "error": error_payload(AgentError(f"{request.method}: {exc}")),
            }
        except Exception as exc:  # the agent must answer, whatever broke
            log.exception("agent method %s failed", request.method)
            return {
                "id": request.id,
                "error": error_payload(AgentError(f"{request.method}: {exc!r}")),
            }
