"""The one polling loop (colopp.polling): first truthy result, a timeout that names what."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from colopp.polling import await_until, wait_until


def test_returns_the_first_truthy_result_and_stops_looking() -> None:
    seen = itertools.count()
    results = iter([0, None, "", {"state": "protected"}, "never looked at"])

    def check() -> object:
        next(seen)
        return next(results)

    assert wait_until("protected", check, timeout=5, period=0) == {"state": "protected"}
    assert next(seen) == 4


def test_looks_at_least_once_even_with_no_time() -> None:
    assert wait_until("ready", lambda: 7, timeout=0) == 7


def test_times_out_naming_what_and_the_last_result() -> None:
    with pytest.raises(TimeoutError, match=r"re-protected \(last: \[\]\)"):
        wait_until("re-protected", list, timeout=0, period=0)
    with pytest.raises(TimeoutError, match="re-protected.*'degraded'"):
        wait_until("re-protected", lambda: 0, timeout=0, describe=lambda: "degraded")


def test_the_async_loop_runs_other_tasks_while_it_waits() -> None:
    async def scenario() -> str:
        box: list[str] = []
        loop = asyncio.get_running_loop()
        loop.call_soon(box.append, "served")
        return await await_until("served", lambda: box and box[0], timeout=5, period=0)

    assert asyncio.run(scenario()) == "served"


def test_the_async_loop_times_out_too() -> None:
    with pytest.raises(TimeoutError, match="heartbeats"):
        asyncio.run(await_until("heartbeats", lambda: False, timeout=0))
