"""The agent's table of record: adopted by a new secondary, grown by young offsets when it is
promoted, handed on again (no QEMU: splice steps are recorded, the translator not started)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from colopp.agent.translation import SideTranslation, young_port
from colopp.colo.sequence import QmpStep
from colopp.compare.young_send import YoungSender
from colopp.domain import ComparatorKind, Ports, ProtectionOptions, Role, SideSpec
from colopp.errors import ConfigError

ROW = {"guest": [1, 80], "peer": [2, 4000], "delta": 5, "last_seen": 0.0}


class NoProcess(SideTranslation):
    async def _spawn(self) -> None:
        self.spawned = True
        self._proc = None  # nothing to supervise

    async def _supervise(self) -> None:
        return


def _spec(tmp_path: Path) -> SideSpec:
    return SideSpec(
        Role.SECONDARY,
        tmp_path,
        "tap0",
        tmp_path / "d.qcow2",
        "127.0.0.1",
        "127.0.0.1",
        Ports(compare=19004),
        ProtectionOptions(comparator=ComparatorKind.COLOPP),
    )


async def _scenario(tmp_path: Path) -> None:
    steps: list[QmpStep] = []

    async def run_steps(batch: list[QmpStep]) -> None:
        steps.extend(batch)

    side = NoProcess(tmp_path)
    await side.as_secondary(_spec(tmp_path), [ROW], run_steps)
    assert side.spawned
    adds = [s.arguments["id"] for s in steps if s.command == "object-add"]
    assert adds == ["xo1", "xo0", "xi0", "xi1"]
    sender = YoungSender("127.0.0.1", young_port(_spec(tmp_path)))
    await sender.send(
        {"op": "young", "guest": [1, 80], "peer": [2, 4001], "delta": 9, "epoch": 0, "run": "r"}
    )
    await sender.close()
    side.promoted(None)
    rows = {tuple(r["peer"]): r["delta"] for r in side.record_rows()}
    assert rows == {(2, 4000): 5, (2, 4001): 9}
    # The record survives an agent restart (run directory state file).
    assert len(SideTranslation(tmp_path).record) == 2
    await side.stop()


def test_secondary_adopts_record_and_promotion_adds_live_young(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))


def test_bad_record_is_refused_before_anything_starts(tmp_path: Path) -> None:
    async def run_steps(batch: list[QmpStep]) -> None:
        raise AssertionError("no step may run")

    side = SideTranslation(tmp_path)
    with pytest.raises(ConfigError):
        asyncio.run(side.as_secondary(_spec(tmp_path), [{"guest": [1]}], run_steps))


async def _stale_scenario(tmp_path: Path) -> None:
    async def run_steps(batch: list[QmpStep]) -> None:
        pass

    side = NoProcess(tmp_path)
    await side.as_secondary(_spec(tmp_path), [], run_steps)
    sender = YoungSender("127.0.0.1", young_port(_spec(tmp_path)))
    await sender.send(
        {"op": "young", "guest": [1, 80], "peer": [2, 4001], "delta": 9, "epoch": 0, "run": "r"}
    )
    await sender.close()
    # This secondary's QEMU loaded a checkpoint after the offset arrived (RESUME stamp in
    # the future of the arrival); the comparator's "completed" never came.
    side.promoted(time.time() + 1.0)
    assert side.record_rows() == []
    await side.stop()


def test_promotion_drops_offsets_a_later_local_checkpoint_load_voided(tmp_path: Path) -> None:
    asyncio.run(_stale_scenario(tmp_path))
