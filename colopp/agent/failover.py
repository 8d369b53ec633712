"""Failover on this host (``HostAgent.failover``): the secondary is promoted and serves,
or the primary drops its lost peer and serves alone."""

from __future__ import annotations

from colopp.agent.comparing import promote_ingress, stop_comparator
from colopp.agent.semiactive import restore_vcpus
from colopp.agent.side import Side
from colopp.agent.steps import run_steps
from colopp.agent.translation import SideTranslation
from colopp.colo.sequence import primary_failover, secondary_failover
from colopp.domain import Role
from colopp.rewrite.splice import promotion_steps


async def serve_alone(side: Side, translation: SideTranslation | None) -> None:
    """Run this side's failover sequence; ``side.failed_over`` is then set.

    Raises:
        QmpError: a step failed with an error it does not tolerate.
    """
    if side.spec.role is Role.SECONDARY:
        await promote_secondary(side, translation)
    else:
        # No self-fence from here: without a peer and with the controller waiting on
        # this call (no heartbeats meanwhile), a sequence slower than the lease would
        # otherwise kill the very side the controller chose to keep.
        side.going_alone = True
        await run_steps(side, primary_failover(side.spec.options.comparator))
        await stop_comparator(side)
    side.failed_over = True


async def promote_secondary(side: Side, translation: SideTranslation | None) -> None:
    """The secondary takes over: full CPUs, its ingress relay's held frames to the guest,
    QEMU's failover with colopp's translator spliced back in."""
    # The last checkpoint this secondary loaded, before anything here can make its
    # QEMU stop or resume (x-colo-lost-heartbeat resumes a VM stopped mid-load).
    last_load = side.checkpoints.last_at
    await restore_vcpus(side)  # full CPUs before it serves
    # QEMU turns the translator's redirectors off at the failover: back on at once.
    # (A re-adopted side has its filters but no translator child: its record says.)
    spliced = translation is not None and (translation.spliced or bool(translation.record))
    promote_ingress(side)  # hands what it holds to the guest, then exits
    await run_steps(side, promotion_steps(secondary_failover(), spliced=spliced))
    if translation is not None:
        await translation.stop_learning(side)  # colo-compare's relay: the primary is gone
        translation.promoted(last_load)
        # filter-rewriter off, the translator applies the whole record (limit (3)).
        await translation.take_over(lambda steps: run_steps(side, steps))
