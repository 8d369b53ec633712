"""Failover on this host (``HostAgent.failover``): the secondary is promoted and serves,
or the primary drops its lost peer and serves alone."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from qemu.qmp import EventListener

from colopp.agent.comparing import promote_ingress, stop_comparator
from colopp.agent.semiactive import restore_vcpus
from colopp.agent.side import Side
from colopp.agent.steps import run_steps
from colopp.agent.tcg_flush import OFF, flush_translations
from colopp.agent.translation import SideTranslation
from colopp.colo.sequence import primary_failover, secondary_failover
from colopp.domain import Role
from colopp.errors import QmpError
from colopp.ingress.resend import RESEND_ENV, send_to_client
from colopp.rewrite.splice import promotion_steps

log = logging.getLogger(__name__)

#: How long a promotion waits for QEMU to report the guest running (it does not fail then:
#: ``guest_running_ms`` stays None).
GUEST_RUNNING_WAIT_S = 5.0
#: ``off`` in the agent's environment: no flush of a promoted TCG guest's translations.
TCG_FLUSH_ENV = "COLOPP_TCG_FLUSH"
#: Sends of kept guest output under way (off the promotion's path; kept referenced).
_RESENDS: set[asyncio.Task[int]] = set()


@dataclass
class Promotion:
    """What a secondary's promotion took, as the failover reply reports it."""

    started: float = field(default_factory=time.time)  # wall clock
    #: When QEMU reported the guest running, ms after ``started`` (0: it never stopped;
    #: None: not within :data:`GUEST_RUNNING_WAIT_S`).
    guest_running_ms: float | None = None
    #: Each QMP step's command and the wall-clock time it ended, in order.
    steps: list[tuple[str, float]] = field(default_factory=list)
    #: What :func:`~colopp.agent.tcg_flush.flush_translations` did (None: not asked yet).
    tcg_flush: str | None = None

    def timeline_ms(self) -> list[tuple[str, float]]:
        """The steps (and QEMU's RESUME, when it came) as ms after ``started``."""
        out = [(name, (at - self.started) * 1000) for name, at in self.steps]
        if self.guest_running_ms:
            out.append(("RESUME", self.guest_running_ms))
        return sorted(out, key=lambda item: item[1])


async def serve_alone(side: Side, translation: SideTranslation | None) -> Promotion | None:
    """Run this side's failover sequence; ``side.failed_over`` is then set.

    Returns what a secondary's promotion took (None for a primary).

    Raises:
        QmpError: a step failed with an error it does not tolerate.
    """
    promotion = None
    if side.spec.role is Role.SECONDARY:
        promotion = await promote_secondary(side, translation)
    else:
        # No self-fence from here: without a peer and with the controller waiting on
        # this call (no heartbeats meanwhile), a sequence slower than the lease would
        # otherwise kill the very side the controller chose to keep.
        side.going_alone = True
        await run_steps(side, primary_failover(side.spec.options.comparator))
        await stop_comparator(side)
    side.failed_over = True
    return promotion


async def promote_secondary(side: Side, translation: SideTranslation | None) -> Promotion:
    """The secondary takes over: full CPUs, its ingress relay's held frames to the guest,
    QEMU's failover with colopp's translator spliced back in.

    QEMU's COLO thread resumes a secondary stopped in a checkpoint on its own; the
    returned :class:`Promotion` says when, beside each step's end.
    """
    promotion = Promotion()
    resumed = side.monitor.listen(["RESUME"])
    try:
        await _promote(side, translation, promotion.steps)
        promotion.guest_running_ms = await _guest_running_ms(side, resumed, promotion.started)
    finally:
        side.monitor.unlisten(resumed)
    promotion.tcg_flush = await _flush_translations(side)
    promotion.steps.append((f"tcg-flush:{promotion.tcg_flush}", time.time()))
    return promotion


async def _flush_translations(side: Side) -> str:
    """Under TCG, the promoted guest's stale translated code dropped (:mod:`tcg_flush`);
    never fails the promotion: the outcome, or ``error`` (logged). ``COLOPP_TCG_FLUSH=off``
    in the agent's environment skips it (``off``: side-by-side runs)."""
    if os.environ.get(TCG_FLUSH_ENV) == "off":
        return OFF
    try:
        return await flush_translations(side.monitor)
    except QmpError as exc:
        log.warning("the promoted guest's translations were not flushed: %s", exc)
        return "error"


async def _guest_running_ms(side: Side, resumed: EventListener, started: float) -> float | None:
    """Milliseconds from ``started`` (wall clock) until the guest ran: QEMU's RESUME event
    since then (its own timestamp), else 0 if QEMU reports it running (it never stopped),
    else the RESUME still to come; None if none within :data:`GUEST_RUNNING_WAIT_S`."""
    if resumed.empty():
        try:
            status = await side.monitor.execute("query-status", timeout=2.0)
        except QmpError:
            return None
        if isinstance(status, dict) and status.get("running") and resumed.empty():
            return 0.0
    try:
        event = await asyncio.wait_for(resumed.get(), GUEST_RUNNING_WAIT_S)
    except TimeoutError:
        return None
    message: dict[str, Any] = dict(event)
    stamp = message.get("timestamp") or {}
    at = stamp.get("seconds", 0) + stamp.get("microseconds", 0) / 1e6 if stamp else time.time()
    return max(0.0, (at - started) * 1000)


async def _promote(
    side: Side, translation: SideTranslation | None, timeline: list[tuple[str, float]]
) -> None:
    # The last checkpoint this secondary loaded, before anything here can make its
    # QEMU stop or resume (x-colo-lost-heartbeat resumes a VM stopped mid-load).
    last_load = side.checkpoints.last_at
    await restore_vcpus(side)  # full CPUs before it serves
    # QEMU turns the translator's redirectors off at the failover: back on at once.
    # (A re-adopted side has its filters but no translator child: its record says.)
    spliced = translation is not None and (translation.spliced or bool(translation.record))
    promote_ingress(side)  # hands what it holds to the guest, then exits
    learning = translation.relay if translation is not None else None
    if learning is not None:  # colo-compare's relay: the guest's output the client lacks
        _resend_output(side, learning.take_output())
    await run_steps(side, promotion_steps(secondary_failover(), spliced=spliced), timeline)
    if learning is not None:  # and what the guest sent through red1 since
        _resend_output(side, learning.take_output())
    if translation is not None:
        await translation.stop_learning(side)  # colo-compare's relay: the primary is gone
        translation.promoted(last_load)
        # filter-rewriter off, the translator applies the whole record (limit (3)).
        await translation.take_over(lambda steps: run_steps(side, steps, timeline))


def _resend_output(side: Side, frames: list[tuple[bytes, int]]) -> None:
    """Send ``frames`` (the guest's kept output, ``colopp/ingress/keep.py``) to the client
    out of the side's tap's bridge, in a thread, not waited for: the promotion goes on."""
    if frames and os.environ.get(RESEND_ENV) != "off":  # off: side-by-side runs
        task = asyncio.create_task(asyncio.to_thread(send_to_client, side.spec.tap, frames))
        _RESENDS.add(task)
        task.add_done_callback(_RESENDS.discard)
