"""Run planned QMP steps (:mod:`colopp.colo.sequence`) on a side, and wait on QEMU's
progress (block jobs, COLO mode). QEMU reports both only when asked: these poll."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from colopp.agent.side import Side
from colopp.colo.sequence import YANK_PEER, QmpStep, peer_yank_instances
from colopp.domain import Role
from colopp.errors import QmpError, QmpTimeout

POLL = 0.1  # seconds between two questions to QEMU


async def run_steps(
    side: Side, steps: list[QmpStep], timeline: list[tuple[str, float]] | None = None
) -> None:
    """Run ``steps`` in order; an error a step tolerates (by class and command) is skipped.
    With ``timeline``, each step run appends its command and the wall-clock time it ended.

    Raises:
        QmpError: a step failed with an error it does not tolerate.
    """
    for planned in steps:
        await _run_step(side, planned)
        if timeline is not None:
            timeline.append((planned.command, time.time()))


async def _run_step(side: Side, planned: QmpStep) -> None:
    step = planned
    if planned is YANK_PEER:
        available = await side.monitor.execute("query-yank", timeout=2.0)
        instances = peer_yank_instances(list(available or []))
        if not instances:
            return
        step = dataclasses.replace(planned, arguments={"instances": instances})
    try:
        if step.hmp:
            await side.monitor.hmp(step.command)
        else:
            await side.monitor.execute(step.command, step.arguments, oob=step.oob)
    except QmpError as exc:
        if not step.tolerates(exc):
            raise


async def wait_block_job(
    side: Side, job_id: str, done: Callable[[dict[str, Any]], bool], timeout: float
) -> None:
    """Poll query-block-jobs until ``done(job)`` or the job is gone.

    Raises:
        QmpTimeout: neither within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        jobs = await side.monitor.execute("query-block-jobs", timeout=5.0)
        job = next((j for j in jobs if j.get("device") == job_id), None)
        if job is None or done(job):
            return
        if time.monotonic() > deadline:
            raise QmpTimeout(
                "query-block-jobs", f"job {job_id} not done after {timeout:.0f}s: {job}"
            )
        await asyncio.sleep(POLL)


async def wait_colo_mode(side: Side, timeout: float) -> dict[str, Any]:
    """Wait until query-colo-status reports this side's role as its mode.

    Raises:
        QmpError: the migration failed (primary), or no COLO mode within ``timeout``.
    """
    want = side.spec.role.value
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await side.monitor.execute("query-colo-status", timeout=5.0)
        if isinstance(last, dict) and last.get("mode") == want:
            return dict(last)
        if side.spec.role is Role.PRIMARY:
            migrate = await side.monitor.execute("query-migrate", timeout=5.0)
            if isinstance(migrate, dict) and migrate.get("status") == "failed":
                raise QmpError("migrate", f"migration failed: {migrate.get('error-desc')}")
        await asyncio.sleep(POLL)
    raise QmpError("query-colo-status", f"not in COLO {want} mode after {timeout:.0f}s: {last}")
