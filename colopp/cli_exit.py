"""The CLI's exit codes and how an error maps onto one (pure, no I/O but the message)."""

from __future__ import annotations

from enum import IntEnum

import typer
from rich.console import Console

from colopp.errors import ColoppError, ConfigError, DomainNotFound, StateError


class Exit(IntEnum):
    """``colopp``'s exit codes (listed in ``colopp --help`` and the README)."""

    OK = 0
    FAILURE = 1  # the operation failed (QEMU, agents, a protection ended in error, the demo)
    USAGE = 2  # bad usage or input: unknown option or value, missing setting, ambiguous name
    NOT_FOUND = 3  # no such protection (or domain)
    CONFLICT = 4  # not allowed in the current state (API 409): e.g. reprotect while protected
    UNREACHABLE = 5  # the API (COLOPP_API_URL) could not be reached
    DENIED = 6  # the API refused the token (401/403)


EPILOG = (
    "Exit codes: 0 ok; 1 the operation failed; 2 bad usage or input; 3 not found;"
    " 4 conflict with the current state; 5 API unreachable; 6 API token refused."
    "  Verbs that report take --json (machine-readable output on stdout)."
    "  With COLOPP_API_URL (+ COLOPP_API_TOKEN or COLOPP_API_TOKEN_FILE) the protection"
    " verbs go through the REST API."
)

_HTTP = {
    400: Exit.USAGE,
    401: Exit.DENIED,
    403: Exit.DENIED,
    404: Exit.NOT_FOUND,
    409: Exit.CONFLICT,
    422: Exit.USAGE,
}


def exit_code(exc: ColoppError) -> Exit:
    """The exit code for ``exc``."""
    status = getattr(exc, "status", None)
    if getattr(exc, "unreachable", False):
        return Exit.UNREACHABLE
    if isinstance(status, int):
        return _HTTP.get(status, Exit.FAILURE)
    if isinstance(exc, ConfigError):
        return Exit.USAGE
    if isinstance(exc, DomainNotFound):
        return Exit.NOT_FOUND
    if isinstance(exc, StateError):
        return Exit.CONFLICT
    return Exit.FAILURE


def fail(exc: ColoppError, console: Console) -> typer.Exit:
    """Print ``exc`` on stderr; the typer.Exit to raise with its code."""
    console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(int(exit_code(exc)))
