"""Private files: written whole (never half-written) and mode 0600 from the first byte.

State files, records and tokens are read by other processes (a restarted controller, the
API): a reader sees the old content or the new, never a torn write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_private(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text``; the file is 0600 at every moment.

    Raises:
        OSError: the directory cannot be created or written.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)  # an older tmp left by a crash may have other bits
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """:func:`write_private` of ``data`` as indented JSON (``str()`` for other types)."""
    write_private(path, json.dumps(data, indent=2, default=str))
