"""A vCPU cap kept across an agent restart: recorded, rebuilt against the controller found
now, checked, and put back where something moved (a fake cgroupfs and /proc in tmp_path,
as in test_vcpu_cgroup)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from colopp.errors import ConfigError
from colopp.vcpu.cgroup import CgroupVersion, CpuController, apply_cap, read_limit, remove_cap
from colopp.vcpu.keep import cap_record, keep_cap, recorded_cap
from colopp.vcpu.shrink import VcpuState

PID, TIDS = 500, (501, 502)


def fake_proc(tmp_path: Path, process: str, thread: str, own: str = "") -> Path:
    proc = tmp_path / "proc"
    (proc / str(PID)).mkdir(parents=True)
    (proc / str(PID) / "cgroup").write_text(process)
    for tid in TIDS:
        (proc / str(PID) / "task" / str(tid)).mkdir(parents=True)
        (proc / str(PID) / "task" / str(tid) / "cgroup").write_text(thread)
    (proc / "self").mkdir()
    (proc / "self" / "cgroup").write_text(own or process)
    return proc


def move_threads(proc: Path, text: str) -> None:
    """What the kernel would show once the threads are in the cap's cgroup."""
    for tid in TIDS:
        (proc / str(PID) / "task" / str(tid) / "cgroup").write_text(text)


def v1_capped(tmp_path: Path) -> tuple[CpuController, Path, dict[str, object]]:
    mount = tmp_path / "cpu"
    (mount / "machine").mkdir(parents=True)
    proc = fake_proc(tmp_path, "1:cpu:/machine\n", "1:cpu:/machine\n")
    controller = CpuController(CgroupVersion.V1, mount)
    cap = apply_cap(controller, "demo-secondary-500", PID, TIDS, quota=0.5, proc=proc)
    move_threads(proc, "1:cpu:/colopp/demo-secondary-500\n")
    return controller, proc, json.loads(json.dumps(cap_record(cap)))  # via the state file


def test_the_record_names_the_group_not_its_path(tmp_path: Path) -> None:
    _controller, _proc, record = v1_capped(tmp_path)
    assert record == {
        "version": "v1",
        "name": "demo-secondary-500",
        "period_us": 5_000,
        "origins": [[501, "/machine"], [502, "/machine"]],
    }
    assert recorded_cap(record) == (
        "demo-secondary-500",
        5_000,
        ((501, "/machine"), (502, "/machine")),
    )
    for bad in (None, [], {"name": "x"}, {"name": "x", "period_us": "y", "origins": []}):
        with pytest.raises(ConfigError, match="recorded vCPU cap"):
            recorded_cap(bad)


def test_an_intact_cap_is_kept_untouched(tmp_path: Path) -> None:
    controller, proc, record = v1_capped(tmp_path)
    group = controller.mount / "colopp" / "demo-secondary-500"
    (group / "tasks").write_text("untouched")
    # The next agent may see the same hierarchy at another mount point: the name is enough.
    cap, repaired = keep_cap(controller, "ignored-name", PID, TIDS, 0.5, record, proc)
    assert repaired == []
    assert cap.group == group.resolve()
    assert cap.origins == ((501, "/machine"), (502, "/machine"))
    assert (group / "tasks").read_text() == "untouched"
    assert read_limit(cap) == (2_500, 5_000)
    # ...and it is the cap that restore lifts: the tasks go back where they came from.
    state = VcpuState(PID, TIDS, {}, {}, 0.5, cap)
    assert state.to_status()["cgroup"] == str(group.resolve())
    with pytest.raises(Exception, match="remove cgroup"):  # a plain dir holds its files
        remove_cap(cap)
    assert (group / "cpu.cfs_quota_us").read_text() == "-1"
    assert (controller.mount / "machine" / "tasks").read_text() == str(TIDS[-1])


def test_a_lifted_limit_and_a_moved_thread_are_put_back(tmp_path: Path) -> None:
    controller, proc, record = v1_capped(tmp_path)
    group = controller.mount / "colopp" / "demo-secondary-500"
    (group / "cpu.cfs_quota_us").write_text("-1")
    (proc / str(PID) / "task" / "502" / "cgroup").write_text("1:cpu:/machine\n")
    (group / "tasks").write_text("")
    cap, repaired = keep_cap(controller, "demo-secondary-500", PID, TIDS, 0.5, record, proc)
    assert repaired == ["limit 2500/5000 us", "thread 502"]
    assert read_limit(cap) == (2_500, 5_000)
    assert (group / "tasks").read_text() == "502"


def test_a_vanished_cap_is_made_again(tmp_path: Path) -> None:
    mount = tmp_path / "unified"
    (mount / "system.slice").mkdir(parents=True)
    proc = fake_proc(tmp_path, "0::/system.slice\n", "0::/system.slice\n")
    controller = CpuController(CgroupVersion.V2, mount)
    cap, repaired = keep_cap(controller, "demo-secondary-500", PID, TIDS, 0.5, None, proc)
    group = mount / "colopp" / "demo-secondary-500"
    assert repaired == [f"cgroup {group.resolve()} re-created"]
    assert (group / "vcpus" / "cpu.max").read_text() == "2500 5000"
    assert (group / "cgroup.procs").read_text() == str(PID)
    assert cap.origins == ((PID, "/system.slice"),)


def test_an_older_record_without_the_cap_is_rebuilt_from_the_name(tmp_path: Path) -> None:
    """An agent of the previous build saved no cap: the group is found by its name and the
    process goes back, at removal, to the agent's own cgroup (where QEMU started)."""
    mount = tmp_path / "unified"
    group = mount / "colopp" / "demo-secondary-500"
    (group / "vcpus").mkdir(parents=True)
    (group / "vcpus" / "cpu.max").write_text("2500 5000")
    proc = fake_proc(
        tmp_path,
        "0::/colopp/demo-secondary-500\n",
        "0::/colopp/demo-secondary-500/vcpus\n",
        own="0::/system.slice/colopp-agent.service\n",
    )
    controller = CpuController(CgroupVersion.V2, mount)
    cap, repaired = keep_cap(controller, "demo-secondary-500", PID, TIDS, 0.5, None, proc)
    assert repaired == []
    assert cap.limited == (group / "vcpus").resolve()
    assert cap.origins == ((PID, "/system.slice/colopp-agent.service"),)


def test_a_record_of_another_shape_is_refused(tmp_path: Path) -> None:
    controller, proc, _record = v1_capped(tmp_path)
    with pytest.raises(ConfigError):
        keep_cap(
            controller, "x", PID, TIDS, 0.5, {"name": "../etc", "period_us": 1, "origins": []}, proc
        )
