"""SIGTERM stops the demo as Ctrl-C does: its task is cancelled, so teardown runs."""

from __future__ import annotations

import asyncio
import os
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
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
        assert torn_down.is_set()

    asyncio.run(main())
