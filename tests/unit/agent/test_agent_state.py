"""The agent's state file (what a restarted agent re-adopts) and process identities: a pid
alone is never trusted (pids are reused)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from colopp.agent import state_file
from colopp.agent.adopt import PidWatch, vcpu_from_record
from colopp.agent.state_file import (
    ProcessIdentity,
    SideRecord,
    identity_of,
    parse_start_ticks,
    still_running,
)
from colopp.domain import ComparatorKind, ProtectionOptions, Role, VmSpec
from colopp.errors import ConfigError
from colopp.side_request import SideRequest


def a_record(tmp_path: Path, pid: int = 4242) -> SideRecord:
    options = ProtectionOptions(comparator=ComparatorKind.COLOPP, prerelease="http")
    request = SideRequest(Role.PRIMARY, "tap0", "198.18.1.10", "198.18.1.11", options=options)
    vm = VmSpec("demo", Path("/k"), Path("/i"), "console=ttyS0")
    identity = ProcessIdentity(pid, 123, "boot", "ab" * 32)
    return SideRecord(
        "hosta",
        vm,
        request.spec(tmp_path / "demo" / "primary"),
        identity,
        None,
        2,
        False,
        1500,
        None,
        1.0,
    )


def test_record_round_trips_and_is_0600(tmp_path: Path) -> None:
    record = a_record(tmp_path)
    state_file.save(tmp_path, record)
    path = state_file.state_path(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert state_file.load(tmp_path) == record
    state_file.forget(tmp_path)
    assert state_file.load(tmp_path) is None


def test_unsafe_or_foreign_records_are_refused(tmp_path: Path) -> None:
    state_file.save(tmp_path, a_record(tmp_path))
    path = state_file.state_path(tmp_path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="0600"):
        state_file.load(tmp_path)
    path.chmod(0o600)
    data = json.loads(path.read_text())
    with pytest.raises(ConfigError, match="version"):
        state_file.parse_record({**data, "version": 99})
    with pytest.raises(ConfigError, match="lacks"):
        state_file.parse_record({k: v for k, v in data.items() if k != "side"})
    with pytest.raises(ConfigError, match="pid"):
        state_file.parse_record({**data, "qemu": {**data["qemu"], "pid": "1; rm -rf /"}})
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        state_file.load(tmp_path)
    kept = state_file.set_aside(tmp_path)
    assert kept is not None and kept.read_text() == "{not json"
    assert state_file.load(tmp_path) is None


def test_start_ticks_parse_names_with_spaces_and_parentheses() -> None:
    fields = " ".join(str(n) for n in range(3, 30))
    assert parse_start_ticks(f"77 (qemu (x) y) S {fields[2:]}") == 22
    with pytest.raises(ValueError):
        parse_start_ticks("garbage")


def test_identity_tells_a_reused_pid_from_the_recorded_process() -> None:
    code = "import os; print('up', flush=True); os.read(os.pipe()[0], 1)"  # runs until killed
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        me = identity_of(proc.pid)
        assert me is not None, "no identity for a live child"
        assert identity_of(proc.pid) == me, "identity changed while it ran"
        other_start = ProcessIdentity(me.pid, me.start_ticks + 1, me.boot_id, me.cmdline_sha256)
        other_boot = ProcessIdentity(me.pid, me.start_ticks, "another-boot", me.cmdline_sha256)
        other_cmd = ProcessIdentity(me.pid, me.start_ticks, me.boot_id, "0" * 64)
        assert [still_running(i) for i in (other_start, other_boot, other_cmd)] == [False] * 3
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert not still_running(me)


def test_pidfd_watch_sees_the_exit_and_refuses_a_stranger() -> None:
    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import os; os.read(os.pipe()[0], 1)",  # runs until killed
        )
        me = identity_of(proc.pid)
        assert me is not None
        loop = asyncio.get_running_loop()
        stranger = PidWatch(
            ProcessIdentity(me.pid, me.start_ticks + 7, me.boot_id, me.cmdline_sha256), loop
        )
        assert not stranger.alive()
        stranger.send(signal.SIGKILL)  # never reaches the process that has that pid now
        assert proc.returncode is None and identity_of(proc.pid) == me
        watch = PidWatch(me, loop)
        assert watch.alive()
        await watch.terminate(grace=5)
        assert not watch.alive()
        assert await proc.wait() == -signal.SIGTERM

    asyncio.run(main())


def test_no_process_means_no_watch() -> None:
    gone = ProcessIdentity(2**22 + 1, 1, "b", "c")
    assert identity_of(gone.pid) is None

    async def main() -> None:
        assert not PidWatch(gone, asyncio.get_running_loop()).alive()

    asyncio.run(main())


def test_vcpu_shrink_round_trips_its_affinities() -> None:
    data = {
        "pid": os.getpid(),
        "thread_ids": [11, 12],
        "before": {"11": [0, 1], "12": [0, 1]},
        "after": {"11": [1], "12": [1]},
        "quota": 0.5,
    }
    state = vcpu_from_record(data)
    assert state is not None
    assert state.before == {11: frozenset({0, 1}), 12: frozenset({0, 1})}
    assert state.after[12] == frozenset({1}) and state.quota == 0.5
    assert vcpu_from_record({"pid": "x"}) is None
    assert vcpu_from_record(None) is None


def test_fencing_tokens_survive_an_agent_restart(tmp_path: Path) -> None:
    from colopp.agent.state_file import TOKENS_FILE, PersistentTokenGate
    from colopp.errors import StaleToken

    gate = PersistentTokenGate(tmp_path)
    gate.admit("web", 7)
    assert (tmp_path / TOKENS_FILE).stat().st_mode & 0o777 == 0o600
    again = PersistentTokenGate(tmp_path)  # the next agent
    assert again.newest("web") == 7
    with pytest.raises(StaleToken):
        again.admit("web", 6)
    (tmp_path / TOKENS_FILE).write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        PersistentTokenGate(tmp_path)


def test_a_libvirt_domain_running_another_qemu_is_not_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The domain is found by name; its QEMU must be the process recorded (a domain destroyed
    and started again under that name is not the COLO side the agent ran)."""
    pytest.importorskip("libvirt")
    import dataclasses
    from types import SimpleNamespace

    from colopp.agent.adopt import adopt_libvirt_side
    from colopp.domain import Backend
    from colopp.errors import LibvirtError
    from colopp.virt import libvirt_adopt

    closed: list[bool] = []

    class Monitor:
        async def close(self) -> None:
            closed.append(True)

    record = a_record(tmp_path)
    options = dataclasses.replace(record.spec.options, backend=Backend.LIBVIRT)
    record = dataclasses.replace(record, spec=dataclasses.replace(record.spec, options=options))
    domain = SimpleNamespace(
        vm=record.vm,
        process=SimpleNamespace(pid=os.getpid(), name="colopp-demo-hosta"),
        monitor=Monitor(),
    )

    async def adopt_domain(*_args: object) -> object:
        return domain

    monkeypatch.setattr(libvirt_adopt, "adopt_domain", adopt_domain)
    other = identity_of(os.getppid())
    assert other is not None
    with pytest.raises(LibvirtError, match="not the one recorded"):
        asyncio.run(adopt_libvirt_side(dataclasses.replace(record, qemu=other), "qemu:///x"))
    assert closed == [True]
    ours = dataclasses.replace(record, qemu=identity_of(os.getpid()))
    side = asyncio.run(adopt_libvirt_side(ours, "qemu:///x"))
    assert side is not None and side.process is domain.process
