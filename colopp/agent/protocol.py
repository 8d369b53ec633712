"""The agent's wire protocol: one JSON object per line over TCP (pure helpers).

Request:  ``{"id": 1, "token": "...", "method": "status", "params": {...}}``
Response: ``{"id": 1, "result": ...}`` or ``{"id": 1, "error": {"type": "QmpError",
"message": "...", "command": "..."}}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from colopp import errors

MAX_LINE = 1 << 20
DEFAULT_PORT = 7400

_ERRORS: dict[str, type[errors.ColoppError]] = {
    cls.__name__: cls
    for cls in (
        errors.ConfigError,
        errors.QemuError,
        errors.QemuNotFound,
        errors.QemuUnsupported,
        errors.QemuStartError,
        errors.GuestError,
        errors.ImageError,
        errors.LabError,
        errors.StateError,
        errors.AgentError,
        errors.FrameError,
    )
}


@dataclass(frozen=True)
class Request:
    """A decoded request."""

    id: int
    token: str
    method: str
    params: dict[str, Any]


def encode(obj: dict[str, Any]) -> bytes:
    """One protocol line."""
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


def decode_request(line: bytes) -> Request:
    """Parse a request line.

    Raises:
        AgentError: not JSON, or fields missing or of the wrong type.
    """
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.AgentError(f"request is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise errors.AgentError("request must be a JSON object")
    rid, token, method = obj.get("id"), obj.get("token"), obj.get("method")
    params = obj.get("params", {})
    if not isinstance(rid, int) or not isinstance(token, str) or not isinstance(method, str):
        raise errors.AgentError("request needs integer id, string token and string method")
    if not isinstance(params, dict):
        raise errors.AgentError("params must be an object")
    return Request(rid, token, method, params)


def error_payload(exc: BaseException) -> dict[str, Any]:
    """How an error travels back to the controller."""
    payload: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, errors.QmpError):
        payload["command"] = exc.command
        payload["message"] = exc.message
        payload["error_class"] = exc.error_class
    return payload


def raise_remote(host: str, payload: dict[str, Any]) -> None:
    """Re-raise an agent's error on the controller side, same class where known.

    Raises:
        ColoppError: always.
    """
    kind = str(payload.get("type", "AgentError"))
    message = f"agent {host}: {payload.get('message', '')}"
    if kind in ("QmpError", "QmpTimeout"):
        cls = errors.QmpTimeout if kind == "QmpTimeout" else errors.QmpError
        error_class = payload.get("error_class")
        raise cls(str(payload.get("command", "?")), message, error_class and str(error_class))
    raise _ERRORS.get(kind, errors.AgentError)(message)
