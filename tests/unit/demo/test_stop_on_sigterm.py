"""SIGTERM stops the demo as Ctrl-C does: its task is cancelled, so teardown runs."""

from __future__ import annotations

import asyncio
import os
import select
import signal

import pytest

from colopp.demo.run import stop_on_sigterm


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
        try:
            with pytest.raises(asyncio.CancelledError):
                await asyncio.create_task(demo())
        finally:
            signal.signal(signal.SIGTERM, previous)
        assert torn_down.is_set()

    previous = signal.getsignal(signal.SIGTERM)
    asyncio.run(main())


def test_a_forked_childs_sigterm_does_not_cancel_the_demo() -> None:
    # pyroute2 forks a Python child for namespace work and SIGTERMs it when done; with
    # loop.add_signal_handler the child's signal reached the demo through the shared
    # wakeup fd and cancelled it while it built the lab.
    async def demo() -> int:
        stop_on_sigterm()
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child says it runs, then lives until killed (or gives up)
            os.write(ready_w, b"r")
            select.select([], [], [], 5.0)
            os._exit(0)
        await asyncio.to_thread(os.read, ready_r, 1)
        os.kill(pid, signal.SIGTERM)
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        os.close(ready_r)
        os.close(ready_w)
        with pytest.raises(TimeoutError):  # nothing cancels this task meanwhile
            await asyncio.wait_for(asyncio.Event().wait(), timeout=0.3)
        return status

    previous = signal.getsignal(signal.SIGTERM)
    try:
        status = asyncio.run(demo())
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
