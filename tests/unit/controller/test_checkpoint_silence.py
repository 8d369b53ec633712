"""What the detector is told about a QMP silence: the heartbeat's ``checkpoint_stalled_s``
(colopp.agent.heartbeat) excuses the silence only with QEMU's own STOP of a checkpoint,
never with an overdue one (a SIGSTOPped QEMU falls overdue too). Fake time, no QEMU."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from colopp.agent import heartbeat
from colopp.agent.heartbeat import reported_stall
from colopp.agent.side import Side
from colopp.controller.health import Beat, DetectorConfig, Health, SideDetector
from colopp.domain import Role, SideSpec, VmSpec
from colopp.errors import QmpTimeout

CFG = DetectorConfig()
DELAY_S = 2.0  # x-checkpoint-delay


class LiveProcess:
    def alive(self) -> bool:
        return True


class SilentMonitor:
    """QMP that never answers within the heartbeat's bound (QEMU's main loop is held)."""

    async def execute(self, command: str, arguments: Any = None, timeout: float = 0.0) -> Any:
        raise QmpTimeout(command, f"no answer in {timeout:.1f}s")


def primary(last_checkpoint: float) -> Side:
    spec = SideSpec(Role.PRIMARY, Path("/run/x"), "cpp1", Path("/d"), "198.18.1.12", "198.18.1.10")
    side = Side(VmSpec("vm1", Path("/k"), Path("/i"), "x"), spec, LiveProcess(), SilentMonitor())  # type: ignore[arg-type]
    side.checkpoint_delay_ms = int(DELAY_S * 1000)
    side.checkpoints.on_event("STOP", last_checkpoint - 0.01)
    side.checkpoints.on_event("RESUME", last_checkpoint)
    return side


def test_an_overdue_checkpoint_counts_while_qmp_answers() -> None:
    """The link cut before the checkpoint request: QEMU waits for the peer, VM running."""
    side = primary(last_checkpoint=100.0)
    assert reported_stall(side, 100.0 + DELAY_S + 1.5, qmp_ok=True) == pytest.approx(1.5)


def test_a_stop_without_resume_excuses_silence_at_once() -> None:
    side = primary(last_checkpoint=100.0)
    side.checkpoints.on_event("STOP", 102.0)
    assert reported_stall(side, 102.1, qmp_ok=False) == pytest.approx(0.1)


def test_an_overdue_checkpoint_does_not_excuse_silence() -> None:
    side = primary(last_checkpoint=100.0)
    assert reported_stall(side, 100.0 + DELAY_S + 1.5, qmp_ok=False) == 0.0


def test_a_sigstopped_primary_whose_checkpoint_falls_due_is_hung_at_hang_after() -> None:
    """SIGSTOP 0.1 s before the next checkpoint was due: had the overdue time excused the
    silence, the primary would have been judged STALLED and kept, frozen."""
    side, det = primary(last_checkpoint=100.0), SideDetector(CFG, 0.0)
    stopped_at = 100.0 + DELAY_S - 0.1  # wall clock; the controller's beats start at 0
    det.observe(Beat(0.0, True))
    verdicts = []
    for step in range(1, 60):
        t = step * 0.05
        stalled = reported_stall(side, stopped_at + t, qmp_ok=False)
        verdicts.append((t, det.observe(Beat(t, True, qmp_ok=False, stalled_s=stalled))))
    judged_at, verdict = next((t, v) for t, v in verdicts if v is not Health.HEALTHY)
    assert verdict is Health.HUNG and judged_at == pytest.approx(CFG.hang_after)


def test_the_heartbeat_reports_a_checkpoint_stop_with_qmp_silent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    side = primary(last_checkpoint=990.0)
    side.checkpoints.on_event("STOP", 999.9)  # QEMU's STOP came before its main loop froze
    monkeypatch.setattr(heartbeat, "time", SimpleNamespace(time=lambda: 1000.0))
    reply = asyncio.run(heartbeat.heartbeat_reply("hosta", side, 0.2, False, None))
    assert reply["qmp_ok"] is False
    assert reply["checkpoint_stalled_s"] == pytest.approx(0.1)
