"""A promoted secondary under TCG drops the code QEMU translated before (QEMU 10.2+).

Why. Under TCG, QEMU runs guest code from translations it caches per guest page, and drops
a page's translations when the guest writes that page through the emulated CPU. A COLO
checkpoint writes the secondary's RAM behind the CPU's back (the primary's dirty pages are
copied in with ``memcpy``, ``colo_flush_ram_cache`` in QEMU's ``migration/ram.c``). Up to
QEMU 10.1 each checkpoint load flushed every translation anyway (``cpu_common_post_load``
called ``tb_flush`` when the CPU state was loaded); QEMU's commit "accel/tcg: Move post-load
tb_flush to vm_change_state hook" (September 2025) flushes only when the VM stops into the
``restore-vm`` run state (HMP ``loadvm``), which a COLO checkpoint never enters. Measured on
this machine's QEMU 11.1.3: a COLO secondary's ``TB flush count`` (HMP ``info jit``) stayed 0
through a bulk download's checkpoints. So a secondary runs code translated from what its RAM
held before the last checkpoint, wherever the checkpoint changed a page that held code, and
keeps doing so once promoted: the leading suspect of the promoted guest's kernel oopses
(README, "Status and known limits").

What this does, at a promotion, under TCG only (``query-kvm``: KVM has no translations), once
the promoted guest runs: HMP ``loadvm`` of a snapshot name no disk holds (random, so no
operator's snapshot can ever be loaded). QEMU stops the VM into ``restore-vm`` first, which
flushes every translation, then finds no snapshot and fails, leaving the VM stopped; it is
resumed (``cont``) only if it is in ``restore-vm``, that is, only if this call stopped it.
Never while the pair is in COLO: a ``cont`` racing a checkpoint that has just stopped the VM
would resume it in the middle of loading the primary's state.
"""

from __future__ import annotations

import logging
import uuid

from colopp.errors import HMP_ERROR_CLASS, QmpError
from colopp.virt import QmpChannel

log = logging.getLogger(__name__)

#: Outcomes of :func:`flush_translations` (reported with the promotion).
FLUSHED = "flushed"
NOT_TCG = "not_tcg"
NOT_RUNNING = "not_running"
#: QEMU did not stop into ``restore-vm`` (another QEMU behaviour): nothing was resumed.
NOT_STOPPED = "not_stopped"
#: Turned off (``COLOPP_TCG_FLUSH=off`` in the agent's environment, see agent/failover.py).
OFF = "off"

_TIMEOUT_S = 5.0
_CONT_ATTEMPTS = 3


def snapshot_name() -> str:
    """A snapshot name no disk holds: QEMU must fail to find it."""
    return f"colopp-tb-flush-{uuid.uuid4().hex}"


async def flush_translations(monitor: QmpChannel) -> str:
    """Make a running TCG guest's QEMU drop its translated code; returns an outcome.

    Raises:
        QmpError: a command failed in an unexpected way, or ``loadvm`` did not fail (it
            loaded a snapshot of that name: the VM then runs from it).
    """
    kvm = await monitor.execute("query-kvm", timeout=_TIMEOUT_S)
    if isinstance(kvm, dict) and kvm.get("enabled"):
        return NOT_TCG
    status = await monitor.execute("query-status", timeout=_TIMEOUT_S)
    if not (isinstance(status, dict) and status.get("running")):
        return NOT_RUNNING  # stopping a stopped VM into restore-vm flushes nothing
    name = snapshot_name()
    try:
        await monitor.hmp(f"loadvm {name}", timeout=_TIMEOUT_S)
    except QmpError as exc:
        if exc.error_class != HMP_ERROR_CLASS:
            raise
    else:
        raise QmpError("loadvm", f"snapshot {name} was found and loaded")
    status = await monitor.execute("query-status", timeout=_TIMEOUT_S)
    if not isinstance(status, dict) or status.get("status") != "restore-vm":
        log.warning("loadvm left the VM %s, not restore-vm: nothing resumed", status)
        return NOT_STOPPED
    for _ in range(_CONT_ATTEMPTS - 1):  # this call stopped the guest: it must run again
        try:
            await monitor.execute("cont", timeout=_TIMEOUT_S)
            return FLUSHED
        except QmpError as exc:
            log.warning("cont after the flush failed, again: %s", exc)
    await monitor.execute("cont", timeout=_TIMEOUT_S)  # the last try raises
    return FLUSHED
