"""Live re-protection on the serving side (the plan and its proof: colopp.colo.live).

The guest keeps running while the disk is mirrored (active mode) and its RAM pre-copied
to the new secondary; QEMU stops it for the last pass and waits in ``pre-switchover``;
in that pause the mirror is completed and the replication child and network filters go
in, then ``migrate-continue`` lets QEMU start replication and resume the guest in COLO.

Every wait is bounded (colopp.colo.converge, :class:`LiveBudget`): a mirror or pre-copy
that does not converge falls back to copying with the guest stopped, and one that still
does not finish is cancelled, the guest running on unprotected, with an error that says
what was left.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from colopp.agent.comparator_process import mirror_batched
from colopp.agent.live_converge import FAILED, wait_mirror_ready, wait_pre_switchover
from colopp.agent.side import Side, event_stamp
from colopp.agent.steps import run_steps
from colopp.colo.converge import LiveBudget, Stage
from colopp.colo.live import (
    COLO_STARTED,
    COMPARATOR,
    IN_PAUSE,
    MIRROR_DONE,
    MIRROR_JOB,
    MIRROR_READY,
    PRE_SWITCHOVER,
    SECONDARY_LINKED,
    live_plan,
    peer_links_up,
)
from colopp.colo.sequence import QmpStep, resume_replication
from colopp.domain import ComparatorKind, Role
from colopp.errors import ColoppError, QmpError, QmpTimeout
from colopp.qemu.argv import mirror_process_wanted

log = logging.getLogger(__name__)

ENDED = frozenset({"failed", "cancelled", "completed", "none"})  # no migration runs
ABANDON_WAIT = 15.0  # seconds for a cancelled migration and mirror to end
JOB_DONE = ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED")
LINK_WAIT = 5.0  # seconds; the secondary reconnects every second (qemu-configs/secondary.conf)


async def _secondary_linked(side: Side, timeout: float) -> float:
    """Wait (the guest runs meanwhile) until the new secondary's filters are connected to
    this side: its input mirror (``mirror0``) and its output to the comparator. Returns
    the seconds waited; after ``timeout`` it goes on (the switch still works, the first
    replies after it just wait for a checkpoint).
    """
    started = time.monotonic()
    builtin = side.spec.options.comparator is ComparatorKind.BUILTIN
    # With colopp's comparator mirror0 is the mirror process's (mirror-batched.conf): the
    # secondary host is linked when that process has it as its peer.
    batched = not builtin and mirror_batched(side.spec)
    labels = ("mirror0", "compare1") if builtin else () if batched else ("mirror0",)
    while time.monotonic() - started < timeout:
        chardevs = await side.monitor.execute("query-chardev", timeout=5.0)
        linked = peer_links_up(list(chardevs or []), labels)
        if linked and not builtin and side.comparator is not None:
            shell = side.comparator.counters().get("shell", {})
            linked = bool(isinstance(shell, dict) and shell.get("secondary_connected"))
            linked = linked and (not batched or mirror_peer_connected(side.spec.mirror_status))
        if linked:
            break
        await asyncio.sleep(0.05)  # QEMU and the comparator report links only when asked
    return time.monotonic() - started


def mirror_peer_connected(status: Path) -> bool:
    """From the mirror process's status file: is the secondary host connected to it?"""
    try:
        data = json.loads(status.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("peer_connected") is True


async def _migration_reaches(side: Side, listener: Any, status: str, timeout: float) -> None:
    """Wait for QEMU's MIGRATION event with ``status``.

    Raises:
        QmpError: the migration failed or was cancelled; QmpTimeout: not within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            event = await asyncio.wait_for(listener.get(), max(left, 0.001))
        except TimeoutError as exc:
            info = await side.monitor.execute("query-migrate", timeout=5.0)
            raise QmpTimeout("migrate", f"no {status} in {timeout:.0f}s: {info}") from exc
        now = dict(event.get("data", {})).get("status")
        if now == status:
            return
        if now in FAILED:
            info = await side.monitor.execute("query-migrate", timeout=5.0)
            desc = info.get("error-desc") if isinstance(info, dict) else None
            raise QmpError("migrate", f"migration {now} before {status}: {desc}")


async def _resumed(listener: Any, timeout: float) -> None:
    """Wait for QEMU's RESUME event (TimeoutError after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        event = await asyncio.wait_for(listener.get(), max(deadline - time.monotonic(), 0.001))
        if event.get("event") == "RESUME":
            return


async def _mirror_done(side: Side, listener: Any, timeout: float) -> None:
    """Wait until the mirror job ended (its completion event), naming a failure."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            event = await asyncio.wait_for(listener.get(), max(left, 0.001))
        except TimeoutError as exc:
            raise QmpTimeout("block-job-cancel", f"{MIRROR_JOB} did not end in {timeout}s") from exc
        data = dict(event.get("data", {}))
        if data.get("device") != MIRROR_JOB:
            continue
        if data.get("error"):
            raise QmpError("block-job-cancel", f"mirror ended with an error: {data['error']}")
        return


async def live_reprotect(
    side: Side,
    peer_repl_ip: str,
    plumbing: list[QmpStep],
    checkpoint_delay_ms: int,
    budget: LiveBudget,
    start_comparator: Callable[[], Awaitable[None]],
    in_pause: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Make this running side the primary of the prepared secondary at ``peer_repl_ip``,
    following :func:`colopp.colo.live.live_plan`.

    ``plumbing``: the replication child, chardevs and filters to add
    (:func:`colopp.colo.sequence.resume_replication`); ``in_pause`` runs with the guest
    stopped, after them and before COLO starts. Returns the seconds the disk took
    to be in sync (``resync_s``), the pre-copy (``precopy_s``) and the milliseconds spent
    in the pause before QEMU was told to continue (``switch_ms``), and the fallbacks
    taken (``fallbacks``: stage names with the seconds into their wait; ``stage``: the
    pre-copy's last stage, ``"live"`` when it converged by itself).

    Raises:
        QmpError: a step failed (named); QmpTimeout: the mirror or the pre-copy did not
            finish within ``budget`` even with the guest stopped; QemuStartError: the
            comparator did not start. In every case the migration and the mirror are
            cancelled and the guest runs on, unprotected.
    """
    marks = {"start": time.monotonic()}
    # Wall-clock moments of each plan point and QEMU's run-state events, to line the
    # switch up with what clients saw (bench.inplace); QEMU stamps its own events.
    timeline: list[tuple[str, float]] = [("start", time.time())]
    plan = live_plan(
        peer_repl_ip, side.spec.ports, plumbing, checkpoint_delay_ms, budget.precopy_bandwidth
    )
    fallbacks: list[tuple[str, float]] = []
    stage = Stage.LIVE
    migration = side.monitor.listen(["MIGRATION"])
    jobs = side.monitor.listen(list(JOB_DONE))
    runstate = side.monitor.listen(["STOP", "RESUME"])
    try:
        for point in plan:
            timeline.append((point.name, time.time()))
            if point.step is not None:
                await run_steps(side, [point.step])
                if point.step.command == "migrate-continue":
                    marks["continued"] = time.monotonic()
            elif point is MIRROR_READY:
                await wait_mirror_ready(side, budget, fallbacks)
                marks["synced"] = time.monotonic()
            elif point is COMPARATOR:
                await start_comparator()
            elif point is SECONDARY_LINKED:
                marks["linked_wait_s"] = await _secondary_linked(side, LINK_WAIT)
            elif point is PRE_SWITCHOVER:
                stage = await wait_pre_switchover(side, migration, budget, fallbacks)
                marks["paused"] = time.monotonic()
            elif point is IN_PAUSE and in_pause is not None:
                await in_pause()
            elif point is MIRROR_DONE:
                await _mirror_done(side, jobs, 30.0)
            elif point is COLO_STARTED:
                await _migration_reaches(side, migration, "colo", 60.0)
                marks["colo"] = time.monotonic()
                # QEMU reports COLO before the secondary is ready; the guest runs again
                # only once it is (the event stamps say when).
                with contextlib.suppress(TimeoutError):
                    await _resumed(runstate, 30.0)
    except ColoppError as exc:  # QMP, or the comparator that would not start
        log.warning("%s: live protection abandoned: %s", side.vm.name, exc)
        await _abandon(side)
        raise
    finally:
        side.monitor.unlisten(migration)
        side.monitor.unlisten(jobs)
        side.monitor.unlisten(runstate)
    for event in runstate.history:
        timeline.append((f"qemu:{event.get('event')}", event_stamp(dict(event))))
    info = await side.monitor.execute("query-migrate", timeout=5.0)
    return {
        "timeline": sorted(timeline, key=lambda mark: mark[1]),
        "linked_wait_s": marks.get("linked_wait_s", 0.0),
        "downtime_ms": float(info.get("downtime", -1)) if isinstance(info, dict) else -1.0,
        "colo_after_continue_ms": (marks["colo"] - marks["continued"]) * 1000,
        "resync_s": marks["synced"] - marks["start"],
        "precopy_s": marks["paused"] - marks["synced"],
        "switch_ms": (marks["continued"] - marks["paused"]) * 1000,
        "took_s": time.monotonic() - marks["start"],
        "fallbacks": fallbacks,
        "stage": stage.name.lower().replace("_", "-"),
    }


async def resume_protection(
    side: Side,
    peer_repl_ip: str,
    checkpoint_delay_ms: int,
    budget: LiveBudget,
    start_comparator: Callable[[], Awaitable[None]],
    in_pause: Callable[[], Awaitable[None]],
) -> dict[str, Any]:
    """Make this side, serving alone, the primary of the prepared secondary at
    ``peer_repl_ip`` (re-protection): its spec says so from now on, and
    :func:`live_reprotect` adds the replication plumbing this side lacks (a promoted
    secondary still has its rewriter). Returns and raises as :func:`live_reprotect`.
    """
    has_rewriter = side.spec.role is Role.SECONDARY
    side.spec = dataclasses.replace(side.spec, role=Role.PRIMARY, peer_repl_ip=peer_repl_ip)
    spec = side.spec
    sockets = (str(spec.compare0_socket), str(spec.compare_out_socket))
    plumbing = resume_replication(
        spec.local_repl_ip,
        peer_repl_ip,
        spec.ports,
        sockets,
        spec.options.comparator,
        has_rewriter,
        client_socket=str(spec.client_socket) if spec.options.client_frames else None,
        vnet_hdr=side.vm.vnet_hdr,
        mirror_socket=str(spec.mirror_socket) if mirror_process_wanted() else None,
    )
    side.checkpoint_delay_ms = checkpoint_delay_ms
    # The guest runs through the disk mirror and the RAM pre-copy and pauses only for
    # the switch into COLO (colopp.colo.live explains the writes an earlier resume
    # lost, and why this plan cannot).
    return await live_reprotect(
        side, peer_repl_ip, plumbing, checkpoint_delay_ms, budget, start_comparator, in_pause
    )


async def _abandon(side: Side) -> None:
    """After a failed step: cancel the migration and the mirror, wait (bounded) until both
    ended, and make sure the guest runs. Never raises: the caller re-raises the cause."""
    with contextlib.suppress(QmpError):
        await side.monitor.execute("migrate_cancel", timeout=5.0)
    with contextlib.suppress(QmpError):
        await side.monitor.execute(
            "block-job-cancel", {"device": MIRROR_JOB, "force": True}, timeout=5.0
        )
    deadline = time.monotonic() + ABANDON_WAIT
    migration: Any = None
    jobs: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(QmpError):
            migration = await side.monitor.execute("query-migrate", timeout=5.0)
            jobs = await side.monitor.execute("query-block-jobs", timeout=5.0)
            status = migration.get("status", "none") if isinstance(migration, dict) else "none"
            if status in ENDED and not any(j.get("device") == MIRROR_JOB for j in jobs or []):
                break
        await asyncio.sleep(0.1)  # QEMU ends both in its own threads; it reports when asked
    else:
        log.error("%s: migration or mirror still running after cancel: %s %s",
                  side.vm.name, migration, jobs)  # fmt: skip
    # QEMU resumes a guest it stopped for a migration it cancels; this covers a guest
    # stopped at the switch (pre-switchover) whatever the migration's state.
    with contextlib.suppress(QmpError):
        status = await side.monitor.execute("query-status", timeout=5.0)
        if isinstance(status, dict) and not status.get("running"):
            await side.monitor.execute("cont", timeout=5.0)
