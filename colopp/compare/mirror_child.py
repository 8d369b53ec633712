"""The comparator's child that sends QEMU's ``mirror0`` on to the secondary host
(``python -m colopp.mirror``, ``qemu-configs/mirror-batched.conf``): its command line
(pure), start, watch and stop.

It is the comparator's child, not the agent's, so that everything the agent does with the
comparator (start, restart with a forced checkpoint, adoption after an agent restart, stop
at failover) holds for it too. It gets SIGKILL when the comparator ends, however that
ends. If it crashes, the comparator ends itself (SIGTERM): its restart forces the
checkpoint that covers the frames the secondary missed. An exit 0 (QEMU closed
``mirror0``, as its yank at a failover does) ends nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

from colopp.errors import ConfigError
from colopp.process import die_with_parent

log = logging.getLogger(__name__)


def mirror_argv(args: argparse.Namespace, python: str = sys.executable) -> list[str] | None:
    """The mirror child's command line from the comparator's arguments, or None (pure).

    Raises:
        ConfigError: one of ``--mirror-from`` / ``--mirror-to`` without the other.
    """
    if args.mirror_from is None and args.mirror_to is None:
        return None
    if args.mirror_from is None or args.mirror_to is None:
        raise ConfigError("--mirror-from and --mirror-to go together")
    argv = [python, "-m", "colopp.mirror", "--from", args.mirror_from, "--to", args.mirror_to]
    argv += ["--parent-pid", str(os.getpid()), "--connect-timeout", str(args.connect_timeout)]
    if args.vnet_hdr:
        argv.append("--vnet-hdr")
    if args.mirror_status is not None:
        argv += ["--status", str(args.mirror_status)]
    for address in args.mirror_allow:
        argv += ["--allow", address]
    return argv


def _end_comparator(code: int) -> None:
    log.error("the mirror process ended (%s): the comparator ends for a restart", code)
    os.kill(os.getpid(), signal.SIGTERM)


class MirrorChild:
    """One running mirror process and the thread that waits for it."""

    def __init__(
        self, proc: subprocess.Popen[bytes], on_crash: Callable[[int], None] | None = None
    ) -> None:
        self.proc = proc
        self._on_crash = on_crash or _end_comparator
        self._stopping = False
        threading.Thread(target=self._watch, name="mirror-child", daemon=True).start()

    @classmethod
    def start(
        cls, argv: list[str] | None, on_crash: Callable[[int], None] | None = None
    ) -> MirrorChild | None:
        """Start it (None: no ``argv``, no mirror); ``on_crash(code)`` when it ends by
        itself with another code than 0 (default: SIGTERM to this process).

        Raises:
            ConfigError: it cannot be executed.
        """
        if argv is None:
            return None
        try:
            # Before the comparator's loop starts: no thread but the interpreter's yet.
            child = die_with_parent
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=child)  # noqa: PLW1509
        except OSError as exc:
            raise ConfigError(f"cannot start the mirror process: {exc.strerror}") from exc
        return cls(proc, on_crash)

    def _watch(self) -> None:
        code = self.proc.wait()
        if code != 0 and not self._stopping:
            self._on_crash(code)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 2 s; never raises."""
        self._stopping = True
        proc = self.proc
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2.0)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
