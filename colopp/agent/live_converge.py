"""Waiting for the live copy to converge, within bounds (the decisions:
:mod:`colopp.colo.converge`).

The disk mirror and the RAM pre-copy each run until they converge; on a loaded host
they may never do so on their own. These waits escalate through the stages the pure core
picks (write-blocking mirror; wider downtime; stop-and-copy) and give up with a
:class:`~colopp.errors.QmpTimeout` that says what was left. Every escalation is logged
and recorded (``fallbacks``: the stage names and when, in seconds after the wait began).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from colopp.agent.side import Side
from colopp.agent.steps import run_steps
from colopp.colo.converge import (
    LiveBudget,
    MirrorStage,
    Stage,
    describe_progress,
    migration_passes,
    mirror_stage,
    mirror_steps,
    precopy_stage,
    stage_steps,
)
from colopp.colo.live import MIRROR_JOB
from colopp.errors import QmpError, QmpTimeout

log = logging.getLogger(__name__)

FAILED = frozenset({"failed", "cancelled", "cancelling"})
MIRROR_POLL = 0.1  # seconds between two query-block-jobs (QEMU reports readiness when asked)


def _poll_s(budget: LiveBudget) -> float:
    """How often the pre-copy's progress is read: often enough to escalate on time."""
    return min(1.0, budget.widen_s / 4)


async def wait_mirror_ready(
    side: Side, budget: LiveBudget, fallbacks: list[tuple[str, float]]
) -> None:
    """Wait until the mirror job is ready (source and target in sync once).

    Raises:
        QmpError: the job ended (it failed: a ready mirror never ends by itself);
        QmpTimeout: not ready by ``budget.mirror_give_up_s``, even write-blocking.
    """
    started = moved = time.monotonic()
    stage = MirrorStage.BACKGROUND
    offset: Any = None
    while True:
        jobs = await side.monitor.execute("query-block-jobs", timeout=5.0)
        job = next((j for j in jobs or [] if j.get("device") == MIRROR_JOB), None)
        if job is None:
            raise QmpError("drive-mirror", f"the mirror job {MIRROR_JOB} ended before it was ready")
        if job.get("ready"):
            return
        now = time.monotonic()
        if job.get("offset") != offset:
            offset, moved = job.get("offset"), now
        elapsed = now - started
        wanted = mirror_stage(elapsed, now - moved, budget)
        if wanted is MirrorStage.GIVE_UP:
            raise QmpTimeout(
                "drive-mirror",
                f"the disk mirror was not in sync after {elapsed:.0f}s, nothing copied for "
                f"{now - moved:.0f}s ({job.get('offset')} of {job.get('len')} bytes, "
                f"{stage.name.lower()})",
            )
        if wanted > stage:
            stage = wanted
            log.warning("%s: disk mirror not ready after %.0fs: %s", side.vm.name, elapsed, stage)
            fallbacks.append((f"mirror-{stage.name.lower().replace('_', '-')}", elapsed))
            await run_steps(side, mirror_steps(stage))
        await asyncio.sleep(MIRROR_POLL)


async def wait_pre_switchover(
    side: Side, listener: Any, budget: LiveBudget, fallbacks: list[tuple[str, float]]
) -> Stage:
    """Wait for QEMU's MIGRATION event ``pre-switchover`` (QEMU stopped the guest for the
    last pass), escalating while it does not come. Returns the stage it came in.

    Raises:
        QmpError: the migration failed or was cancelled; QmpTimeout: no ``pre-switchover``
            by ``budget.give_up_s`` (the message says what was left).
    """
    started = time.monotonic()
    stage = Stage.LIVE
    poll = _poll_s(budget)
    while True:
        try:
            event = await asyncio.wait_for(listener.get(), poll)
        except TimeoutError:
            event = None
        if event is not None:
            now = dict(event.get("data", {})).get("status")
            if now == "pre-switchover":
                return stage
            if now in FAILED:
                info = await side.monitor.execute("query-migrate", timeout=5.0)
                desc = info.get("error-desc") if isinstance(info, dict) else None
                raise QmpError("migrate", f"migration {now} before pre-switchover: {desc}")
            continue
        elapsed = time.monotonic() - started
        info = await side.monitor.execute("query-migrate", timeout=5.0)
        wanted = precopy_stage(elapsed, migration_passes(info), side.vm.memory_mb, budget)
        if wanted is Stage.GIVE_UP:
            raise QmpTimeout(
                "migrate",
                f"the RAM pre-copy did not finish in {elapsed:.0f}s, not even by "
                f"stop-and-copy ({fallbacks}): {describe_progress(info)}",
            )
        if wanted > stage:
            stage = wanted
            name = stage.name.lower().replace("_", "-")
            log.warning(
                "%s: RAM pre-copy not converging after %.1fs (%s): %s",
                side.vm.name,
                elapsed,
                describe_progress(info),
                name,
            )
            fallbacks.append((name, elapsed))
            await run_steps(side, stage_steps(stage, budget))
