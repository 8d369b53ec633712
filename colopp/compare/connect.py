"""Opening the comparator's sockets: listen, or connect to QEMU's chardev servers with
retries until they exist (QEMU may still be starting)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable

from colopp.compare.addresses import Endpoint
from colopp.errors import ColoppError

RETRY_S = 0.05


async def open_endpoint(
    endpoint: Endpoint, factory: Callable[[], asyncio.BaseProtocol], connect_timeout: float
) -> asyncio.Server | None:
    """Listen on ``endpoint`` (a unix socket gets mode 0600; returns the server) or connect
    to it, retrying for ``connect_timeout`` seconds (returns None).

    Raises ColoppError when the address cannot be listened on or connected to in time.
    """
    loop = asyncio.get_running_loop()
    if endpoint.listen:
        try:
            if endpoint.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(endpoint.path)
                server = await loop.create_unix_server(factory, endpoint.path)
                os.chmod(endpoint.path, 0o600)
                return server
            return await loop.create_server(factory, endpoint.host, endpoint.port or 0)
        except OSError as exc:
            raise ColoppError(f"cannot listen on {endpoint}: {exc}") from exc
    deadline = loop.time() + connect_timeout
    while True:
        try:
            if endpoint.path is not None:
                await loop.create_unix_connection(factory, endpoint.path)
            else:
                await loop.create_connection(factory, endpoint.host or "", endpoint.port or 0)
            return None
        except OSError as exc:
            if loop.time() >= deadline:
                raise ColoppError(f"cannot connect to {endpoint}: {exc}") from exc
            await asyncio.sleep(RETRY_S)


async def connect_unix(endpoint: Endpoint, connect_timeout: float) -> socket.socket:
    """A non-blocking socket connected to the unix socket QEMU serves at ``endpoint``,
    retrying for ``connect_timeout`` seconds.

    Raises ColoppError for a listen or TCP endpoint, or when it cannot connect in time.
    """
    if endpoint.listen or endpoint.path is None:
        raise ColoppError(f"client_in must be a unix socket QEMU serves, not {endpoint}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, endpoint.path)
            return sock
        except OSError as exc:
            sock.close()
            if loop.time() >= deadline:
                raise ColoppError(f"cannot connect to {endpoint}: {exc}") from exc
            await asyncio.sleep(RETRY_S)
