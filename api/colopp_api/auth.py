"""Bearer tokens: a read-write one and an optional read-only one, compared in constant time.

No token → 401; a valid token without the needed rights → 403. ``/healthz`` is open.
"""

from __future__ import annotations

import hmac
from enum import IntEnum
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from colopp_api.config import Settings

bearer = HTTPBearer(auto_error=False, description="COLOPP_API_TOKEN or COLOPP_API_READ_TOKEN")


class Rights(IntEnum):
    """What a token may do; WRITE includes READ."""

    READ = 1
    WRITE = 2


def rights_of(settings: Settings, token: str) -> Rights | None:
    """The rights ``token`` grants, None for an unknown token (both compared in full)."""
    given = token.encode()
    write = hmac.compare_digest(given, settings.write_token.encode())
    read = settings.read_token is not None and hmac.compare_digest(
        given, settings.read_token.encode()
    )
    if write:
        return Rights.WRITE
    return Rights.READ if read else None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _require(
    needed: Rights, request: Request, creds: HTTPAuthorizationCredentials | None
) -> Rights:
    if creds is None or not creds.credentials:
        raise _unauthorized("missing bearer token (Authorization: Bearer TOKEN)")
    settings: Settings = request.app.state.settings
    granted = rights_of(settings, creds.credentials)
    if granted is None:
        raise _unauthorized("invalid bearer token")
    if granted < needed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this token is read-only")
    return granted


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def require_read(request: Request, creds: Credentials) -> Rights:
    """Dependency: a read-only or read-write token."""
    return _require(Rights.READ, request, creds)


def require_write(request: Request, creds: Credentials) -> Rights:
    """Dependency: the read-write token."""
    return _require(Rights.WRITE, request, creds)


Reader = Annotated[Rights, Depends(require_read)]
Writer = Annotated[Rights, Depends(require_write)]
