"""Socket addresses of the comparator's three data paths, parsed from the command line.

Syntax (``listen:`` means the comparator is the server, otherwise it connects)::

    unix:/run/colopp/compare0.sock          connect to a unix socket
    tcp:198.18.0.10:9003                    connect over TCP
    listen:unix:/run/colopp/red1.sock       listen on a unix socket
    listen:tcp:0.0.0.0:9004                 listen over TCP (IPv6 hosts in [brackets])

Pure parsing; raises :class:`~colopp.errors.ConfigError` on anything else.
"""

from __future__ import annotations

from dataclasses import dataclass

from colopp.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one data path lives: a unix ``path`` or a TCP ``host``/``port``; who listens."""

    listen: bool
    path: str | None = None
    host: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        where = f"unix:{self.path}" if self.path is not None else f"tcp:{self.host}:{self.port}"
        return f"listen:{where}" if self.listen else where


def parse_endpoint(text: str) -> Endpoint:
    """Parse one address of the syntax above. Raises ConfigError when it does not fit."""
    rest = text
    listen = rest.startswith("listen:")
    if listen:
        rest = rest[len("listen:") :]
    if rest.startswith("unix:"):
        path = rest[len("unix:") :]
        if not path:
            raise ConfigError(f"empty unix socket path in {text!r}")
        return Endpoint(listen, path=path)
    if rest.startswith("tcp:"):
        host, sep, port_text = rest[len("tcp:") :].rpartition(":")
        if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ConfigError(f"bad tcp address {text!r}: want tcp:HOST:PORT")
        return Endpoint(listen, host=host.strip("[]"), port=int(port_text))
    raise ConfigError(f"bad address {text!r}: want [listen:]unix:PATH or [listen:]tcp:HOST:PORT")
