"""The controller's client for one host agent (JSON lines over TCP, every call timed)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
from typing import Any, ClassVar, Literal

from colopp.agent.protocol import MAX_LINE, check_result, decode_reply, encode, raise_remote
from colopp.arbiter.token import CONTROLLER_FENCE, FENCE_PARAM
from colopp.errors import AgentError
from colopp.retry import RetryExhausted, connect_with_retry
from colopp.tls import agent_client_context

#: How long :meth:`AgentClient.close` waits for the transport to finish closing.
CLOSE_WAIT_S = 1.0
#: The longest one connection attempt may take (a TLS handshake included).
CONNECT_ATTEMPT_S = 2.0


class AgentClient:
    """One connection to one agent; calls are serialized on it.

    In fleet mode the leading controller replica sets :attr:`controller_token` (its etcd
    leadership's fencing token); every call then carries it, and agents refuse calls of a
    replica that lost the lead once they have seen its successor's larger token.
    """

    #: This process's leadership token (0: single-controller mode, nothing is sent).
    controller_token: ClassVar[int] = 0

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        token: str,
        tls: ssl.SSLContext | Literal["env"] | None = "env",
    ) -> None:
        """``tls``: the client context for agents that serve mutual TLS; by default the
        one ``COLOPP_AGENT_TLS_{CERT,KEY,CA}`` name (none set: plain TCP, the local lab)."""
        self.tls = agent_client_context() if tls == "env" else tls
        self.name = name
        self.host = host
        self.port = port
        self._token = token
        self._ids = itertools.count(1)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def connect(self, within: float = 15.0) -> None:
        """Connect, retrying while the agent starts.

        Raises:
            AgentError: not reachable within ``within`` seconds.
        """
        # One attempt never outlasts ``within``: a host whose link is down drops the SYN,
        # and a heartbeat that waited 2 s for it delayed the next beat to the *other* side
        # past its lease (a primary whose secondary's host died then fenced itself).
        attempt_s = min(CONNECT_ATTEMPT_S, max(within, 0.05))
        try:
            self._reader, self._writer = await connect_with_retry(
                lambda: asyncio.wait_for(
                    asyncio.open_connection(
                        self.host,
                        self.port,
                        limit=MAX_LINE,
                        ssl=self.tls,
                        server_hostname=self.host if self.tls is not None else None,
                    ),
                    attempt_s,
                ),
                within,
            )
        except RetryExhausted as exc:
            raise AgentError(
                f"agent {self.name} at {self.host}:{self.port} unreachable: {exc.last}"
            ) from exc.last

    async def call(
        self,
        method: str,
        timeout: float = 30.0,
        connect_within: float | None = None,
        **params: Any,
    ) -> Any:
        """Call ``method`` on the agent and return its result. ``connect_within``: how long
        a new connection may take (default: the call's timeout, at most 15 s); a host whose
        kernel does not even accept the connection in that time is not there.

        Raises:
            ColoppError subclass: the agent's error, re-raised with its class.
            AgentError: transport failure, timeout, or a reply that is not JSON, lacks
                ``id``/``result`` or the result fields the controller reads.
        """
        async with self._lock:
            if self._writer is None or self._reader is None:
                # Bounded by the call's own timeout: a heartbeat must never wait 15 s
                # on a host whose link is down.
                within = min(timeout, 15.0)
                if connect_within is not None:
                    within = min(within, connect_within)
                await self.connect(within)
            assert self._writer is not None and self._reader is not None
            rid = next(self._ids)
            if AgentClient.controller_token:
                fence = {"protection": CONTROLLER_FENCE, "token": AgentClient.controller_token}
                params = {**params, FENCE_PARAM: fence}
            try:
                self._writer.write(
                    encode({"id": rid, "token": self._token, "method": method, "params": params})
                )
                await self._writer.drain()
                line = await asyncio.wait_for(self._reader.readline(), timeout)
            except TimeoutError as exc:
                await self._drop()
                raise AgentError(
                    f"agent {self.name}: {method} timed out after {timeout:.0f}s"
                ) from exc
            except OSError as exc:
                await self._drop()
                raise AgentError(f"agent {self.name}: {method}: {exc}") from exc
            except ValueError as exc:  # a line longer than MAX_LINE
                await self._drop()
                raise AgentError(f"agent {self.name}: {method}: reply too long") from exc
            if not line:
                await self._drop()
                raise AgentError(f"agent {self.name} closed the connection during {method}")
            try:
                reply = decode_reply(line, expected=rid)
            except AgentError as exc:
                await self._drop()  # the stream cannot be trusted any more
                raise AgentError(f"agent {self.name}: {method}: {exc}") from exc
        if reply.error is not None:
            raise_remote(self.name, reply.error)
        try:
            return check_result(method, reply.result)
        except AgentError as exc:
            raise AgentError(f"agent {self.name}: {exc}") from exc

    async def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def close(self) -> None:
        """Close the connection and wait (briefly) until it is closed: a TLS transport
        closes asynchronously, and a loop that ends first leaks it. Failure paths use
        ``_drop``, which never waits."""
        writer = self._writer
        await self._drop()
        if writer is not None:
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), CLOSE_WAIT_S)
