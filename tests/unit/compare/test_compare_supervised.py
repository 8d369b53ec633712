"""The agent restarts a comparator that exited because it lost its QMP monitor (exit 4) and
forces a checkpoint (issue #13 bug 6: the exit code is handled, not just documented)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from colopp.agent.comparator_process import ComparatorProcess
from colopp.compare.shell import EXIT_QMP_LOST

TIMEOUT = 10.0


async def scenario(tmp: Path) -> tuple[int, int]:
    restarted = asyncio.Event()
    forced: list[str] = []
    runs = 0

    async def force_checkpoint() -> None:
        forced.append("migrate-set-parameters")
        restarted.set()

    def should_run() -> bool:
        nonlocal runs
        runs += 1
        return runs == 1  # restart once, then let the second exit end supervision

    argv = [sys.executable, "-c", f"import sys; sys.exit({EXIT_QMP_LOST})"]
    proc = ComparatorProcess(argv, tmp, force_checkpoint, should_run)
    await proc.start()
    try:
        await asyncio.wait_for(restarted.wait(), TIMEOUT)
    finally:
        await proc.stop()
    return proc.restarts, len(forced)


def test_agent_restarts_a_comparator_that_lost_qmp(tmp_path: Path) -> None:
    assert asyncio.run(scenario(tmp_path)) == (1, 1)
