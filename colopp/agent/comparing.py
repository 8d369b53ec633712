"""Comparator supervision on a primary side: start colopp's comparator process for the
side's current spec and checkpoint period (replacing one that runs), and stop it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from colopp.agent.comparator_process import ComparatorProcess, comparator_argv
from colopp.agent.side import Side
from colopp.domain import ComparatorKind


async def start_comparator(side: Side, force_checkpoint: Callable[[], Awaitable[None]]) -> None:
    """(Re)start the side's comparator when the protection uses colopp's; a no-op with
    QEMU's built-in colo-compare. A restarted comparator asks for a checkpoint
    (``force_checkpoint``) since it lost what it held.

    Raises:
        QemuStartError: the comparator cannot be executed.
    """
    spec = side.spec
    if spec.options.comparator is not ComparatorKind.COLOPP:
        return
    await stop_comparator(side)
    side.comparator = ComparatorProcess(
        comparator_argv(spec, side.checkpoint_delay_ms),
        spec.run_dir,
        force_checkpoint,
        side.process.alive,
    )
    await side.comparator.start()


async def stop_comparator(side: Side) -> None:
    """Stop the side's comparator, if any (its last counters stay readable); never raises."""
    if side.comparator is not None:
        await side.comparator.stop()
