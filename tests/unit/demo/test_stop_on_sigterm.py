"""SIGTERM stops the demo as Ctrl-C does: its task is cancelled, so teardown runs; a
SIGTERM to a forked child of the demo kills that child only."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from colopp.demo.run import stop_on_sigterm


@pytest.fixture(autouse=True)
def default_sigterm() -> object:
    before = signal.getsignal(signal.SIGTERM)
    yield None
    signal.signal(signal.SIGTERM, before)


def test_sigterm_cancels_the_running_demo_and_its_finally_runs() -> None:
    torn_down = asyncio.Event()

    async def demo() -> None:
        stop_on_sigterm()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(asyncio.Event().wait(), timeout=30)
        finally:
            torn_down.set()

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_task(demo())
        assert torn_down.is_set()

    asyncio.run(main())


def test_a_sigterm_to_a_forked_child_does_not_cancel_the_demo() -> None:
    async def demo() -> int:
        stop_on_sigterm()
        pid = os.fork()
        if pid == 0:  # the child, before any exec: it shares the loop's wakeup socket
            os.kill(os.getpid(), signal.SIGTERM)
            os._exit(0)  # reached only if SIGTERM did not kill it
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        # Let the loop read whatever the child's signal wrote to the shared wakeup socket.
        for _ in range(5):
            await asyncio.sleep(0.02)
        return status

    status = asyncio.run(demo())
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
