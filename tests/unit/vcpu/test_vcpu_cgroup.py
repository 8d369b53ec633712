"""cgroup capping: pure parsers, and the file writes against a fake cgroupfs in tmp_path.

A plain directory is not a cgroupfs (no kernel checks, and rmdir of a directory holding
files fails), so these tests pin down *which* files get *what*; the integration tier proves
the same code on the real kernel.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from colopp.errors import ConfigError
from colopp.vcpu import VcpuError
from colopp.vcpu.cgroup import (
    CgroupVersion,
    CpuController,
    apply_cap,
    cgroup_of,
    cpu_max_line,
    find_cpu_controller,
    group_path,
    parse_cpu_max,
    parse_cpu_mounts,
    quota_us_for,
    read_limit,
    remove_cap,
)

DATA = Path(__file__).parent / "data"
PID, TIDS = 500, (501, 502)


def test_parse_mounts_of_a_hybrid_v1_host() -> None:
    v1, v2 = parse_cpu_mounts((DATA / "mounts-cgroup-v1-hybrid.txt").read_text())
    assert v1 == [Path("/sys/fs/cgroup/cpu")]  # cpuacct and cpuset alone are not cpu
    assert v2 == [Path("/sys/fs/cgroup/unified")]


def test_parse_mounts_of_combined_v1_and_pure_v2() -> None:
    text = (
        "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\n"
        "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\nbad line\n"
    )
    assert parse_cpu_mounts(text) == (
        [Path("/sys/fs/cgroup/cpu,cpuacct")],
        [Path("/sys/fs/cgroup")],
    )


def test_find_controller_prefers_v2_when_it_offers_cpu(tmp_path: Path) -> None:
    v2, v1 = tmp_path / "unified", tmp_path / "cpu"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("hugetlb\n")
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup {v1} cgroup rw,cpu 0 0\ncgroup2 {v2} cgroup2 rw 0 0\n")
    assert find_cpu_controller(mounts) == CpuController(CgroupVersion.V1, v1)
    (v2 / "cgroup.controllers").write_text("cpuset cpu io memory\n")
    assert find_cpu_controller(mounts) == CpuController(CgroupVersion.V2, v2)
    mounts.write_text("proc /proc proc rw 0 0\n")
    assert find_cpu_controller(mounts) is None
    with pytest.raises(VcpuError, match="read mounts"):
        find_cpu_controller(tmp_path / "missing")


def test_quota_and_cpu_max_lines() -> None:
    assert quota_us_for(0.5) == 2_500  # of a 5 ms period: never throttled for long
    assert quota_us_for(1.5, 200_000) == 300_000
    assert quota_us_for(0.000001) == 1_000  # the kernel's minimum
    assert cpu_max_line(50_000, 100_000) == "50000 100000"
    assert cpu_max_line(None, 100_000) == "max 100000"
    assert parse_cpu_max("max 100000\n") == (None, 100_000)
    assert parse_cpu_max("25000 100000") == (25_000, 100_000)
    for bad in ("", "max", "x 100", "1 2 3", "-1 100000"):
        with pytest.raises(ConfigError):
            parse_cpu_max(bad)
    for quota in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError):
            quota_us_for(quota)
    with pytest.raises(ConfigError, match="period"):
        quota_us_for(1.0, 500)


def test_cgroup_of_reads_either_hierarchy() -> None:
    text = "9:name=systemd:/\n4:memory:/m\n2:cpu,cpuacct:/colopp/qemu-1\n0::/system.slice/x\n"
    assert cgroup_of(text, CgroupVersion.V1) == "/colopp/qemu-1"
    assert cgroup_of(text, CgroupVersion.V2) == "/system.slice/x"
    with pytest.raises(ConfigError):
        cgroup_of("4:memory:/m\n", CgroupVersion.V1)


@pytest.mark.parametrize("name", ["", "..", "a/b", "../x", ".hidden", "a..b", "x" * 65, "a b"])
def test_group_names_are_one_plain_component(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="cgroup name"):
        group_path(CpuController(CgroupVersion.V1, tmp_path), name)


def test_group_path_cannot_escape_through_a_symlink(tmp_path: Path) -> None:
    mount = tmp_path / "cg"
    mount.mkdir()
    (mount / "colopp").symlink_to(tmp_path)
    with pytest.raises(ConfigError, match="outside"):
        group_path(CpuController(CgroupVersion.V1, mount), "vm")


def fake_proc(tmp_path: Path, process_cgroup: str, thread_cgroup: str) -> Path:
    proc = tmp_path / "proc"
    (proc / str(PID)).mkdir(parents=True)
    (proc / str(PID) / "cgroup").write_text(process_cgroup)
    for tid in TIDS:
        (proc / str(PID) / "task" / str(tid)).mkdir(parents=True)
        (proc / str(PID) / "task" / str(tid) / "cgroup").write_text(thread_cgroup)
    return proc


def test_v1_cap_writes_period_quota_and_tasks_then_lifts(tmp_path: Path) -> None:
    mount = tmp_path / "cpu"
    (mount / "machine").mkdir(parents=True)
    proc = fake_proc(tmp_path, "1:cpu:/machine\n", "1:cpu:/machine\n")
    controller = CpuController(CgroupVersion.V1, mount)
    cap = apply_cap(controller, "svm", PID, TIDS, quota=0.25, proc=proc)
    group = mount / "colopp" / "svm"
    assert cap.group == group.resolve()
    assert cap.limited == cap.group
    assert (group / "cpu.cfs_period_us").read_text() == "5000"
    assert (group / "cpu.cfs_quota_us").read_text() == "1250"
    assert (group / "tasks").read_text() == str(TIDS[-1])  # one write per thread
    assert read_limit(cap) == (1_250, 5_000)
    assert cap.origins == ((501, "/machine"), (502, "/machine"))
    with pytest.raises(VcpuError, match="already exists"):
        apply_cap(controller, "svm", PID, TIDS, quota=0.25, proc=proc)

    # A plain directory holding files cannot be rmdir'ed: every other step still ran.
    with pytest.raises(VcpuError, match="remove cgroup") as caught:
        remove_cap(cap)
    assert caught.value.operation == "remove cgroup"
    assert (group / "cpu.cfs_quota_us").read_text() == "-1"
    assert read_limit(cap) == (None, 5_000)
    assert (mount / "machine" / "tasks").read_text() == str(TIDS[-1])


def test_v2_cap_moves_the_process_and_threads_into_a_threaded_child(tmp_path: Path) -> None:
    mount = tmp_path / "unified"
    (mount / "system.slice").mkdir(parents=True)
    proc = fake_proc(tmp_path, "0::/system.slice\n", "0::/system.slice\n")
    controller = CpuController(CgroupVersion.V2, mount)
    cap = apply_cap(controller, "svm", PID, TIDS, quota=1.5, period_us=50_000, proc=proc)
    group = mount / "colopp" / "svm"
    assert cap.limited == (group / "vcpus").resolve()
    assert (mount / "cgroup.subtree_control").read_text() == "+cpu"
    assert (mount / "colopp" / "cgroup.subtree_control").read_text() == "+cpu"
    assert (group / "cgroup.subtree_control").read_text() == "+cpu"
    assert (group / "cgroup.procs").read_text() == str(PID)
    assert (group / "vcpus" / "cgroup.type").read_text() == "threaded"
    assert (group / "vcpus" / "cpu.max").read_text() == "75000 50000"
    assert (group / "vcpus" / "cgroup.threads").read_text() == str(TIDS[-1])
    assert read_limit(cap) == (75_000, 50_000)
    assert cap.origins == ((PID, "/system.slice"),)

    with pytest.raises(VcpuError, match="remove cgroup"):
        remove_cap(cap)
    assert (group / "vcpus" / "cpu.max").read_text() == "max 50000"
    assert (group / "cgroup.threads").read_text() == str(TIDS[-1])
    assert (mount / "system.slice" / "cgroup.procs").read_text() == str(PID)


def test_apply_rejects_bad_ids_and_origins(tmp_path: Path) -> None:
    controller = CpuController(CgroupVersion.V1, tmp_path / "cpu")
    proc = fake_proc(tmp_path, "1:cpu:/../../etc\n", "1:cpu:/../../etc\n")
    with pytest.raises(ConfigError, match="pid"):
        apply_cap(controller, "svm", 0, TIDS, 1.0, proc=proc)
    with pytest.raises(ConfigError, match="thread ids"):
        apply_cap(controller, "svm", PID, (), 1.0, proc=proc)
    with pytest.raises(ConfigError, match="unexpected cgroup path"):
        apply_cap(controller, "svm", PID, TIDS, 1.0, proc=proc)
    with pytest.raises(VcpuError, match="read thread cgroup"):
        apply_cap(controller, "svm", PID, (999,), 1.0, proc=proc)
    assert not (tmp_path / "cpu").exists()


def test_a_failed_step_names_the_operation_and_is_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = tmp_path / "cpu"
    mount.mkdir()
    proc = fake_proc(tmp_path, "1:cpu:/\n", "1:cpu:/\n")
    controller = CpuController(CgroupVersion.V1, mount)
    write_text = Path.write_text

    def refuse_tasks(path: Path, text: str) -> int:
        if path.name == "tasks" and path.parent.name == "svm":
            raise PermissionError(13, "Permission denied")
        return write_text(path, text)

    monkeypatch.setattr(Path, "write_text", refuse_tasks)
    with pytest.raises(VcpuError, match="Permission denied") as caught:
        apply_cap(controller, "svm", PID, TIDS, 1.0, proc=proc)
    assert caught.value.operation == "move vCPU thread"
    assert isinstance(caught.value.__cause__, PermissionError)
    assert (mount / "colopp" / "svm" / "cpu.cfs_quota_us").read_text() == "-1"
