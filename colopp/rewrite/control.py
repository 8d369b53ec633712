"""The translator's control requests, as pure functions over an :class:`OffsetTable`.

One JSON object per line on the translator's 0600 unix socket; one reply per request:

- ``{"op": "set", "guest": [addr, port], "peer": [addr, port], "delta": D}``: translate one
  connection (the comparator sends each young connection's offset and waits for the
  reply before releasing anything of that connection);
- ``{"op": "load", "rows": [...]}``: replace the whole table (re-protection, switchover);
- ``{"op": "merge", "rows": [...]}``: add rows, keeping the others;
- ``{"op": "snapshot"}``: the table's rows (what moves to the other host);
- ``{"op": "expire"}``: drop ended and idle entries now;
- ``{"op": "ready"}`` (answered by the process, :data:`READY_REQUEST`): whether it is
  connected to QEMU's four chardevs, i.e. frames diverted to it are relayed.

Replies are ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``; a bad request
changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from colopp.errors import ConfigError
from colopp.rewrite.table import OffsetTable

#: The longest request line accepted (a snapshot of ~100k connections fits).
MAX_REQUEST_BYTES = 16 * 1024 * 1024
#: The one request about the process rather than its table.
READY_REQUEST = b'{"op":"ready"}\n'


def handle_request(table: OffsetTable, line: bytes, now: float) -> tuple[OffsetTable, bytes, bool]:
    """Apply one request line: the (possibly new) table, the reply line, and whether the
    table changed (the caller saves it then)."""
    changed = False
    try:
        request = json.loads(line)
        table, reply = _apply(table, request, now)
        changed = request.get("op") != "snapshot"
    except (ValueError, ConfigError) as exc:
        reply = {"ok": False, "error": str(exc)}
    return table, json.dumps(reply, separators=(",", ":")).encode() + b"\n", changed


def _apply(table: OffsetTable, request: Any, now: float) -> tuple[OffsetTable, dict[str, Any]]:
    if not isinstance(request, dict):
        raise ConfigError("a request is a JSON object")
    op = request.get("op")
    if op == "set":
        row = {**request, "last_seen": now}
        row.pop("op")
        single = OffsetTable.from_snapshot([row])
        key = next(iter(single))
        table.set_delta(key, single.delta(key), now)
        return table, {"ok": True, "entries": len(table)}
    if op == "load":
        return OffsetTable.from_snapshot(request.get("rows")), {"ok": True}
    if op == "merge":
        extra = OffsetTable.from_snapshot(request.get("rows"))
        merged = table.copy()
        for key in extra:
            merged.set_delta(key, extra.delta(key), now)
        return merged, {"ok": True, "entries": len(merged)}
    if op == "snapshot":
        return table, {"ok": True, "rows": table.snapshot()}
    if op == "expire":
        gone = table.expire(now)
        return table, {"ok": True, "expired": len(gone), "entries": len(table)}
    raise ConfigError(f"unknown op {op!r}: expected set, load, merge, snapshot or expire")
