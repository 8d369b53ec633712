"""Semi-active secondary against one real QEMU (TCG, -smp 2, no network, sits in the BIOS):
shrink the vCPU threads to one host CPU and cap them, then restore."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from colopp.qemu.runtime import QemuRuntime
from colopp.qmp.monitor import Monitor
from colopp.vcpu.cgroup import (
    DEFAULT_PERIOD_US,
    GROUP_PARENT,
    CgroupVersion,
    cgroup_of,
    find_cpu_controller,
    read_limit,
)
from colopp.vcpu.placement import parse_cpus_fast, plan_shrink
from colopp.vcpu.shrink import VcpuState, restore, shrink

QUOTA = 0.5


@pytest.fixture
def qemu(runtime: QemuRuntime, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    sock = tmp_path / "qmp.sock"
    argv = [
        *runtime.system_argv(),
        *("-accel", "tcg", "-cpu", "qemu64", "-m", "128", "-smp", "2"),
        *("-nodefaults", "-display", "none", "-nic", "none"),
        *("-qmp", f"unix:{sock},server=on,wait=off"),
    ]
    with (tmp_path / "qemu.log").open("wb") as log:
        process = subprocess.Popen(
            argv, env={**os.environ, **runtime.env()}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield process, sock
    finally:
        process.kill()
        process.wait(timeout=10)
        # A failed test may leave its (now empty) cgroup behind: only ours, by pid.
        controller = find_cpu_controller()
        if controller is not None:
            group = controller.mount / GROUP_PARENT / f"qemu-{process.pid}"
            for leftover in (group / "vcpus", group):
                with contextlib.suppress(FileNotFoundError):
                    leftover.rmdir()


def thread_cgroup(pid: int, tid: int, version: CgroupVersion) -> str:
    return cgroup_of(Path(f"/proc/{pid}/task/{tid}/cgroup").read_text(), version)


async def shrink_and_restore(process: subprocess.Popen[bytes], sock: Path) -> None:
    monitor = Monitor("vcpu-test", sock)
    await monitor.connect(within=20, alive=lambda: process.poll() is None)
    try:
        threads = parse_cpus_fast(await monitor.execute("query-cpus-fast"))
        tids = [t.thread_id for t in threads]
        assert len(set(tids)) == 2, "MTTCG gives each vCPU its own thread"
        original = {tid: frozenset(os.sched_getaffinity(tid)) for tid in tids}
        planned = plan_shrink(threads, os.sched_getaffinity(process.pid), count=1).target
        assert len(planned) == 1
        controller = find_cpu_controller()
        origin = (
            {tid: thread_cgroup(process.pid, tid, controller.version) for tid in tids}
            if controller
            else {}
        )

        state: VcpuState = await shrink(monitor, 1, QUOTA if controller else None)
        try:
            assert state.pid == process.pid
            assert state.thread_ids == tuple(tids)
            assert state.before == original
            for tid in tids:
                assert frozenset(os.sched_getaffinity(tid)) == planned == state.after[tid]
            if controller is not None:
                assert state.cap is not None
                assert state.cap.limited.is_dir()
                relative = "/" + str(state.cap.limited.relative_to(controller.mount))
                for tid in tids:
                    assert thread_cgroup(process.pid, tid, controller.version) == relative
                assert read_limit(state.cap) == (
                    round(QUOTA * DEFAULT_PERIOD_US),
                    DEFAULT_PERIOD_US,
                )
                tasks = "tasks" if controller.version is CgroupVersion.V1 else "cgroup.threads"
                listed = (state.cap.limited / tasks).read_text().split()
                assert sorted(int(t) for t in listed) == sorted(tids)
        finally:
            await restore(monitor, state)

        for tid in tids:
            assert frozenset(os.sched_getaffinity(tid)) == original[tid]
        if controller is not None:
            assert state.cap is not None
            assert not state.cap.group.exists()
            for tid in tids:
                assert thread_cgroup(process.pid, tid, controller.version) == origin[tid]
        assert process.poll() is None, "QEMU survived shrink and restore"
        assert await monitor.execute("query-status") is not None
    finally:
        await monitor.close()


def test_shrink_to_one_cpu_cap_and_restore(
    qemu: tuple[subprocess.Popen[bytes], Path],
) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs at least 2 host CPUs to see a shrink")
    process, sock = qemu
    asyncio.run(asyncio.wait_for(shrink_and_restore(process, sock), 60))
