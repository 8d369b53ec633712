"""Atomic JSON status file of the comparator (mode 0600)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from colopp.errors import ColoppError


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Replace ``path`` with ``status`` as JSON in one rename: readers never see half a file.

    The file is created with mode 0600. Raises ColoppError when it cannot be written.
    """
    data = json.dumps(status, sort_keys=True, separators=(",", ":")).encode()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise ColoppError(f"cannot write status {path}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ColoppError(f"cannot write status {path}: {exc}") from exc
