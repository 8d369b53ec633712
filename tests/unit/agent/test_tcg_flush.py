"""A promoted secondary's stale translations (``colopp/agent/tcg_flush.py``): under TCG a
running guest is stopped into ``restore-vm`` by a ``loadvm`` that must fail, then resumed
only if that stop happened; nothing at all under KVM or for a stopped guest; a ``loadvm``
that succeeds, or a resume that keeps failing, is an error. A model of QEMU's run state
stands in for QEMU (the integration test runs the real one)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colopp.agent.tcg_flush import (
    FLUSHED,
    NOT_RUNNING,
    NOT_STOPPED,
    NOT_TCG,
    flush_translations,
    snapshot_name,
)
from colopp.errors import HMP_ERROR_CLASS, QmpError


class ModelQemu:
    """QEMU's run state as HMP loadvm, query-status and cont change it."""

    def __init__(
        self,
        kvm: bool = False,
        status: str = "running",
        snapshots: frozenset[str] = frozenset(),
        loadvm_stops: bool = True,
        cont_failures: int = 0,
    ) -> None:
        self.kvm = kvm
        self.status = status
        self.snapshots = snapshots
        self.loadvm_stops = loadvm_stops
        self.cont_failures = cont_failures
        self.flushes = 0
        self.calls: list[str] = []

    async def execute(
        self,
        command: str,
        arguments: Any = None,
        timeout: float | None = None,
        *,
        oob: bool = False,
    ) -> Any:
        self.calls.append(command)
        if command == "query-kvm":
            return {"enabled": self.kvm, "present": True}
        if command == "query-status":
            return {"status": self.status, "running": self.status == "running"}
        if command == "cont":
            if self.cont_failures:
                self.cont_failures -= 1
                raise QmpError("cont", "no answer in 5.0s")
            self.status = "running"
            return {}
        raise AssertionError(command)

    async def hmp(self, line: str, timeout: float | None = None) -> str:
        command, name = line.split()
        self.calls.append(command)
        if self.loadvm_stops and self.status == "running":
            self.status = "restore-vm"
            if not self.kvm:
                self.flushes += 1
        if name in self.snapshots:
            return ""
        raise QmpError("human-monitor-command", "Error: no block device", HMP_ERROR_CLASS)


def run(qemu: ModelQemu) -> str:
    return asyncio.run(flush_translations(qemu))  # type: ignore[arg-type]


def test_a_running_tcg_guest_is_flushed_and_runs_again() -> None:
    qemu = ModelQemu()
    assert run(qemu) == FLUSHED
    assert (qemu.flushes, qemu.status) == (1, "running")
    assert qemu.calls == ["query-kvm", "query-status", "loadvm", "query-status", "cont"]


def test_kvm_is_left_alone() -> None:
    qemu = ModelQemu(kvm=True)
    assert run(qemu) == NOT_TCG
    assert qemu.calls == ["query-kvm"]


@pytest.mark.parametrize("status", ["paused", "colo", "inmigrate", "restore-vm"])
def test_a_guest_that_does_not_run_is_never_stopped_or_resumed(status: str) -> None:
    qemu = ModelQemu(status=status)
    assert run(qemu) == NOT_RUNNING
    assert qemu.status == status
    assert "cont" not in qemu.calls and "loadvm" not in qemu.calls


def test_a_qemu_that_does_not_stop_is_not_resumed() -> None:
    qemu = ModelQemu(loadvm_stops=False)
    assert run(qemu) == NOT_STOPPED
    assert "cont" not in qemu.calls


def test_a_loadvm_that_finds_the_snapshot_is_an_error() -> None:
    qemu = ModelQemu()
    name = "fixed"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("colopp.agent.tcg_flush.snapshot_name", lambda: name)
        qemu.snapshots = frozenset({name})
        with pytest.raises(QmpError, match="found and loaded"):
            run(qemu)


def test_a_resume_is_retried_then_reported() -> None:
    qemu = ModelQemu(cont_failures=2)
    assert run(qemu) == FLUSHED and qemu.status == "running"
    qemu = ModelQemu(cont_failures=3)
    with pytest.raises(QmpError):
        run(qemu)
    assert qemu.calls.count("cont") == 3


def test_snapshot_names_are_fresh() -> None:
    names = {snapshot_name() for _ in range(100)}
    assert len(names) == 100
    assert all(n.startswith("colopp-tb-flush-") and " " not in n for n in names)


@settings(max_examples=100, deadline=None)
@given(
    kvm=st.booleans(),
    status=st.sampled_from(["running", "paused", "colo", "restore-vm", "shutdown"]),
    stops=st.booleans(),
)
def test_it_never_resumes_a_guest_it_did_not_stop(kvm: bool, status: str, stops: bool) -> None:
    qemu = ModelQemu(kvm=kvm, status=status, loadvm_stops=stops)
    outcome = run(qemu)
    assert ("cont" in qemu.calls) == (outcome == FLUSHED)
    if outcome == FLUSHED:
        assert status == "running" and not kvm and qemu.flushes == 1
    else:
        assert qemu.flushes == 0
    assert qemu.status == ("running" if outcome == FLUSHED else status)
