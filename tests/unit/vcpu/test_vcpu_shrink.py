"""shrink/restore with a fake monitor, fake affinity calls and a fake /proc (no root, no QEMU)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from colopp.errors import ConfigError, QmpError
from colopp.vcpu import VcpuError
from colopp.vcpu.cgroup import CgroupVersion, CpuController
from colopp.vcpu.shrink import ThreadAffinity, VcpuState, process_of_thread, restore, shrink

DATA = Path(__file__).parent / "data"
REPLY = json.loads((DATA / "query-cpus-fast-smp2-tcg-11.1.3.json").read_text())
TIDS = tuple(entry["thread-id"] for entry in REPLY)
PID = TIDS[0] - 3
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class FakeMonitor:
    def __init__(self, reply: Any = REPLY, error: QmpError | None = None) -> None:
        self.reply, self.error, self.commands = reply, error, list[str]()

    async def execute(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        self.commands.append(command)
        if self.error is not None:
            raise self.error
        return self.reply


class FakeHost:
    """Per-thread affinity of one process, with optional failures."""

    def __init__(self, cpus: set[int], fail_on: int | None = None, gone: set[int] | None = None):
        self.cpus = {tid: set(cpus) for tid in (PID, *TIDS)}
        self.fail_on, self.gone, self.calls = fail_on, gone or set(), list[tuple[int, set[int]]]()

    def get(self, tid: int) -> set[int]:
        return set(self.cpus[tid])

    def set(self, tid: int, cpus: frozenset[int]) -> None:
        if tid in self.gone:
            raise ProcessLookupError(3, "No such process")
        if tid == self.fail_on:
            raise OSError(22, "Invalid argument")
        self.calls.append((tid, set(cpus)))
        self.cpus[tid] = set(cpus)

    def affinity(self) -> ThreadAffinity:
        return ThreadAffinity(get=self.get, set=self.set)


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    for tid in TIDS:
        (tmp_path / str(tid)).mkdir()
        (tmp_path / str(tid) / "status").write_text(
            f"Name:\tCPU 0/TCG\nTgid:\t{PID}\nPid:\t{tid}\n"
        )
    return tmp_path


def test_process_of_thread(proc: Path) -> None:
    assert process_of_thread(TIDS[1], proc) == PID
    with pytest.raises(VcpuError, match="find QEMU process"):
        process_of_thread(1, proc)
    (proc / "7").mkdir()
    (proc / "7" / "status").write_text("Name: x\n")
    with pytest.raises(VcpuError, match="no Tgid"):
        process_of_thread(7, proc)


def test_shrink_pins_each_vcpu_thread_and_restore_undoes_it(proc: Path) -> None:
    host, monitor = FakeHost({0, 1, 2, 3}), FakeMonitor()
    state = run(shrink(monitor, 1, None, affinity=host.affinity(), proc=proc))
    assert monitor.commands == ["query-cpus-fast"]
    assert state == VcpuState(
        pid=PID,
        thread_ids=TIDS,
        before={tid: frozenset({0, 1, 2, 3}) for tid in TIDS},
        after={tid: frozenset({3}) for tid in TIDS},
        quota=None,
    )
    assert host.cpus[PID] == {0, 1, 2, 3}  # only vCPU threads move
    assert state.to_status() == {
        "pid": PID,
        "thread_ids": list(TIDS),
        "cpus_before": {str(tid): [0, 1, 2, 3] for tid in TIDS},
        "cpus_after": {str(tid): [3] for tid in TIDS},
        "quota": None,
        "cgroup": None,
        "cgroup_version": None,
    }
    run(restore(monitor, state, affinity=host.affinity()))
    assert all(host.cpus[tid] == {0, 1, 2, 3} for tid in TIDS)


def test_shrink_by_fraction(proc: Path) -> None:
    host = FakeHost({0, 1, 2, 3})
    state = run(
        shrink(FakeMonitor(), None, None, fraction=0.5, affinity=host.affinity(), proc=proc)
    )
    assert set(state.after.values()) == {frozenset({2, 3})}


def test_shrink_needs_something_to_do(proc: Path) -> None:
    monitor = FakeMonitor()
    with pytest.raises(ConfigError, match="count, a CPU fraction or a quota"):
        run(shrink(monitor, None, None, affinity=FakeHost({0}).affinity(), proc=proc))
    assert monitor.commands == []


def test_qmp_errors_pass_through(proc: Path) -> None:
    monitor = FakeMonitor(error=QmpError("query-cpus-fast", "connection: EOF"))
    with pytest.raises(QmpError, match="query-cpus-fast"):
        run(shrink(monitor, 1, None, affinity=FakeHost({0, 1}).affinity(), proc=proc))


def test_a_failed_setaffinity_rolls_back_the_threads_already_moved(proc: Path) -> None:
    host = FakeHost({0, 1}, fail_on=TIDS[1])
    with pytest.raises(VcpuError, match="sched_setaffinity") as caught:
        run(shrink(FakeMonitor(), 1, None, affinity=host.affinity(), proc=proc))
    assert caught.value.operation == "sched_setaffinity"
    assert isinstance(caught.value.__cause__, OSError)
    assert host.calls == [(TIDS[0], {1}), (TIDS[0], {0, 1})]


def test_restore_skips_threads_that_exited_and_reports_other_failures(proc: Path) -> None:
    host = FakeHost({0, 1})
    state = run(shrink(FakeMonitor(), 1, None, affinity=host.affinity(), proc=proc))
    host.gone = {TIDS[0]}
    run(restore(FakeMonitor(), state, affinity=host.affinity()))
    assert host.cpus[TIDS[1]] == {0, 1}
    host.gone, host.fail_on = set(), TIDS[0]
    with pytest.raises(VcpuError, match="restore thread"):
        run(restore(FakeMonitor(), state, affinity=host.affinity()))
    assert host.cpus[TIDS[1]] == {0, 1}


def test_quota_without_a_cpu_controller_is_an_error_and_undoes_the_pinning(
    proc: Path, tmp_path: Path
) -> None:
    host = FakeHost({0, 1})
    controller = CpuController(CgroupVersion.V1, tmp_path / "cpu")
    with pytest.raises(VcpuError, match="read thread cgroup"):  # the fake /proc has none
        run(
            shrink(
                FakeMonitor(), 1, 0.5, controller=controller, affinity=host.affinity(), proc=proc
            )
        )
    assert all(host.cpus[tid] == {0, 1} for tid in TIDS)


def test_quota_is_applied_through_the_given_controller(proc: Path, tmp_path: Path) -> None:
    mount = tmp_path / "cpu"
    mount.mkdir()
    (proc / str(PID)).mkdir()
    for tid in TIDS:
        (proc / str(PID) / "task" / str(tid)).mkdir(parents=True)
        (proc / str(PID) / "task" / str(tid) / "cgroup").write_text("1:cpu:/\n")
    host = FakeHost({0, 1})
    controller = CpuController(CgroupVersion.V1, mount)
    state = run(
        shrink(FakeMonitor(), None, 0.5, controller=controller, affinity=host.affinity(), proc=proc)
    )
    assert state.after == state.before
    assert state.cap is not None
    assert state.to_status()["cgroup"] == str(mount.resolve() / "colopp" / f"qemu-{PID}")
    assert state.to_status()["cgroup_version"] == "v1"
    assert (mount / "colopp" / f"qemu-{PID}" / "cpu.cfs_quota_us").read_text() == "2500"
    with pytest.raises(VcpuError, match="remove cgroup"):  # tmp dirs are not cgroupfs
        run(restore(FakeMonitor(), state, affinity=host.affinity()))
    assert (mount / "colopp" / f"qemu-{PID}" / "cpu.cfs_quota_us").read_text() == "-1"
