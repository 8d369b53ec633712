"""Run a command to completion: the one wrapper around ``subprocess.run``.

Argv lists only (never a shell string). ``OSError``, a timeout and a non-zero exit are
converted here, once, into the caller's :class:`~colopp.errors.ColoppError` subclass;
a missing binary can have its own class (e.g. ``QemuNotFound``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from colopp.errors import ColoppError


def run_tool(
    argv: Sequence[str],
    error: type[ColoppError],
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    not_found: type[ColoppError] | None = None,
    name: str | None = None,
) -> str:
    """Run ``argv`` and return its stdout (text).

    ``env`` is added to this process's environment. ``name`` is how errors call the
    command (default: the whole argv).

    Raises:
        ``not_found`` (default ``error``): the binary cannot be run.
        ``error``: it timed out, or (with ``check``) exited non-zero (stderr is quoted).
    """
    what = name or " ".join(argv)
    try:
        done = subprocess.run(
            list(argv),
            env={**os.environ, **env} if env else None,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except OSError as exc:
        raise (not_found or error)(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise error(f"{what} did not finish in {timeout:.0f}s") from exc
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise error(f"{what} failed ({done.returncode}): {' | '.join(detail)}")
    return done.stdout


def die_with_parent() -> None:
    """``preexec_fn`` for a child that must not outlive the process that started it
    (a probe, never a protected VM's QEMU): Linux sends it SIGKILL when its parent thread
    exits, so a harness killed mid-probe leaves no QEMU behind."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
