"""The take-over's host side (colopp.agent.takeover), without QEMU."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest

from colopp.agent import takeover
from colopp.domain import Role, SideSpec
from colopp.errors import QemuStartError
from colopp.qemu.running import inspect_argv, with_disk
from colopp.qemu.runtime import QemuRuntime
from tests.unit.qemu.test_running_vm import GOOD


class _NoLoopRtnl:
    """Records whether it was opened on a thread running an event loop (pyroute2's
    IPRoute runs one of its own and fails there: found on the lab pair)."""

    opened_on_loop: ClassVar[list[bool]] = []

    def __init__(self, where: str | None) -> None:
        try:
            asyncio.get_running_loop()
            self.opened_on_loop.append(True)
        except RuntimeError:
            self.opened_on_loop.append(False)

    def __enter__(self) -> _NoLoopRtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def master_of(self, ifname: str) -> str:
        return "br0"

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class _Refused:
    def __init__(self, *args: object) -> None:
        pass

    async def start(self) -> None:
        raise QemuStartError("stop here")


def test_the_new_tap_is_made_off_the_agents_event_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _NoLoopRtnl.opened_on_loop = []
    monkeypatch.setattr(takeover, "Rtnl", _NoLoopRtnl)
    monkeypatch.setattr(takeover, "QemuProcess", _Refused)
    running = with_disk(inspect_argv(GOOD), [{"inserted": {"file": "/d.qcow2", "drv": "qcow2"}}])
    spec = SideSpec(Role.PRIMARY, tmp_path / "run", "colopp1", Path("/d.qcow2"),
                    "10.0.0.1", "10.0.0.2")  # fmt: skip
    start = takeover._start_copy(
        QemuRuntime(), running.vm_spec("web1"), spec, running, {"nic": 2, "disk": 3}, {}
    )
    with pytest.raises(QemuStartError):
        asyncio.run(start)
    # made, then removed again when QEMU did not start
    assert _NoLoopRtnl.opened_on_loop == [False, False]
