"""QMP through libvirt: replies, errors and events (libvirt's calls swapped for fakes)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

libvirt_qemu = pytest.importorskip("libvirt_qemu")

from colopp.errors import QmpError  # noqa: E402
from colopp.virt.libvirt_monitor import LibvirtMonitor  # noqa: E402
from colopp.virt.libvirt_vcpu import cpumap, per_vcpu_quota_us  # noqa: E402


class FakeDomain:
    def name(self) -> str:
        return "colopp-web-hosta"


def _replies(monkeypatch: pytest.MonkeyPatch, answer: Any) -> list[tuple[str, int]]:
    sent: list[tuple[str, int]] = []

    def command(_dom: Any, payload: str, flags: int) -> str:
        sent.append((payload, flags))
        return answer(payload) if callable(answer) else str(answer)

    monkeypatch.setattr(libvirt_qemu, "qemuMonitorCommand", command)
    return sent


def test_execute_returns_the_return_value(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = _replies(monkeypatch, '{"return": {"mode": "primary"}, "id": "libvirt-7"}')

    async def run() -> Any:
        monitor = LibvirtMonitor(None, FakeDomain(), asyncio.get_running_loop())
        return await monitor.execute("query-colo-status", {"x": 1}, oob=True)

    assert asyncio.run(run()) == {"mode": "primary"}
    assert json.loads(sent[0][0]) == {"execute": "query-colo-status", "arguments": {"x": 1}}
    assert sent[0][1] == 0


def test_qemu_errors_name_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    _replies(monkeypatch, '{"error": {"class": "GenericError", "desc": "no colo"}}')

    async def run() -> Any:
        return await LibvirtMonitor(None, FakeDomain(), asyncio.get_running_loop()).execute("x")

    with pytest.raises(QmpError, match="QMP x failed: GenericError: no colo"):
        asyncio.run(run())


def test_hmp_uses_the_hmp_flag_and_checks_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = _replies(monkeypatch, "Could not open 'nbd'\r\n")

    async def run() -> Any:
        monitor = LibvirtMonitor(None, FakeDomain(), asyncio.get_running_loop())
        return await monitor.hmp("drive_add -n buddy driver=replication")

    with pytest.raises(QmpError, match="drive_add"):
        asyncio.run(run())
    assert sent == [("drive_add -n buddy driver=replication", 1)]


def test_events_from_libvirts_thread_reach_the_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libvirt_qemu, "qemuMonitorEventRegister", lambda *_a: 3)

    async def run() -> dict[str, Any]:
        monitor = LibvirtMonitor(None, FakeDomain(), asyncio.get_running_loop())
        listener = monitor.listen(["RESUME"])
        args = (None, None, "STOP", 1, 0, None, None)
        threading.Thread(target=monitor._on_event, args=args).start()
        args = (None, None, "RESUME", 2, 500000, '{"reason": "x"}', None)
        threading.Thread(target=monitor._on_event, args=args).start()
        return dict(await asyncio.wait_for(listener.get(), 5))

    event = asyncio.run(run())
    assert event["event"] == "RESUME" and event["data"] == {"reason": "x"}
    assert event["timestamp"] == {"seconds": 2, "microseconds": 500000}


def test_cpumap_and_per_vcpu_quota() -> None:
    assert cpumap(frozenset({1, 3}), 4) == (False, True, False, True)
    assert per_vcpu_quota_us(0.5, 1) == 50_000
    assert per_vcpu_quota_us(0.5, 2) == 25_000
    assert per_vcpu_quota_us(0.001, 4) == 1000  # libvirt's floor


def test_a_killed_qemu_is_gone_before_libvirts_event(tmp_path: Any) -> None:
    from colopp.virt.libvirt_domain import _pid_gone

    (tmp_path / "7").mkdir()
    (tmp_path / "7/stat").write_text("7 (qemu-system-x86) S 1 7 7 0 -1")
    (tmp_path / "8").mkdir()
    (tmp_path / "8/stat").write_text("8 (a) b) Z 1 8 8 0 -1")
    assert not _pid_gone(7, tmp_path)
    assert _pid_gone(8, tmp_path) and _pid_gone(9, tmp_path)
