"""Two hosts on one machine: the CPU plan, the cgroup files written, the CPU busy reading."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from colopp.errors import LabError
from colopp.lab.cpuset import (
    PARENT,
    CpuPlan,
    cpu_busy,
    create_groups,
    main,
    plan_cpus,
    remove_groups,
)
from colopp.lab.plan import Node


def test_two_cpus_give_host_a_cpu0_and_host_b_with_the_client_cpu1(tmp_path: Path) -> None:
    plan = plan_cpus("lab", [1, 0], root=tmp_path, v2=False)
    assert plan is not None
    assert plan.describe() == {"hosta": [0], "hostb": [1], "client": [1]}
    assert plan_cpus("lab", [0], root=tmp_path) is None
    four = plan_cpus("lab", [0, 1, 2, 3], root=tmp_path, v2=False)
    assert four is not None and four.cpus[Node.HOST_A] == (0, 1)


def test_wrap_enters_the_group_then_runs_the_program(tmp_path: Path) -> None:
    plan = CpuPlan("lab", {Node.HOST_A: (0,)}, tmp_path)
    argv = plan.wrap(Node.HOST_A, ["qemu", "-x"])
    assert argv[:3] == [sys.executable, "-m", "colopp.lab.cpuset"]
    assert argv[3] == str(tmp_path / PARENT / "lab-hosta")
    assert argv[4:] == ["--", "qemu", "-x"]
    assert plan.wrap(Node.CLIENT, ["wrk"]) == ["wrk"]  # not confined


def fake_v1(root: Path) -> None:
    root.mkdir()
    (root / "cpuset.cpus").write_text("0-1\n")
    (root / "cpuset.mems").write_text("0\n")


def test_v1_groups_get_cpus_and_mems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "cpuset"
    fake_v1(root)
    plan = plan_cpus("lab", [0, 1], root=root, v2=False)
    assert plan is not None
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kw: object) -> None:
        real_mkdir(self, *args, **kw)  # type: ignore[arg-type]
        for name in ("cpuset.cpus", "cpuset.mems"):  # what the kernel creates, empty
            if not (self / name).exists():
                (self / name).write_text("")

    monkeypatch.setattr(Path, "mkdir", mkdir)
    create_groups(plan)
    group = root / PARENT / "lab-hostb"
    assert (group / "cpuset.cpus").read_text() == "1"
    assert (group / "cpuset.mems").read_text() == "0"
    assert (root / PARENT / "cpuset.cpus").read_text() == "0-1"
    # Plain directories with files cannot be rmdir'ed: reported, never raised.
    assert len(remove_groups(plan)) == 3


def test_missing_permission_is_a_lab_error(tmp_path: Path) -> None:
    plan = CpuPlan("lab", {Node.HOST_A: (0,)}, tmp_path / "nope" / "deeper")
    with pytest.raises(LabError, match="cpuset"):
        create_groups(plan)


def test_cpu_busy_counts_all_but_idle_and_iowait() -> None:
    stat = (
        "cpu  1 1 1 1 1 0 0 0 0 0\ncpu0 100 0 50 1000 10 0 5 0 0 0\ncpu1 10 0 10 2000 0 0 0 0 0 0\n"
    )
    assert cpu_busy(stat, (0,), 100) == pytest.approx(1.55)
    assert cpu_busy(stat, (0, 1), 100) == pytest.approx(1.75)


def test_wrapper_usage_errors_exit_2(tmp_path: Path) -> None:
    assert main([]) == 2
    assert main([str(tmp_path / "missing"), "--", "true"]) == 2
