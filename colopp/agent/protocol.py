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
        errors.ArbiterError,
        errors.EtcdUnavailable,
        errors.NotAcquired,
        errors.StaleToken,
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


def _loads(line: bytes, what: str) -> Any:
    """``json.loads`` with every way it fails mapped onto :class:`AgentError`."""
    try:
        return json.loads(line)
    except RecursionError as exc:  # e.g. 100,000 nested '[': the C decoder gives up
        raise errors.AgentError(f"{what} is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise errors.AgentError(f"{what} is not JSON: {exc}") from exc


def decode_request(line: bytes) -> Request:
    """Parse a request line.

    Raises:
        AgentError: not JSON (or nested too deeply), or fields missing or of the wrong type.
    """
    obj = _loads(line, "request")
    if not isinstance(obj, dict):
        raise errors.AgentError("request must be a JSON object")
    rid, token, method = obj.get("id"), obj.get("token"), obj.get("method")
    params = obj.get("params", {})
    if not isinstance(rid, int) or not isinstance(token, str) or not isinstance(method, str):
        raise errors.AgentError("request needs integer id, string token and string method")
    if not isinstance(params, dict):
        raise errors.AgentError("params must be an object")
    return Request(rid, token, method, params)


@dataclass(frozen=True)
class Reply:
    """A decoded reply: ``error`` is set when the agent refused or failed."""

    id: int
    result: Any
    error: dict[str, Any] | None


def decode_reply(line: bytes, expected: int | None = None) -> Reply:
    """Parse a reply line (to request ``expected``, when given).

    Raises:
        AgentError: not JSON, not an object, an ``id`` that is not ``expected`` (null is
            allowed: the agent could not read the request), or neither ``result`` nor an
            ``error`` object.
    """
    obj = _loads(line, "reply")
    if not isinstance(obj, dict):
        raise errors.AgentError("reply must be a JSON object")
    rid, error = obj.get("id"), obj.get("error")
    if rid is not None and (not isinstance(rid, int) or (expected is not None and rid != expected)):
        raise errors.AgentError(f"reply to request {rid!r}, expected {expected}")
    if error is not None:
        if not isinstance(error, dict):
            raise errors.AgentError("reply error must be an object")
        return Reply(rid or 0, None, error)
    if "result" not in obj:
        raise errors.AgentError("reply has neither result nor error")
    return Reply(rid or 0, obj["result"], None)


#: The fields the controller reads from each method's result, with their types: a reply
#: without them is the agent's fault, reported as an AgentError (never a KeyError later).
RESULT_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "ping": {"vm_alive": bool, "qmp_ok": bool, "checkpoint_stalled_s": (int, float)},
    "probe_tcp": {"reachable": bool},
    "status": {"vm_alive": bool},
    "probe_qemu": {"version": str, "runtime": str},
    "launch": {"pid": (int, type(None))},  # a libvirt domain may not show its pid yet
    "wait_guest": {"boot_s": (int, float)},
    "failover": {"took_ms": (int, float)},
    "resume_replication": {},
}


def check_result(method: str, result: Any) -> Any:
    """``result`` when it has the fields :data:`RESULT_FIELDS` names for ``method``.

    Raises:
        AgentError: a field is missing or of the wrong type.
    """
    fields = RESULT_FIELDS.get(method)
    if fields is None:
        return result
    if not isinstance(result, dict):
        raise errors.AgentError(f"{method} result must be an object, not {type(result).__name__}")
    for name, kind in fields.items():
        kinds = kind if isinstance(kind, tuple) else (kind,)
        value = result.get(name)
        wrong = not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
        if name not in result or wrong:
            raise errors.AgentError(f"{method} result lacks a valid {name!r}: {value!r}")
    return result


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
