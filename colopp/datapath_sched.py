"""How the data-path helpers (comparator, its mirror process, the ingress relay) ask for CPU.

They run as ``SCHED_BATCH`` by default: a woken batch task does not preempt the task that
runs; it gets the CPU when that one blocks or its slice ends. Measured on a bulk download
(``bench.bulk``, ``download_static``, session 21, colopp's comparator): the comparator woke
7,200 times a second for 1.7 primary frames each, every wake-up preempting the primary
QEMU that had just written one frame on the same CPU, and took 29% of that CPU at 166
Mbit/s; as a batch task it took 21% at 199-205 Mbit/s (QEMU's colo-compare: 200). A frame
waits at most one scheduler slice more, and only while the host's CPU is busy with
something else; an idle CPU runs the woken helper at once.

``COLOPP_DATAPATH_SCHED=normal`` in the environment keeps the default policy
(side-by-side runs); ``batch`` is the default. Only the policy changes, never the priority:
no privilege is needed. Threads and processes started afterwards inherit it. The relay goes
back to the default policy when its host is promoted (:func:`restore_default_policy`): its
replay to the promoted guest is the failover's own path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from colopp.errors import ConfigError

SCHED_ENV = "COLOPP_DATAPATH_SCHED"
CHOICES = ("batch", "normal")


def wanted_policy(environ: Mapping[str, str] = os.environ) -> str:
    """``batch`` or ``normal``, from :data:`SCHED_ENV`.

    Raises:
        ConfigError: the variable holds anything else.
    """
    choice = environ.get(SCHED_ENV, "batch")
    if choice not in CHOICES:
        raise ConfigError(f"{SCHED_ENV}={choice!r} must be batch or normal")
    return choice


def apply_policy(
    environ: Mapping[str, str] = os.environ,
    set_scheduler: Callable[[int, int, os.sched_param], None] = os.sched_setscheduler,
) -> str:
    """Put the calling thread (and what it starts later) under the wanted policy; returns
    it. A kernel that refuses leaves the default in place: returns ``normal``.

    Raises:
        ConfigError: :data:`SCHED_ENV` is neither ``batch`` nor ``normal``.
    """
    choice = wanted_policy(environ)
    if choice == "batch":
        try:
            set_scheduler(0, os.SCHED_BATCH, os.sched_param(0))
        except OSError:
            return "normal"
    return choice


def restore_default_policy(
    set_scheduler: Callable[[int, int, os.sched_param], None] = os.sched_setscheduler,
) -> bool:
    """Put the calling thread back under ``SCHED_OTHER``; False if the kernel refused."""
    try:
        set_scheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except OSError:
        return False
    return True
