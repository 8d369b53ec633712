"""The agent's TCP server: authenticate, decode, dispatch to an allow-listed method."""

from __future__ import annotations

import asyncio
import hmac
import logging
import resource
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from colopp.agent.protocol import MAX_LINE, Request, decode_request, encode, error_payload
from colopp.arbiter.token import TokenGate, admit_request
from colopp.errors import AgentError, ColoppError

log = logging.getLogger(__name__)
Handler = Callable[..., Awaitable[Any]]


#: Seconds a new connection has to send its first authenticated request.
AUTH_TIMEOUT = 5.0
#: Connections not yet authenticated, at most; beyond it the oldest is dropped. The
#: controller's connections, once authenticated, never count, so a flood of idle or
#: tokenless connections cannot lock it out (nor exhaust the agent's file descriptors).
MAX_UNAUTHENTICATED = 64


def raise_open_files_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            log.warning("cannot raise the open files limit above %d", soft)
    return soft


class AgentServer:
    """Serves ``methods`` to clients holding ``token``.

    A connection must send an authenticated request within ``auth_timeout`` seconds, and
    at most ``max_unauthenticated`` connections may wait for theirs (the oldest goes first).
    """

    def __init__(
        self,
        token: str,
        methods: Mapping[str, Handler],
        auth_timeout: float = AUTH_TIMEOUT,
        max_unauthenticated: int = MAX_UNAUTHENTICATED,
        fencing: TokenGate | None = None,
    ) -> None:
        self._token = token.encode()
        #: Fencing tokens (fleet mode): a request carrying an older one is refused.
        self.fencing = fencing or TokenGate()
        self._methods = dict(methods)
        self._servers: list[asyncio.Server] = []
        self._auth_timeout = auth_timeout
        self._max_unauthenticated = max_unauthenticated
        # Insertion-ordered: the first one is the oldest.
        self._unauthenticated: dict[asyncio.StreamWriter, None] = {}

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        """Listen on ``host:port`` (with ``tls``: TLS only, as the context requires).

        Raises:
            AgentError: the address cannot be bound (e.g. port in use).
        """
        try:
            server = await asyncio.start_server(
                self._serve,
                host,
                port,
                limit=MAX_LINE,
                ssl=tls,
                ssl_handshake_timeout=self._auth_timeout if tls is not None else None,
            )
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

    def _admit(self, writer: asyncio.StreamWriter) -> None:
        self._unauthenticated[writer] = None
        while len(self._unauthenticated) > self._max_unauthenticated:
            oldest = next(iter(self._unauthenticated))
            del self._unauthenticated[oldest]
            oldest.close()  # its reader sees EOF and its _serve ends

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._admit(writer)
        deadline = asyncio.get_running_loop().time() + self._auth_timeout
        try:
            while True:
                try:
                    if writer in self._unauthenticated:
                        async with asyncio.timeout_at(deadline):
                            line = await reader.readline()
                    else:
                        line = await reader.readline()
                except TimeoutError:
                    refusal = AgentError(f"no authenticated request within {self._auth_timeout}s")
                    writer.write(encode({"id": None, "error": error_payload(refusal)}))
                    break
                except ValueError:  # LimitOverrunError: the line is longer than MAX_LINE
                    refusal = AgentError(f"request line longer than {MAX_LINE} bytes")
                    writer.write(encode({"id": None, "error": error_payload(refusal)}))
                    break
                if not line:
                    break
                reply = await self._answer(line, writer)
                try:
                    data = encode(reply)
                except (TypeError, ValueError) as exc:  # e.g. a result with non-string keys
                    failure = AgentError(f"reply cannot be encoded: {exc}")
                    data = encode({"id": reply.get("id"), "error": error_payload(failure)})
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._unauthenticated.pop(writer, None)
            writer.close()

    async def _answer(self, line: bytes, writer: asyncio.StreamWriter) -> dict[str, Any]:
        """The reply to one request line; a valid token authenticates the connection."""
        try:
            request = decode_request(line)
        except AgentError as exc:
            return {"id": None, "error": error_payload(exc)}
        # surrogatepass: a lone surrogate in the token is refused, not a crash; its bytes
        # are not valid UTF-8, so they never equal the configured token's.
        given = request.token.encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(given, self._token):
            return {"id": request.id, "error": error_payload(AgentError("bad token"))}
        # Before the call runs: a long first call (launch, wait_colo) must not be evicted.
        self._unauthenticated.pop(writer, None)
        return await self._dispatch(request)

    async def _dispatch(self, request: Request) -> dict[str, Any]:
        handler = self._methods.get(request.method)
        if handler is None:
            return {
                "id": request.id,
                "error": error_payload(AgentError(f"no method {request.method!r}")),
            }
        try:
            params = admit_request(self.fencing, request.params)
            return {"id": request.id, "result": await handler(**params)}
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
