"""A restarted agent under a semi-active secondary keeps its vCPU cap: the cap goes into the
state file, the next agent finds it, checks it, and lifts it at failover (before the fix
the re-adopted shrink had no cap, so a promoted secondary stayed capped at half a CPU)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from pathlib import Path

import pytest

from colopp.agent import adopt, semiactive, state_file
from colopp.agent.side import Side
from colopp.domain import ComparatorKind, ProtectionOptions, Role, VmSpec
from colopp.side_request import SideRequest
from colopp.vcpu.cgroup import CgroupVersion, CpuController, apply_cap, read_limit
from colopp.vcpu.keep import keep_cap
from colopp.vcpu.shrink import VcpuState

PID, TIDS = 4_000_000, (4_000_001, 4_000_002)  # above pid_max: no real process is touched


class FakeQemu:
    pid = PID

    def alive(self) -> bool:
        return True


def fake_cgroups(tmp_path: Path) -> tuple[CpuController, Path]:
    mount = tmp_path / "cpu"
    (mount / "machine").mkdir(parents=True)
    proc = tmp_path / "proc"
    (proc / str(PID)).mkdir(parents=True)
    (proc / str(PID) / "cgroup").write_text("1:cpu:/machine\n")
    for tid in TIDS:
        (proc / str(PID) / "task" / str(tid)).mkdir(parents=True)
        (proc / str(PID) / "task" / str(tid) / "cgroup").write_text("1:cpu:/machine\n")
    return CpuController(CgroupVersion.V1, mount), proc


def secondary(tmp_path: Path, vcpu: VcpuState | None) -> Side:
    options = ProtectionOptions(comparator=ComparatorKind.COLOPP, semiactive=True)
    request = SideRequest(Role.SECONDARY, "tap0", "198.18.1.11", "198.18.1.10", options=options)
    vm = VmSpec("demo", Path("/k"), Path("/i"), "console=ttyS0")
    side = Side(vm, request.spec(tmp_path / "run"), FakeQemu(), None)  # type: ignore[arg-type]
    side.vcpu = vcpu
    return side


def test_the_cap_survives_the_restart_and_is_lifted_at_failover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    controller, proc = fake_cgroups(tmp_path)
    old = secondary(tmp_path, None)
    cap = apply_cap(controller, semiactive.cap_name(old), PID, TIDS, 0.5, proc=proc)
    for tid in TIDS:  # where the kernel now shows the threads
        (proc / str(PID) / "task" / str(tid) / "cgroup").write_text(
            f"1:cpu:/colopp/{cap.group.name}\n"
        )
    old.vcpu = VcpuState(PID, TIDS, {}, {}, 0.5, cap)

    # The old agent saves; the next one reads the file back.
    state_file.save(tmp_path, adopt.record_of("hostb", old))
    record = state_file.load(tmp_path)
    assert record is not None and json.dumps(record.vcpu)
    new = secondary(tmp_path, adopt.vcpu_from_record(record.vcpu))
    monkeypatch.setattr(semiactive, "find_cpu_controller", lambda: controller)
    monkeypatch.setattr(semiactive, "keep_cap", functools.partial(keep_cap, proc=proc))
    with caplog.at_level(logging.INFO):
        semiactive.readopt_vcpus(new, record.vcpu)
    assert new.vcpu is not None and new.vcpu.cap is not None
    assert new.vcpu.cap.group == cap.group and new.vcpu.cap.origins == cap.origins
    assert "kept" in caplog.text
    assert new.vcpu.to_status()["cgroup"] == str(cap.group)

    # Failover: the promoted secondary gets its full CPUs back (the quota is lifted).
    asyncio.run(semiactive.restore_vcpus(new))
    assert new.vcpu is None
    assert read_limit(cap) == (None, cap.period_us)
    assert (controller.mount / "machine" / "tasks").read_text() == str(TIDS[-1])


def test_no_controller_or_a_libvirt_side_leaves_the_shrink_as_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    state = VcpuState(PID, TIDS, {}, {}, 0.5)
    side = secondary(tmp_path, state)
    monkeypatch.setattr(semiactive, "find_cpu_controller", lambda: None)
    semiactive.readopt_vcpus(side, {"cap": None})
    assert side.vcpu is state and "no cgroup cpu controller" in caplog.text
    semiactive.readopt_vcpus(secondary(tmp_path, None), None)  # nothing shrunk: nothing to do
