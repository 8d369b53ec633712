"""The comparator's event loop choice (``COLOPP_COMPARE_LOOP``): asyncio unless asked."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from colopp.compare.__main__ import LOOP_ENV, loop_runner
from colopp.errors import ConfigError


def test_default_is_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOOP_ENV, raising=False)
    assert loop_runner() is asyncio.run


@pytest.mark.parametrize("bad", ["", "trio", "uvloop; rm -rf /", "ASYNCIO"])
def test_unknown_loop_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(LOOP_ENV, bad)
    with pytest.raises(ConfigError, match=LOOP_ENV):
        loop_runner()


def test_uvloop_when_asked() -> None:
    if importlib.util.find_spec("uvloop") is None:
        with pytest.raises(ConfigError, match="not installed"):
            loop_runner("uvloop")
        return
    runner = loop_runner("uvloop")
    assert runner is not asyncio.run

    async def answer() -> int:
        return 42

    assert runner(answer()) == 42
