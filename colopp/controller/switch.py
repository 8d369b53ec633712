"""Ask a running controller process for a planned switchover, and wait for it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from colopp.controller.store import load_record
from colopp.errors import StateError


def request_switchover(record_path: Path, status_path: Path, timeout: float) -> dict[str, Any]:
    """Signal the controller (SIGUSR1) and wait until the roles have swapped.

    Raises:
        StateError: no controller runs for this pair, the pair is not protected, or the
            switchover did not finish in time.
    """
    record = load_record(record_path)
    if record["state"] != "protected" or not record.get("secondary"):
        raise StateError(f"the pair is {record['state']}; a switchover needs it protected")
    try:
        pid = int(json.loads(status_path.read_text())["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError) as exc:
        raise StateError(
            f"no controller runs for this pair ({status_path}): start `colopp controller "
            f"--record {record_path} --status {status_path}` first"
        ) from exc
    old_primary = record["primary"]["name"]
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = load_record(record_path)
        if now["state"] == "protected" and now["primary"]["name"] != old_primary:
            return {"primary": now["primary"]["name"], "secondary": now["secondary"]["name"]}
        time.sleep(0.1)  # the controller rewrites the record; nothing to wait on
    raise StateError(f"switchover did not complete in {timeout:.0f}s")
