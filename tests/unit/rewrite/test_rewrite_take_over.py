"""Promotion hands the whole table of record to the translator, then switches
``filter-rewriter`` off (limit (3)); the translator runs in-process against fake QEMU
chardevs, which appear when the agent's ``chardev-add`` steps run."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from rewrite_frames import GUEST_KEY
from test_rewrite_relay import FakeQemu

import colopp.agent.translation as translation_mod
from colopp.agent.translation import SideTranslation
from colopp.colo.sequence import QmpStep
from colopp.errors import ConfigError
from colopp.rewrite.control_client import load_table, wait_ready
from colopp.rewrite.relay import Relay, load_state
from colopp.rewrite.splice import TABLE_FILE, relay_options

YOUNG = (GUEST_KEY[0], GUEST_KEY[1], GUEST_KEY[2], 40001)


class _Forever:
    """Stands in for the translator's process while its relay runs in this loop."""

    returncode = None

    def __init__(self, task: asyncio.Task[None]) -> None:
        self.task = task

    async def wait(self) -> int:
        await asyncio.wait([self.task])  # until terminate() cancelled the relay
        return 0

    def terminate(self) -> None:
        self.task.cancel()


class InProcess(SideTranslation):
    relay_task: asyncio.Task[None] | None = None

    async def _spawn(self) -> None:
        relay = Relay(relay_options(self.run_dir))
        self.relay_task = asyncio.create_task(relay.run())
        self._proc = _Forever(self.relay_task)  # type: ignore[assignment]


async def _promote(tmp_path: Path, *, qemu_chardevs: bool) -> tuple[InProcess, list[str]]:
    qemu = FakeQemu(tmp_path)
    log: list[str] = []

    async def run_steps(batch: list[QmpStep]) -> None:
        for step in batch:
            args: dict[str, Any] = step.arguments
            log.append(f"{step.command}:{args.get('id', args.get('value'))}")
        if qemu_chardevs and batch and batch[0].command == "chardev-add":
            await qemu.start()

    side = InProcess(tmp_path)
    side.young.learned(YOUNG, 4000, 0, 1.0)
    side.promoted(None)
    try:
        await side.take_over(run_steps)
        if qemu_chardevs:
            assert load_state(tmp_path / TABLE_FILE).delta(YOUNG) == 4000
    finally:
        task = side.relay_task
        await side.stop()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await qemu.close()
    return side, log


def test_a_side_without_a_translator_gets_one_before_the_rewriter_goes_off(
    tmp_path: Path,
) -> None:
    side, log = asyncio.run(_promote(tmp_path, qemu_chardevs=True))
    chardevs = [e for e in log if e.startswith("chardev-add")]
    filters = [e for e in log if e.startswith("object-add")]
    assert len(chardevs) == 4 and filters == [
        f"object-add:{f}" for f in ("xo1", "xo0", "xi0", "xi1")
    ]
    # Chardevs, then (translator connected) the filters, then the rewriter off, last.
    assert log.index(chardevs[-1]) < log.index(filters[0])
    assert log[-1] == "qom-set:off" and side.rewriter_off


def test_a_translator_that_does_not_connect_leaves_the_rewriter_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(translation_mod, "TAKE_OVER_TIMEOUT_S", 0.3)
    side, log = asyncio.run(_promote(tmp_path, qemu_chardevs=False))
    assert not any(e.startswith(("object-add", "qom-set")) for e in log)
    assert not side.rewriter_off and not side.spliced


async def _spliced(tmp_path: Path) -> None:
    qemu = FakeQemu(tmp_path)
    await qemu.start()
    relay = Relay(qemu.opts)
    task = asyncio.create_task(relay.run())
    try:
        control = qemu.opts.control
        await wait_ready(control, 5.0)
        assert relay.ready
        rows = [
            {
                "guest": [YOUNG[0], YOUNG[1]],
                "peer": [YOUNG[2], YOUNG[3]],
                "delta": 9,
                "last_seen": 0.0,
                "isn_client": 77,
            }
        ]
        await load_table(control, rows, 5.0)
        entry = relay.table.get(YOUNG)
        assert entry is not None and entry.delta == 9 and entry.isn_client == 77
        with pytest.raises(ConfigError):
            await load_table(control, [{"bad": 1}], 5.0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await qemu.close()


def test_the_running_translator_takes_the_record_with_its_pending_rows(tmp_path: Path) -> None:
    asyncio.run(_spliced(tmp_path))


def test_waiting_for_a_translator_that_never_listens_gives_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not connected"):
        asyncio.run(wait_ready(tmp_path / "nobody.sock", 0.2))
